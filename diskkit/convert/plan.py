"""Before a single byte is written: what the source is, whether it is safe, where the output
goes, and whether it fits.

Everything here reads; nothing writes. :func:`make_plan` turns a request into a :class:`Plan`
or refuses with the reason: a hostile source (its findings), a declared source format that
disagrees with the detected one (CVE-2024-40767), a target that exists (without ``force``), or
a target without room for what ``qemu-img measure`` says the conversion needs.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field

from diskkit.errors import ImageError, UserError
from diskkit.findings import Finding
from diskkit.formats import registry
from diskkit.runner import run
from diskkit.target import Target, parse_target

#: Output formats diskkit converts to, by qemu-img driver name (the registry's writable ones).
OUTPUT_FORMATS = tuple(dict.fromkeys(i.qemu for i in registry.formats() if i.writable and i.qemu))
#: Extra room asked for beyond ``qemu-img measure`` (filesystem metadata, rounding).
MARGIN_BYTES = 4 << 20

# Timeouts (seconds) of the quick qemu-img calls.
_MEASURE_TIMEOUT = 300.0


def qemu_format(name: str) -> str:
    """The qemu-img driver for a user-given format name; :class:`UserError` when unknown."""
    info = registry.lookup(name)
    if info is None or info.kind is not registry.Kind.DISK or info.qemu is None:
        raise UserError(f"unknown image format {name!r}", code="unknown-format",
                        hint="use one of: raw, qcow2, vmdk, vhd (vpc), vhdx, vdi")
    return info.qemu


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def rbd_spec(t: Target, image: str | None = None) -> str:
    """qemu's ``rbd:POOL[/NS]/IMAGE[@SNAP][:conf=..][:id=..][:keyring=..]`` for ``t``, with
    the image name replaced by ``image`` when given (a temporary name)."""
    name = image or t.image or ""
    path = "/".join(p for p in (t.pool, t.namespace, name) if p)
    spec = "rbd:" + _escape(path)
    if t.snap and image is None:
        spec += "@" + _escape(t.snap)
    for key, value in (("conf", t.conf), ("id", t.user), ("keyring", t.keyring)):
        if value:
            spec += f":{key}={_escape(value)}"
    return spec


def qemu_filename(t: Target) -> str:
    """The filename qemu-img is given for a target (path, NBD URI, or rbd: spec)."""
    if t.kind == "file":
        return t.path or ""
    if t.kind == "nbd":
        return t.uri or ""
    return rbd_spec(t)


@dataclass(frozen=True)
class SourceFacts:
    """What detection found about the source."""

    target: Target
    #: qemu-img driver name (always passed as ``-f``).
    format: str
    #: Format name as detection gave it.
    detected: str
    virtual_size: int | None
    findings: tuple[Finding, ...] = ()
    #: Bytes the source occupies (file size, or None for NBD/RBD).
    stored_size: int | None = None

    @property
    def blocking(self) -> tuple[Finding, ...]:
        """The findings that make the source unsafe to hand to qemu-img."""
        return tuple(f for f in self.findings if f.blocking)


def inspect_source(spec: str, declared: str | None = None) -> SourceFacts:
    """Detect the source's format and run its safety checks (reads headers only).

    A ``declared`` format that disagrees with the detected one is refused: an image declared
    raw that is really qcow2 or VMDK is how CVE-2024-40767 reaches host files.
    """
    from diskkit.pipeline import Inspection

    t = parse_target(spec)
    if t.kind == "rbd" and not t.image:
        raise UserError(f"{spec}: names a pool, not an image", code="bad-uri")
    if t.kind == "file" and t.path and not os.path.exists(t.path):
        raise UserError(f"{spec}: no such file", code="not-found")
    with Inspection(t) as insp:
        det = insp.detection
        stored = insp.container.size if t.kind == "file" else None
    detected = str(det.format)
    info = registry.get(detected)
    fmt = info.qemu if info.kind is registry.Kind.DISK else None
    if fmt is None:
        if detected == "luks":
            raise UserError(f"{spec}: is a LUKS volume; diskkit does not convert encrypted "
                            "images", code="unsupported-source",
                            hint="open it with cryptsetup and convert the mapped device")
        raise UserError(f"{spec}: is {detected}, not a disk image qemu-img converts",
                        code="unsupported-source",
                        hint="unpack it first (gunzip, xz -d, zstd -d, tar -x)")
    if declared is not None:
        want = qemu_format(declared)
        if want != fmt:
            raise UserError(
                f"{spec}: declared {declared} but the image is {detected}",
                code="format-mismatch",
                hint=f"pass -f {detected} (or omit -f); "
                "a wrong declared format is how hostile images reach host files")
    return SourceFacts(t, fmt, detected, det.virtual_size, tuple(det.findings), stored)


@dataclass(frozen=True)
class Measure:
    """``qemu-img measure``: bytes the output needs as converted, and fully allocated."""

    required: int
    fully_allocated: int


def measure(src: SourceFacts, out_format: str, options: tuple[str, ...] = ()) -> Measure:
    """Bytes the output needs: from the source's data extents as diskkit reads them itself
    (a raw or self-contained qcow2 file, no ``-o`` options: :func:`bound_in_process`, no
    process started), else ``qemu-img measure`` for qcow2 outputs and :func:`estimate`
    (``qemu-img map``) for the others."""
    if not options:
        bound = bound_in_process(src, out_format)
        if bound is not None:
            return bound
    if out_format not in MEASURABLE:
        return estimate(src, out_format)
    argv = ["qemu-img", "measure", "--output=json", "-f", src.format, "-O", out_format]
    opts = [o for o in options if not o.startswith("preallocation=")]
    if opts:
        argv += ["-o", ",".join(opts)]
    argv.append(qemu_filename(src.target))
    out = run(argv, timeout=_MEASURE_TIMEOUT).stdout
    try:
        data = json.loads(out)
        return Measure(int(data["required"]), int(data["fully-allocated"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"qemu-img measure gave no sizes for {src.target.spec}",
                         code="measure-failed") from exc


#: Output formats ``qemu-img measure`` sizes usefully (for raw it answers the virtual size
#: whatever the holes, while ``-S 4k`` keeps the output as sparse as the source's data).
MEASURABLE = ("qcow2",)
#: Granularity the estimate rounds data runs up to (a VMDK grain; the largest 4 KiB-sparse
#: step any of vmdk/vpc/vhdx/vdi writes data in on a sparse-capable filesystem).
_GRAIN = 64 << 10


def _overhead(out_format: str, virtual_size: int) -> int:
    """Generous metadata bound for vmdk/vpc/vhdx/vdi: headers, logs and block tables (all
    below 4 bytes per 4 KiB of disk plus 8 MiB: VHDX's log and metadata regions are 1 MiB
    each, VMDK grain tables 4 bytes per 64 KiB grain, VHD BAT 4 bytes per 2 MiB block).
    A raw output has none."""
    if out_format == "raw":
        return 0
    return (8 << 20) + virtual_size // 1024


def estimate(src: SourceFacts, out_format: str) -> Measure:
    """Space bound for outputs qemu-img measure does not size well, from ``qemu-img map`` (the
    source's data extents, each rounded out to 64 KiB) plus :func:`_overhead`."""
    out = run(["qemu-img", "map", "--output=json", "-f", src.format,
               qemu_filename(src.target)], timeout=_MEASURE_TIMEOUT).stdout
    try:
        extents = json.loads(out)
        vsize = max((int(e["start"]) + int(e["length"]) for e in extents), default=0)
        data = 0
        last = -1
        for e in extents:
            if not e.get("data") or e.get("zero"):
                continue
            first = max(int(e["start"]) // _GRAIN, last + 1)
            end = (int(e["start"]) + int(e["length"]) - 1) // _GRAIN
            if end >= first:
                data += (end - first + 1) * _GRAIN
                last = end
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"qemu-img map gave no extents for {src.target.spec}",
                         code="measure-failed") from exc
    vsize = src.virtual_size or vsize
    extra = _overhead(out_format, vsize)
    return Measure(min(data, vsize) + extra, vsize + extra)


#: qcow2 as qemu-img creates it without options: 64 KiB clusters, 8-byte L2 entries,
#: 16-bit refcounts.
_QCOW2_CLUSTER = 64 << 10
_QCOW2_L2_SPAN = _QCOW2_CLUSTER * (_QCOW2_CLUSTER // 8)  # guest bytes one L2 table maps
_QCOW2_REFBLOCK_SPAN = _QCOW2_CLUSTER // 2  # clusters one refcount block counts


def _qcow2_bound(data: int, regions: int, vsize: int) -> int:
    """Upper bound of a new qcow2's size holding ``data`` bytes of clusters spread over
    ``regions`` L2 ranges (docs/interop/qcow2.txt): header cluster, L1 table, one L2 table
    per range, the refcount table and blocks covering every cluster, plus a cluster of
    slack per structure."""
    c = _QCOW2_CLUSTER
    l1 = -(-max(1, -(-vsize // _QCOW2_L2_SPAN)) * 8 // c) * c
    meta = c + l1 + regions * c
    clusters = (data + meta) // c + 4
    refblocks = -(-clusters // _QCOW2_REFBLOCK_SPAN) + 1
    reftable = -(-refblocks * 8 // c) * c + c
    return data + meta + refblocks * c + reftable + 4 * c


def bound_in_process(src: SourceFacts, out_format: str) -> Measure | None:
    """The room check's bound from the source's data extents read by diskkit's own reader
    (SEEK_DATA for raw, the L1/L2 map for qcow2), each rounded out to 64 KiB: for a qcow2
    output the qcow2 metadata bound (:func:`_qcow2_bound`, checked against qemu-img measure
    in tests/convert), for the others :func:`_overhead`. None where diskkit does not read
    the source itself (then qemu-img measures it)."""
    if src.target.kind != "file" or not src.target.path or src.format not in ("raw", "qcow2"):
        return None
    from .verify import open_local

    reader = open_local(src.target.path, src.format)
    if reader is None:
        return None
    with reader:
        vsize = reader.size
        data, last, regions, last_region = 0, -1, 0, -1
        for e in reader.data_extents():
            first = max(e.offset // _GRAIN, last + 1)
            end = (e.end - 1) // _GRAIN
            if end >= first:
                data += (end - first + 1) * _GRAIN
                last = end
            lo = max(e.offset // _QCOW2_L2_SPAN, last_region + 1)
            hi = (e.end - 1) // _QCOW2_L2_SPAN
            if hi >= lo:
                regions += hi - lo + 1
                last_region = hi
    data = min(data, vsize)
    if out_format == "qcow2":
        full_regions = -(-vsize // _QCOW2_L2_SPAN)
        return Measure(_qcow2_bound(data, regions, vsize),
                       _qcow2_bound(-(-vsize // _QCOW2_CLUSTER) * _QCOW2_CLUSTER,
                                    full_regions, vsize))
    extra = _overhead(out_format, vsize)
    return Measure(data + extra, vsize + extra)


@dataclass(frozen=True)
class Room:
    """Where the output goes and how much space it has there."""

    #: "file" (a new local file), "device" (an existing block device), "nbd", "rbd".
    kind: str
    available: int | None
    exists: bool
    #: For files: the directory the temporary file goes into.
    directory: str | None = None
    details: dict[str, object] = field(default_factory=dict)


def _device_size(path: str) -> int:
    from diskkit.readers.raw import FileReader

    with FileReader(path) as r:
        return r.size


def _nbd_size(uri: str) -> int:
    out = run(["qemu-img", "info", "-f", "raw", "--output=json", uri], timeout=60).stdout
    return int(json.loads(out)["virtual-size"])


def room_for(dst: Target) -> Room:
    """Free space where ``dst`` goes, and whether ``dst`` already exists."""
    if dst.kind == "nbd":
        return Room("nbd", _nbd_size(dst.uri or ""), True)
    if dst.kind == "rbd":
        from diskkit.convert import rbdops

        if not dst.image or dst.snap:
            raise UserError(f"{dst.spec}: an RBD target is rbd:POOL/IMAGE (no snapshot)",
                            code="bad-uri")
        exists, avail = rbdops.image_exists_and_room(dst)
        return Room("rbd", avail, exists)
    path = dst.path or ""
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory", code="is-a-directory",
                        hint="name the output file, not its directory")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISBLK(st.st_mode):
        return Room("device", _device_size(path), True)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"{directory}: no such directory", code="not-found")
    vfs = os.statvfs(directory)
    return Room("file", vfs.f_bavail * vfs.f_frsize, st is not None, directory)


def check_room(dst: Target, room: Room, need: int) -> None:
    """Refuse (before anything is written) when ``need`` bytes do not fit."""
    if room.available is None:
        return
    if room.kind in ("device", "nbd"):
        if need > room.available:
            raise UserError(
                f"{dst.spec}: holds {room.available} bytes, the output needs {need}",
                code="no-room", hint="use a larger device or volume")
        return
    want = need + MARGIN_BYTES
    if want > room.available:
        where = room.directory or dst.spec
        raise UserError(
            f"not enough room for {dst.spec}: it needs {need} bytes (measured), "
            f"{where} has {room.available} free",
            code="no-room", hint="free some space or choose another target")
