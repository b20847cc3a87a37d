"""Planning a mount: what the image is, what to mount from it, and which backend can.

The plan is made from the image's bytes alone (format detection and safety checks of
:mod:`diskkit.formats`, partitions/filesystems/LVM of :mod:`diskkit.layout`), before anything
is attached, so bad input (a partition that does not exist, an encrypted or swap partition, an
unsafe image) is one clear error and the backend is chosen knowing the filesystem types:

- ``loop``: raw images directly, other formats through a qemu-storage-daemon FUSE export;
  Ceph RBD images and NBD URIs (raw bytes only) through a FUSE export of qemu's rbd/nbd driver;
- ``nbd``: ``qemu-nbd --connect`` (other formats, where the kernel has nbd);
- ``guestfs``: when the host kernel lacks what is needed (a filesystem type such as vfat or
  iso9660, device-mapper for LVM, loop devices or root rights).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from diskkit.backends.base import Location
from diskkit.errors import HostError, UserError
from diskkit.formats import registry
from diskkit.target import Target

if TYPE_CHECKING:
    from diskkit.pipeline import Inspection

BACKENDS = ("auto", "loop", "nbd", "guestfs")


@dataclass(frozen=True)
class Piece:
    """One filesystem to mount: ``location`` as the layout names it ("partition 2",
    "lv vg/root", "disk"), its type, and where under the mount root it goes."""

    location: str
    fstype: str
    mountpoint: str = "/"
    offset: int | None = None
    size: int | None = None
    uuid: str | None = None
    label: str | None = None

    @property
    def where(self) -> Location:
        """The typed location (the ``location`` string is the layout's spelling, kept for
        the JSON and for callers that print it)."""
        return Location.parse(self.location)


@dataclass
class Plan:
    """What to do: the image, its qemu format, the pieces and the backend chosen (and why)."""

    image: str
    fmt: str
    backend: str
    reason: str
    pieces: list[Piece]
    #: Every mountable filesystem of the disk (for --os: root candidates and fstab lookups).
    candidates: list[Piece] = field(default_factory=list)
    #: PV locations of each VG name.
    pvs: dict[str, list[str]] = field(default_factory=dict)
    os_root: bool = False
    #: number -> (start, size) in bytes of every partition, from the partition table.
    partitions: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: The parsed target when it is an RBD image or an NBD URI (exported by qemu-storage-daemon).
    remote: Target | None = None


def _piece(fs, mountpoint: str = "/") -> Piece:
    return Piece(fs.location, fs.type, mountpoint, fs.offset, fs.size, fs.uuid, fs.label)


def plan(target: str, *, partition: int | None = None, lv: str | None = None,
         os_root: bool = False, backend: str = "auto") -> Plan:
    """Check the image and the selection, and choose the backend (see the module docstring)."""
    from diskkit.pipeline import Inspection
    from diskkit.target import parse_target

    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}", code="bad-option",
                        hint="one of: " + ", ".join(BACKENDS))
    if sum(x is not None and x is not False for x in (partition, lv, os_root or None)) > 1:
        raise UserError("choose one of --partition, --lv and --os", code="bad-option")
    t = parse_target(target)
    if t.kind != "file":
        _check_remote(t, backend)
    with Inspection(t) as insp:  # opened once: RbdReader / NbdUriReader for remote targets
        return _plan(insp, target, t, partition=partition, lv=lv, os_root=os_root,
                     backend=backend)


def _plan(insp: Inspection, target: str, t: Target, *, partition: int | None, lv: str | None,
          os_root: bool, backend: str) -> Plan:
    fmt = insp.detection.format
    info = registry.get(fmt)
    if t.kind != "file" and not info.raw_bytes and info.kind is not registry.Kind.ENCRYPTED:
        # qemu exports the stored bytes as they are: anything but a raw disk would be garbage.
        raise UserError(f"{target}: the {t.kind.upper()} image holds {fmt} bytes, not a raw "
                        "disk; convert it to raw to mount it", code="not-raw",
                        hint=f"qemu-img convert -f {info.qemu or fmt} -O raw "
                        f"{target} NEW-TARGET")
    if info.kind is registry.Kind.ENCRYPTED:
        raise UserError(f"{target} is LUKS-encrypted; diskkit does not unlock volumes",
                        code="encrypted", hint="unlock it yourself (cryptsetup open --readonly)")
    layout = insp.layout  # the disk refuses unsafe images (backing files, hostile headers...)
    if layout is None:
        raise insp.error("layout") or UserError(f"{target}: cannot read its layout",
                                                code="bad-format")
    if not info.is_disk or info.qemu is None:
        raise UserError(f"{target}: cannot mount a {fmt} image", code="bad-format")
    mountable = [f for f in layout.filesystems
                 if f.type not in ("swap", "LVM2_member", "crypto_LUKS")]
    pvs: dict[str, list[str]] = {}
    for vg in layout.lvm.vgs if layout.lvm else ():
        pvs[vg.name] = [p.location for p in vg.pvs if p.location]
    pieces: list[Piece] = []
    if partition is not None:
        if layout.partition(partition) is None:
            numbers = ", ".join(str(p.number) for p in layout.partitions) or "none"
            raise UserError(f"partition {partition} does not exist on {target}",
                            code="no-such-partition", hint=f"partitions: {numbers}")
        pieces = [_only(layout.filesystems, f"partition {partition}", target)]
    elif lv is not None:
        if not layout.lvm or layout.lvm.find_lv(lv) is None or "/" not in lv:
            names = [x.path for vg in (layout.lvm.vgs if layout.lvm else ()) for x in vg.lvs]
            raise UserError(f"no logical volume {lv} on {target}", code="no-such-lv",
                            hint="logical volumes: " + (", ".join(names) or "none"))
        pieces = [_only(layout.filesystems, f"lv {lv}", target)]
    elif not os_root:
        if layout.partitions:
            numbers = ", ".join(str(p.number) for p in layout.partitions)
            raise UserError(f"{target} has partitions ({numbers}): choose one",
                            code="choose-partition", hint="use --partition N, --lv VG/LV or --os")
        pieces = [_only(layout.filesystems, "disk", target)]
    elif not mountable:
        raise UserError(f"no filesystem on {target} that could hold an operating system",
                        code="no-os")
    image = os.path.abspath(t.path or target) if t.kind == "file" else target
    assert info.qemu is not None  # checked above: a disk format qemu reads
    p = Plan(image, info.qemu, backend, "asked", pieces,
             [_piece(f) for f in mountable], pvs, os_root,
             {x.number: (x.start, x.size) for x in layout.partitions},
             remote=t if t.kind != "file" else None)
    if backend == "auto":
        p.backend, p.reason = _choose(p, layout)
        if p.remote is not None and p.backend != "loop":
            raise HostError(f"{target}: cannot mount it here: {p.reason}",
                            code="module-missing", hint="RBD/NBD targets are mounted through "
                            "a qemu-storage-daemon FUSE export + loop devices (root)")
    return p


def _check_remote(t, backend: str) -> None:
    """RBD and NBD targets are mounted through a FUSE export + loop (backend auto or loop)."""
    if t.kind == "rbd" and not t.image:
        raise UserError(f"{t.spec}: names a pool, not an image", code="bad-uri",
                        hint="write rbd:POOL/IMAGE[@SNAP]")
    if backend not in ("auto", "loop"):
        raise UserError(f"{t.spec}: the {backend} backend works on local image files",
                        code="unsupported-target",
                        hint="RBD and NBD targets use --backend auto (or loop)")


def _only(filesystems, location: str, target: str) -> Piece:
    fs = next((f for f in filesystems if f.location == location), None)
    what = f"{location} of {target}" if location != "disk" else target
    if fs is None:
        raise UserError(f"{what} holds no filesystem diskkit recognises", code="no-filesystem")
    if fs.type == "crypto_LUKS":
        raise UserError(f"{what} is encrypted (LUKS); diskkit does not unlock volumes",
                        code="encrypted", hint="unlock it yourself (cryptsetup open --readonly)")
    if fs.type == "LVM2_member":
        raise UserError(f"{what} is an LVM physical volume", code="is-lvm",
                        hint="mount a logical volume with --lv VG/LV, or use --os")
    if fs.type == "swap":
        raise UserError(f"{what} is swap space, not a filesystem", code="no-filesystem")
    return _piece(fs)


def _choose(p: Plan, layout) -> tuple[str, str]:
    from diskkit.backends.loop import loop_available
    from diskkit.backends.lvm import dm_available
    from diskkit.backends.mounts import kernel_supports
    from diskkit.backends.nbd import nbd_available

    if os.geteuid() != 0 or not loop_available():
        return "guestfs", "kernel mounts need root and loop devices"
    wanted = p.pieces or p.candidates
    uses_lvm = any(x.where.kind == "lv" for x in wanted)
    if uses_lvm and not dm_available():
        return "guestfs", "LVM needs device-mapper, which this kernel lacks"
    for x in p.pieces:
        if not kernel_supports(x.fstype):
            return "guestfs", f"this kernel cannot mount {x.fstype}"
    if p.os_root and not any(kernel_supports(x.fstype) for x in p.candidates):
        return "guestfs", "this kernel can mount none of the filesystems"
    if p.remote is not None:
        return "loop", f"qemu-storage-daemon FUSE export of the {p.remote.kind} target + loop"
    if p.fmt != "raw" and nbd_available():
        return "nbd", "qemu-nbd --connect (the kernel has nbd)"
    if p.fmt != "raw":
        return "loop", "qemu-storage-daemon FUSE export + loop (no nbd in this kernel)"
    return "loop", "raw image: loop devices with offsets"


def find_piece(plan: Plan, spec: str) -> Piece | None:
    """The candidate filesystem an fstab ``spec`` names (UUID=, LABEL=, /dev/mapper/VG-LV,
    /dev/VG/LV), or None when it is not on this disk."""
    key, _, value = spec.partition("=")
    for c in plan.candidates:
        if key == "UUID" and c.uuid and c.uuid.lower() == value.lower():
            return c
        if key == "LABEL" and c.label == value:
            return c
        w = c.where
        if spec.startswith("/dev/mapper/") and w.kind == "lv" and w.vg and w.lv:
            vg, lv = w.vg, w.lv
            if spec[len("/dev/mapper/"):] == f"{vg.replace('-', '--')}-{lv.replace('-', '--')}":
                return c
        if spec.startswith("/dev/") and c.location == f"lv {spec[5:]}":
            return c
    return None
