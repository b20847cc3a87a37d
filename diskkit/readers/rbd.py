"""Ceph RBD images read in place through librbd (python3-rbd), read-only.

``RbdReader(target)`` connects with bounded timeouts (:mod:`.rbd_connection`), opens the
image read-only (at the snapshot when the target names one, in its namespace when it has one)
and reads with ``Image.read``. ``extents()`` comes from ``Image.diff_iterate(0, size, None,
cb, whole_object=True)``: with no start snapshot librbd reports every allocated range
(including the parent's, for a clone), at object granularity; with the object-map/fast-diff
features it answers from the object map without touching the data objects, so a blank 1 TiB
volume is judged without reading anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from diskkit.errors import ImageError, UserError
from diskkit.readers.base import Extent, Reader
from diskkit.readers.rbd_connection import Connection, connect, modules, translate
from diskkit.target import Target, parse_target

#: Bytes listed per diff_iterate call on images without fast-diff (256 objects of 4 MiB).
SLOW_WINDOW = 1 << 30


def image_spec(pool: str, namespace: str | None, image: str, snap: str | None = None) -> str:
    """``POOL[/NS]/IMAGE[@SNAP]``, Ceph's own spelling."""
    spec = f"{pool}/{namespace}/{image}" if namespace else f"{pool}/{image}"
    return f"{spec}@{snap}" if snap else spec


