"""/etc/fstab, each entry resolved to a filesystem (or LV) of this disk.

A spec is resolved the way udev names devices: UUID=/LABEL= against the filesystems' UUID and
label, PARTUUID=/PARTLABEL= against the partition table (MBR PARTUUID is
``<disk signature>-<partition number, 2 hex digits>``), /dev/disk/by-*/ the same,
/dev/mapper/VG-LV (dashes in names doubled) and /dev/VG/LV against LVM, and kernel names
(/dev/sda1, /dev/vda1, /dev/xvda1, /dev/nvme0n1p1, /dev/hda1) against this disk seen as the
first disk of the bus the name belongs to. /dev/disk/by-id and by-path depend on the
hypervisor: they are reported as not resolvable from the bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from diskkit.guest.vfs import GuestFS, Source, read_text
from diskkit.layout.inspect import Layout
from diskkit.layout.model import Filesystem

MAX_FSTAB = 1 << 20
MAX_LINES = 10_000

#: Kernel disk name prefixes -> bus family ("sd" is SCSI, SATA and virtio-scsi alike).
BUSES = (("vd", "virtio"), ("sd", "scsi/sata"), ("xvd", "xen"), ("hd", "ide"))
_DEVNAME = re.compile(r"^/dev/(?:(vd|sd|xvd|hd)([a-z]+)(\d*)|nvme(\d+)n(\d+)(?:p(\d+))?)$")
_VIRTUAL = {"proc", "sysfs", "tmpfs", "devpts", "devtmpfs", "none", "cgroup", "cgroup2",
            "securityfs", "debugfs", "hugetlbfs", "mqueue", "efivarfs", "binfmt_misc",
            "configfs", "pstore", "bpf", "tracefs", "fusectl", "nfs", "nfs4", "cifs", "9p",
            "virtiofs", "overlay", "ramfs", "autofs"}


@dataclass(frozen=True)
class FstabEntry:
    """One fstab line and where its device is on this disk."""

    spec: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]
    passno: int
    source: Source
    #: How the spec names the device: "uuid", "label", "partuuid", "partlabel", "devname",
    #: "lvm", "by-id", "by-path", "virtual", "other".
    kind: str
    #: The filesystem location it resolves to ("partition 1", "lv vg0/root", "disk"), or None.
    location: str | None
    #: For kernel names: the bus under which the name resolves ("virtio", "scsi/sata", ...).
    bus: str | None = None
    note: str | None = None

    @property
    def nofail(self) -> bool:
        """True when a missing device does not stop the boot (nofail, or noauto)."""
        return "nofail" in self.options or "noauto" in self.options

    @property
    def resolved(self) -> bool:
        """True when the device is on this disk (or needs none: proc, tmpfs, swap files)."""
        return self.location is not None or self.kind == "virtual"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"spec": self.spec, "mountpoint": self.mountpoint, "fstype": self.fstype,
                "options": list(self.options), "passno": self.passno, "kind": self.kind,
                "location": self.location, "bus": self.bus, "nofail": self.nofail,
                "resolved": self.resolved, "note": self.note, "source": self.source.to_dict()}


def _unescape(s: str) -> str:
    """fstab's octal escapes (\\040 for a space) and udev's \\x20."""
    s = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), s)


def parse_fstab(text: str, path: str = "/etc/fstab") -> list[tuple[list[str], Source]]:
    """The fields of each non-comment line, with its source."""
    out = []
    for n, line in enumerate(text.splitlines()[:MAX_LINES], 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        out.append(([_unescape(f) for f in s.split()], Source(path, n, s)))
    return out


def _mapper_name(name: str) -> tuple[str, str] | None:
    """/dev/mapper's "vg-lv" (dashes inside names doubled) -> (vg, lv)."""
    m = re.match(r"^((?:[^-]|--)+)-((?:[^-]|--)+)$", name)
    if not m:
        return None
    return m.group(1).replace("--", "-"), m.group(2).replace("--", "-")


