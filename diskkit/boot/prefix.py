"""Where a GRUB prefix points: which partition or LVM volume of this disk, whether it exists,
and whether it holds grub.cfg (and normal.mod, without which GRUB stops at a rescue prompt).

GRUB device syntax (GRUB manual, "Device syntax"): ``(hd0,msdos1)``, ``(,gpt2)`` (the boot
drive), ``(hd0,1)``, ``(lvm/VG-LV)`` (device-mapper style: a '-' inside a name is doubled),
``(lvmid/VG-UUID/LV-UUID)``, ``(md/0)``, ``(cryptouuid/...)``. A prefix without a device is
relative to the boot drive and the partition recorded in core.img.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diskkit.boot.eltorito import is_iso, iso_has_paths
from diskkit.boot.ext import ExtFs, is_ext
from diskkit.boot.fat import FatFs
from diskkit.errors import DiskkitError, ImageError
from diskkit.layout.model import Partition
from diskkit.readers.base import Reader, SliceReader

_PART_RE = re.compile(r"^(msdos|gpt|bsd|sun|dvh|apple)?(\d+)$")


@dataclass(frozen=True)
class PrefixTarget:
    """What a GRUB prefix names, resolved against this disk."""

    prefix: str
    device: str | None
    path: str
    #: "partition", "lvm", "disk", "other-disk", "raid", "crypto", "unknown"
    kind: str
    partition_scheme: str | None = None
    partition_number: int | None = None
    lv: str | None = None
    #: The partition/LV exists on this disk (None: cannot tell, e.g. LVM not parsed).
    exists: bool | None = None
    offset: int | None = None
    filesystem: str | None = None
    grub_cfg: bool | None = None
    normal_mod: bool | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, "boot.grub.target")."""
        return {k: getattr(self, k) for k in (
            "prefix", "device", "path", "kind", "partition_scheme", "partition_number", "lv",
            "exists", "offset", "filesystem", "grub_cfg", "normal_mod", "note")}


def split_prefix(prefix: str) -> tuple[str | None, str]:
    """``"(hd0,msdos1)/boot/grub"`` -> ``("hd0,msdos1", "/boot/grub")``."""
    if prefix.startswith("("):
        end = prefix.find(")")
        if end > 0:
            return prefix[1:end], prefix[end + 1:] or "/"
    return None, prefix


def _lvm_name(dm: str) -> str | None:
    """device-mapper "vg-lv" (with '--' for a '-' in a name) -> "vg/lv"."""
    parts = re.split(r"(?<!-)-(?!-)", dm)
    if len(parts) != 2:
        return None
    return "/".join(p.replace("--", "-") for p in parts)


def _look(reader: Reader, path: str) -> tuple[str | None, bool | None, bool | None]:
    """(filesystem, grub.cfg present, normal.mod present) in the filesystem of ``reader``."""
    cfg = path.rstrip("/") + "/grub.cfg"
    mod = path.rstrip("/") + "/i386-pc/normal.mod"
    try:
        if is_iso(reader):
            found = iso_has_paths(reader, [cfg, mod])
            return ("iso9660", found[0], found[1]) if found else ("iso9660", None, None)
        if is_ext(reader):
            fs = ExtFs(reader)
            return "ext", fs.lookup(cfg) is not None, fs.lookup(mod) is not None
        try:
            fat = FatFs(reader)
        except ImageError:
            return None, None, None
        return "vfat", fat.lookup(cfg) is not None, fat.lookup(mod) is not None
    except (ImageError, struct.error, ValueError):
        return "damaged", None, None


def _lv_reader(disk: Reader, layout: Any, lv: str) -> Reader | None:
    try:
        from diskkit.layout import lv_reader
    except ImportError:
        return None
    try:
        return lv_reader(disk, layout, lv)
    except DiskkitError:
        return None