class RbdReader(Reader):
    """The stored bytes of an RBD image (or snapshot), read-only.

    ``connection``/``ioctx`` let several readers share one cluster connection (``diskkit
    scan``); they are then left open by :meth:`close`.
    """

    concurrent_reads = True  # librbd's reads are thread-safe (verify.py reads in parallel)

    def __init__(self, target: Target | str, *, connection: Connection | None = None,
                 ioctx: Any = None) -> None:
        if isinstance(target, str):
            target = parse_target(target)
        if target.kind != "rbd" or not target.pool or not target.image:
            raise UserError(f"{target.spec}: not an RBD image spec", code="bad-uri",
                            hint="write rbd:POOL/IMAGE[@SNAP]")
        _, rbd = modules()
        self.target = target
        self.name = target.display
        self.spec = image_spec(target.pool, target.namespace, target.image, target.snap)
        self._own = connection is None
        self._conn: Connection | None = connection or connect(
            target.conf, target.user, target.keyring, spec=target.spec)
        self._windows: dict[int, list[tuple[int, int]]] = {}
        self._window = 1
        self.image: Any = None
        try:
            if ioctx is None:
                ioctx = self._conn.ioctx(target.pool, target.namespace)
            self.ioctx = ioctx
            self.image = self._open(rbd)
            self.size = int(self.image.size())
            # One window (the whole image) with an object map; bounded windows without.
            self._window = max(1, self.size) if self.fast_diff else SLOW_WINDOW
        except BaseException:
            self.close()
            raise

    def _open(self, rbd: Any) -> Any:
        t = self.target
        try:
            return rbd.Image(self.ioctx, t.image, snapshot=t.snap, read_only=True)
        except rbd.ImageNotFound:
            if t.snap is not None:
                # Say which is missing: the image or its snapshot.
                try:
                    rbd.Image(self.ioctx, t.image, read_only=True).close()
                except rbd.ImageNotFound:
                    pass
                else:
                    raise UserError(f"{t.spec}: image {t.image!r} has no snapshot {t.snap!r}",
                                    code="rbd-snapshot-not-found",
                                    hint=f"list its snapshots: rbd snap ls "
                                    f"{image_spec(t.pool or '', t.namespace, t.image or '')}"
                                    ) from None
            try:
                listed = t.image in rbd.RBD().list(self.ioctx)
            except rbd.Error as exc:
                raise translate(exc, t.spec) from None
            if listed:
                # Listed but cannot be opened: librbd failed to open its parent (a clone
                # whose parent pool, image or snapshot was deleted).
                raise ImageError(f"{t.spec}: the image exists but cannot be opened: its "
                                 "parent (clone source) is missing", code="rbd-parent-missing",
                                 hint="the parent's pool or snapshot was deleted; restore it "
                                 "from a backup (a clone must be flattened before its parent "
                                 "goes)") from None
            raise UserError(f"{t.spec}: no RBD image {self.spec}", code="rbd-image-not-found",
                            hint=f"list the pool's images: rbd ls {t.pool}"
                            + (f" --namespace {t.namespace}" if t.namespace else "")) from None
        except rbd.Error as exc:
            raise translate(exc, t.spec) from None

    # -- Reader ----------------------------------------------------------------------------

    def _read(self, offset: int, length: int) -> bytes:
        _, rbd = modules()
        try:
            data = self.image.read(offset, length)
        except rbd.Error as exc:
            raise translate(exc, f"{self.target.spec}: read at {offset}") from None
        if len(data) < length:  # librbd reads past a short object as zeros; be sure
            data += b"\0" * (length - len(data))
        return data

    @property
    def fast_diff(self) -> bool:
        """True when librbd can list allocated objects from the object map (features
        object-map + fast-diff, map valid) instead of asking every object."""
        _, rbd = modules()
        if not int(self.image.features()) & rbd.RBD_FEATURE_FAST_DIFF:
            return False
        return not int(self.image.flags()) & rbd.RBD_FLAG_FAST_DIFF_INVALID

    def _list_windows(self, first: int, last: int) -> None:
        """List windows ``first..last`` (inclusive) with one ``diff_iterate`` call and cache
        each window's allocated ``(offset, length)`` ranges."""
        _, rbd = modules()
        start = first * self._window
        stop = min((last + 1) * self._window, self.size)
        found: list[tuple[int, int]] = []

        def cb(offset: int, length: int, exists: bool) -> int:
            if exists:
                found.append((offset, length))
            return 0

        try:
            self.image.diff_iterate(start, stop - start, None, cb, include_parent=True,
                                    whole_object=True)
        except rbd.Error as exc:
            raise translate(exc, f"{self.target.spec}: listing allocated extents") from None
        for index in range(first, last + 1):
            self._windows[index] = []
        for off, ln in sorted(found):
            # A range is kept in every window it overlaps (clipped later).
            for index in range(max(first, off // self._window),
                               min(last, (off + ln - 1) // self._window) + 1):
                self._windows[index].append((off, ln))

    def _allocated_in(self, start: int, end: int) -> list[Extent]:
        """Allocated ranges overlapping ``[start, end)``, merged and clipped to it."""
        first, last = start // self._window, (end - 1) // self._window
        index = first
        while index <= last:  # list the windows not seen yet, consecutive ones together
            if index in self._windows:
                index += 1
                continue
            run_end = index
            while run_end + 1 <= last and run_end + 1 not in self._windows:
                run_end += 1
            self._list_windows(index, run_end)
            index = run_end + 1
        merged: list[Extent] = []
        for index in range(first, last + 1):
            for off, ln in self._windows[index]:
                lo, hi = max(off, start), min(off + ln, end, self.size)
                if hi <= lo:
                    continue
                if merged and lo <= merged[-1].end:
                    prev = merged[-1]
                    merged[-1] = Extent(prev.offset, max(prev.end, hi) - prev.offset)
                else:
                    merged.append(Extent(lo, hi - lo))
        return merged

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        """Allocated ranges (``data=True``) and the holes between them (``data=False``).

        With fast-diff the whole image is listed at once from the object map; without it
        librbd must ask every object, so only the windows (:data:`SLOW_WINDOW`) a caller
        asks about are listed."""
        end = self.size if length is None else min(self.size, offset + length)
        if offset >= end:
            return
        pos = offset
        for ext in self._allocated_in(offset, end):
            if ext.offset > pos:
                yield Extent(pos, ext.offset - pos, False)
            yield ext
            pos = ext.end
        if pos < end:
            yield Extent(pos, end - pos, False)

    @property
    def connection(self) -> Connection | None:
        """The cluster connection this reader uses (None once closed)."""
        return self._conn

    @property
    def allocated(self) -> int | None:
        """Bytes allocated to the image (whole RADOS objects, the parent's included); None
        without fast-diff, where knowing it means asking every object (as ``rbd du`` does)."""
        if self._window < self.size:
            return None
        return sum(e.length for e in self._allocated_in(0, self.size)) if self.size else 0

    # -- RBD facts -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What ``rbd info`` would say that matters here (docs/json.md, ``rbd`` section)."""
        st = self.image.stat()
        return {
            "pool": self.target.pool, "namespace": self.target.namespace,
            "image": self.target.image, "snapshot": self.target.snap,
            "size": self.size, "object_size": int(st.get("obj_size", 0)),
            "objects": int(st.get("num_objs", 0)),
            "features": sorted(_feature_names(int(self.image.features()))),
            "allocated": self.allocated,
        }

    def close(self) -> None:
        """Close the image, and the connection when this reader opened it."""
        if self.image is not None:
            self.image.close()
            self.image = None
        if self._own and self._conn is not None:
            self._conn.close()
        self._conn = None


def _feature_names(bits: int) -> list[str]:
    _, rbd = modules()
    names = {"LAYERING": "layering", "STRIPINGV2": "striping", "EXCLUSIVE_LOCK":
             "exclusive-lock", "OBJECT_MAP": "object-map", "FAST_DIFF": "fast-diff",
             "DEEP_FLATTEN": "deep-flatten", "JOURNALING": "journaling", "DATA_POOL":
             "data-pool"}
    return [name for key, name in names.items()
            if bits & getattr(rbd, f"RBD_FEATURE_{key}", 0)]