class Resolver:
    """Resolves device specs against one disk's layout."""

    def __init__(self, layout: Layout | None) -> None:
        self.layout = layout
        self.fss: tuple[Filesystem, ...] = layout.filesystems if layout else ()

    def _fs_at(self, location: str) -> Filesystem | None:
        return next((f for f in self.fss if f.location == location), None)

    def _location_of_partition(self, number: int) -> str | None:
        if self.layout is None or self.layout.partition(number) is None:
            return None
        return f"partition {number}"

    def _lv(self, vg: str, lv: str) -> str | None:
        if self.layout is None or self.layout.lvm is None:
            return None
        for g in self.layout.lvm.vgs:
            for v in g.lvs:
                if g.name == vg and v.name == lv:
                    return f"lv {vg}/{lv}"
        return None

    def resolve(self, spec: str) -> tuple[str, str | None, str | None, str | None]:
        """(kind, location, bus, note) of a device spec."""
        if "=" in spec and not spec.startswith("/"):
            key, _, val = spec.partition("=")
            val = val.strip('"')
            key = key.upper()
            if key == "UUID":
                f = next((f for f in self.fss if f.uuid and f.uuid.lower() == val.lower()),
                         None)
                return "uuid", f.location if f else None, None, None if f else \
                    f"no filesystem with UUID {val} on this disk"
            if key == "LABEL":
                f = next((f for f in self.fss if f.label == val), None)
                return "label", f.location if f else None, None, None if f else \
                    f"no filesystem labelled {val!r} on this disk"
            if key == "PARTUUID":
                return self._partuuid(val)
            if key == "PARTLABEL":
                return self._partlabel(val)
            return "other", None, None, f"unknown spec {key}="
        for prefix, key in (("/dev/disk/by-uuid/", "UUID"), ("/dev/disk/by-label/", "LABEL"),
                            ("/dev/disk/by-partuuid/", "PARTUUID"),
                            ("/dev/disk/by-partlabel/", "PARTLABEL")):
            if spec.startswith(prefix):  # udev writes "root\x20fs" for "root fs"
                return self.resolve(f"{key}={_unescape(spec[len(prefix):])}")
        if spec.startswith(("/dev/disk/by-id/", "/dev/disk/by-path/")):
            kind = "by-id" if "by-id" in spec else "by-path"
            return kind, None, None, f"{kind} names come from the hypervisor (serial, PCI " \
                "address), not from the disk's bytes"
        if spec.startswith("/dev/mapper/"):
            parts = _mapper_name(spec[len("/dev/mapper/"):])
            if parts:
                loc = self._lv(*parts)
                if loc:
                    return "lvm", loc, None, None
            return "lvm", None, None, f"no LV {spec[12:]} on this disk"
        m = _DEVNAME.match(spec)
        if m:
            return self._devname(m)
        m2 = re.match(r"^/dev/([^/]+)/([^/]+)$", spec)
        if m2 and self._lv(m2.group(1), m2.group(2)):
            return "lvm", self._lv(m2.group(1), m2.group(2)), None, None
        return "other", None, None, f"{spec}: not a name diskkit resolves"

    def _partuuid(self, val: str) -> tuple[str, str | None, str | None, str | None]:
        lay = self.layout
        if lay is not None:
            for p in lay.partitions:
                if p.uuid and p.uuid.lower() == val.lower():
                    return "partuuid", self._loc_for_part(p.number), None, None
            if lay.table == "mbr" and lay.disk_id:
                m = re.fullmatch(r"([0-9a-fA-F]{8})-([0-9a-fA-F]{2})", val)
                if m and m.group(1).lower() == lay.disk_id.lower():
                    return "partuuid", self._loc_for_part(int(m.group(2), 16)), None, None
        return "partuuid", None, None, f"no partition with PARTUUID {val} on this disk"

    def _partlabel(self, val: str) -> tuple[str, str | None, str | None, str | None]:
        for p in self.layout.partitions if self.layout else ():
            if p.name and p.name == val:
                return "partlabel", self._loc_for_part(p.number), None, None
        return "partlabel", None, None, f"no partition named {val!r} on this disk"

    def _loc_for_part(self, number: int) -> str | None:
        loc = self._location_of_partition(number)
        return loc

    def _devname(self, m: re.Match[str]) -> tuple[str, str | None, str | None, str | None]:
        if m.group(1):
            prefix, letters, num = m.group(1), m.group(2), m.group(3)
            bus = dict(BUSES)[prefix]
            if letters != "a":
                return "devname", None, bus, f"/dev/{prefix}{letters} is not the first " \
                    f"{bus} disk: this disk is {prefix}a when attached first"
        else:
            bus, num = "nvme", m.group(6) or ""
            if m.group(4) != "0" or m.group(5) != "1":
                return "devname", None, bus, "not the first NVMe namespace"
        if not num:
            f = self._fs_at("disk")
            return "devname", "disk" if f else None, bus, None if f else \
                "no filesystem on the whole disk"
        loc = self._location_of_partition(int(num))
        return "devname", loc, bus, None if loc else f"no partition {num} on this disk"


def read_fstab(fs: GuestFS, layout: Layout | None) -> tuple[FstabEntry, ...]:
    """The entries of /etc/fstab resolved against ``layout``."""
    text = read_text(fs, "/etc/fstab", MAX_FSTAB)
    if text is None:
        return ()
    res = Resolver(layout)
    out = []
    for fields, src in parse_fstab(text):
        if len(fields) < 2:
            continue
        spec, mp = fields[0], fields[1]
        fstype = fields[2] if len(fields) > 2 else "auto"
        opts = tuple(fields[3].split(",")) if len(fields) > 3 else ("defaults",)
        try:
            passno = int(fields[5]) if len(fields) > 5 else 0
        except ValueError:
            passno = 0
        if fstype in _VIRTUAL or spec in _VIRTUAL or "bind" in opts or \
                (fstype == "swap" and spec.startswith("/") and not spec.startswith("/dev/")):
            out.append(FstabEntry(spec, mp, fstype, opts, passno, src, "virtual", None))
            continue
        kind, loc, bus, note = res.resolve(spec)
        out.append(FstabEntry(spec, mp, fstype, opts, passno, src, kind, loc, bus, note))
    return tuple(out)
