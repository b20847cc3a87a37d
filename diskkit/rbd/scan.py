"""``diskkit scan``: every image of a pool, checked in parallel over one cluster connection.

For each image: size, allocated bytes, the detected format of its bytes, its parent (and the
parent's format), safety (no blocking finding from detection or the clone-chain checks) and
bootability (the diagnose rules, :func:`diskkit.diagnose.judge`, under BIOS as a disk: how
Nova boots a volume by default). Images whose bytes, or whose parent's bytes, are not raw are
listed apart: they cannot be cloned copy-on-write by Glance/Cinder and will not boot as
volumes. Workers are threads sharing one ``rados.Rados`` and one I/O context (librados and
librbd are thread-safe and release the GIL while they wait on the cluster).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from diskkit.errors import DiskkitError
from diskkit.findings import Finding
from diskkit.pipeline import Inspection
from diskkit.rbd.chain import clone_chain, raw_like
from diskkit.readers.rbd import RbdReader, image_spec
from diskkit.readers.rbd_connection import Connection, connect, modules, translate
from diskkit.target import Target

log = logging.getLogger("diskkit.rbd.scan")

#: How bootability is judged, as reported in the JSON.
BOOT_METHOD = "diagnose (bios, disk)"


@dataclass(frozen=True)
class ScanRow:
    """What the scan found about one image."""

    image: str
    spec: str
    size: int | None = None
    allocated: int | None = None
    format: str | None = None
    formats_matched: tuple[str, ...] = ()
    parent: str | None = None
    parent_format: str | None = None
    safe: bool | None = None
    will_boot: bool | None = None
    boot_reason: str | None = None
    findings: tuple[str, ...] = ()
    error: str | None = None

    @property
    def raw(self) -> bool | None:
        """True when the image's bytes and every ancestor's are raw (None when unknown)."""
        if self.format is None:
            return None
        return raw_like(self.format) and (raw_like(self.parent_format) or not self.parent)

    @property
    def flagged(self) -> bool:
        """Not raw, unsafe, or not checkable: the scan exits 1 when any row is flagged."""
        return self.error is not None or self.raw is False or self.safe is False

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, ``scan``)."""
        return {"image": self.image, "spec": self.spec, "virtual_size": self.size,
                "actual_size": self.allocated, "format": self.format,
                "formats_matched": list(self.formats_matched), "parent": self.parent,
                "parent_format": self.parent_format, "raw": self.raw, "safe": self.safe,
                "will_boot": self.will_boot, "boot_reason": self.boot_reason,
                "findings": list(self.findings), "flagged": self.flagged, "error": self.error}


@dataclass
class ScanResult:
    """All rows of a pool scan, in image-name order."""

    pool: str
    namespace: str | None
    rows: list[ScanRow] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def not_raw(self) -> list[ScanRow]:
        """Images whose bytes (or whose parent's bytes) are not raw."""
        return [r for r in self.rows if r.raw is False]

    @property
    def flagged(self) -> list[ScanRow]:
        """Rows that make the scan exit 1."""
        return [r for r in self.rows if r.flagged]

    def to_json(self) -> Any:
        """Exactly what the command prints with --json (:func:`diskkit.jsonable.jsonable`)."""
        from diskkit.jsonable import jsonable

        return jsonable(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, ``scan``)."""
        return {"pool": self.pool, "namespace": self.namespace, "images": len(self.rows),
                "bootability": BOOT_METHOD, "rows": [r.to_dict() for r in self.rows],
                "not_raw": [r.image for r in self.not_raw],
                "flagged": [r.image for r in self.flagged], "seconds": round(self.seconds, 3)}


def _bootability(insp: Inspection) -> tuple[bool | None, str]:
    from diskkit.diagnose import judge
    from diskkit.diagnose.facts import gather

    facts = gather(insp)
    will_boot, reason, _ = judge(facts, "bios", "disk")
    return will_boot, reason


def scan_image(target: Target, conn: Connection, ioctx: Any) -> ScanRow:
    """Check one image over a shared connection; errors become the row's ``error``."""
    spec = image_spec(target.pool or "", target.namespace, target.image or "")
    try:
        with RbdReader(target, connection=conn, ioctx=ioctx) as reader, \
                Inspection(target, hypervisor=True, container=reader) as insp:
            det = insp.detection
            chain = clone_chain(reader)
            parent = chain[0] if chain else None
            findings: list[Finding] = list(det.findings)
            parent_format = None
            if parent is not None:
                parent_format = parent.format or "unreadable"
            # The deepest non-raw ancestor decides (its bytes show through every clone).
            for link in chain:
                if link.format is not None and not raw_like(link.format):
                    parent_format = link.format
            will_boot, reason = _bootability(insp)
            return ScanRow(
                image=target.image or "", spec=spec, size=reader.size,
                allocated=reader.allocated, format=det.format,
                formats_matched=det.formats_matched,
                parent=parent.parent.spec if parent else None, parent_format=parent_format,
                safe=not any(f.blocking for f in findings), will_boot=will_boot,
                boot_reason=reason, findings=tuple(dict.fromkeys(f.code for f in findings)))
    except DiskkitError as exc:
        return ScanRow(image=target.image or "", spec=spec, error=f"{exc.code}: {exc.message}")
    except Exception as exc:  # a bug on one image must not hide the other 199
        log.debug("scan of %s failed", spec, exc_info=True)
        return ScanRow(image=target.image or "", spec=spec,
                       error=f"internal-error: {type(exc).__name__}: {exc} (a bug in diskkit; "
                       "--verbose shows the traceback)")


def list_images(conn: Connection, ioctx: Any, what: str) -> list[str]:
    """Names of the images in the pool (namespace) ``ioctx`` is on, sorted."""
    _, rbd = modules()
    try:
        return sorted(rbd.RBD().list(ioctx))
    except rbd.Error as exc:
        raise translate(exc, what) from None


def scan_pool(target: Target, *, jobs: int = 4, namespace: str | None = None,
              progress: Callable[[ScanRow, int], None] | None = None) -> ScanResult:
    """Scan every image of ``target.pool`` (``namespace`` or the target's). ``progress(row,
    total)`` is called as each image is done (from the calling thread)."""
    started = time.monotonic()
    ns = namespace or target.namespace
    with connect(target.conf, target.user, target.keyring, spec=target.spec) as conn:
        ioctx = conn.ioctx(target.pool or "", ns)
        names = list_images(conn, ioctx, target.spec)
        targets = [Target(spec=f"rbd:{image_spec(target.pool or '', ns, n)}", kind="rbd",
                          pool=target.pool, namespace=ns, image=n, conf=target.conf,
                          user=target.user, keyring=target.keyring) for n in names]
        rows: list[ScanRow] = []
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(scan_image, t, conn, ioctx) for t in targets]
            for future in as_completed(futures):
                row = future.result()
                rows.append(row)
                if progress is not None:
                    progress(row, len(targets))
    return ScanResult(target.pool or "", ns, sorted(rows, key=lambda r: r.image),
                      time.monotonic() - started)