def _lvid_to_name(layout: Any, vg_uuid: str, lv_uuid: str) -> str | None:
    """Find "vg/lv" for GRUB's lvmid/VGUUID/LVUUID in the layout's LVM model (duck-typed)."""
    lvm = getattr(layout, "lvm", None)
    for vg in getattr(lvm, "vgs", None) or (lvm if isinstance(lvm, (list, tuple)) else []):
        if str(getattr(vg, "uuid", "")) != vg_uuid:
            continue
        for lv in getattr(vg, "lvs", ()) or ():
            if str(getattr(lv, "uuid", "")) == lv_uuid:
                return f"{vg.name}/{lv.name}"
    return None


def resolve_prefix(disk: Reader, prefix: str, partitions: Sequence[Partition],
                   table: str | None, layout: Any = None,
                   boot_partition: int | None = None) -> PrefixTarget:
    """Resolve ``prefix`` against the disk: which partition/LV and what it holds.

    ``table`` is "mbr", "gpt" or None; ``boot_partition`` is the 1-based partition core.img
    records for a device-less prefix (None: unknown or the whole disk).
    """
    device, path = split_prefix(prefix)
    base: dict[str, Any] = {"prefix": prefix, "device": device, "path": path}
    if device is None:
        if boot_partition is not None:
            device = f",{boot_partition}"
        elif is_iso(disk):
            # grub-mkrescue: GRUB's root is the boot device itself, the ISO 9660 filesystem.
            device = ""
        else:
            return PrefixTarget(kind="unknown", note="no device in the prefix", **base)
    head, *parts = device.split(",")
    if head.startswith("lvm/") or head.startswith("lvmid/"):
        if head.startswith("lvm/"):
            lv = _lvm_name(head[4:])
        else:
            ids = head.split("/")
            lv = _lvid_to_name(layout, ids[1], ids[2]) if len(ids) == 3 else None
        reader = _lv_reader(disk, layout, lv) if lv else None
        if reader is None:
            return PrefixTarget(kind="lvm", lv=lv, exists=False if lv and layout else None,
                                note="LVM volume not found in this disk's layout", **base)
        fs, cfg, mod = _look(reader, path)
        return PrefixTarget(kind="lvm", lv=lv, exists=True, filesystem=fs, grub_cfg=cfg,
                            normal_mod=mod, **base)
    if head.startswith("md"):
        return PrefixTarget(kind="raid", note="software RAID is not followed", **base)
    if head.startswith(("crypto", "cryptouuid")):
        return PrefixTarget(kind="crypto", note="encrypted volume is not followed", **base)
    if head not in ("", "hd0"):
        return PrefixTarget(kind="other-disk", exists=False,
                            note=f"the prefix names {head}, not the boot disk", **base)
    if not parts:
        fs, cfg, mod = _look(disk, path)
        return PrefixTarget(kind="disk", exists=True, offset=0, filesystem=fs, grub_cfg=cfg,
                            normal_mod=mod, **base)
    m = _PART_RE.match(parts[0])
    if not m:
        return PrefixTarget(kind="unknown", note=f"cannot read partition {parts[0]!r}", **base)
    scheme, number = m.group(1), int(m.group(2))
    base.update(partition_scheme=scheme, partition_number=number)
    want = {"msdos": "mbr", "gpt": "gpt"}.get(scheme or "")
    if want and table and want != table:
        return PrefixTarget(kind="partition", exists=False,
                            note=f"the prefix names a {scheme} partition but the disk has "
                                 f"{table}", **base)
    part = next((p for p in partitions if p.number == number and p.kind != "extended"), None)
    if part is None:
        return PrefixTarget(kind="partition", exists=False,
                            note=f"partition {number} does not exist on this disk", **base)
    reader = SliceReader(disk, part.start, part.size, name=f"{disk.name} partition {number}")
    fs, cfg, mod = _look(reader, path)
    return PrefixTarget(kind="partition", exists=True, offset=part.start, filesystem=fs,
                        grub_cfg=cfg, normal_mod=mod, **base)
