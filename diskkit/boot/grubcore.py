"""GRUB 2 for BIOS judged by what core.img does at start-up (grub-core/kern/main.c).

grub_main: the modules built into core.img load; the prefix grub-mkimage recorded sets
``$prefix`` and ``$root`` (a prefix without a device is on the boot drive,
kern/i386/pc/init.c grub_machine_get_bootlocation); the config built into core.img runs
(grub-install's load.cfg: ``search.fs_uuid UUID root HINTS`` then
``set prefix=($root)'/boot/grub'``); then normal.mod loads, built in or read from
``$prefix/i386-pc/normal.mod``. Reading it needs, built into core.img, the partition map
module of the disk (part_msdos, part_gpt) and the filesystem module of the prefix's
filesystem (ext2 for ext2/3/4, fat, xfs, btrfs, iso9660...). When normal.mod cannot be
loaded GRUB stops at ``grub rescue>``. A ``(memdisk)`` prefix is the tar built into core.img.
A partition that lies beyond the end of the disk cannot be read (GRUB: "attempt to read or
write outside of disk"): it is not there.

Pure: a :class:`~diskkit.boot.grub.CoreImage` and what the disk holds in, a frozen
:class:`CoreVerdict` out (docs/boot-loaders.md, "GRUB core.img").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diskkit.boot.grub import CoreImage
from diskkit.boot.prefix import PrefixTarget, resolve_prefix, split_prefix
from diskkit.layout.model import Partition
from diskkit.readers.base import Reader

#: The module core.img needs to read each filesystem type (layout's blkid-style TYPE, and
#: prefix.py's "ext"/"vfat").
FS_MODULES: dict[str, tuple[str, ...]] = {
    "ext": ("ext2",), "ext2": ("ext2",), "ext3": ("ext2",), "ext4": ("ext2",),
    "vfat": ("fat",), "xfs": ("xfs",), "btrfs": ("btrfs",), "iso9660": ("iso9660",),
    "ntfs": ("ntfs",), "f2fs": ("f2fs",), "udf": ("udf",)}
#: The partition map module for each table.
PART_MODULES = {"mbr": "part_msdos", "gpt": "part_gpt"}

_SEARCH = re.compile(r"^\s*search(?:\.fs_uuid|\s+--fs-uuid|\s+-u)\s+(?:--set=?(\S+)\s+)?"
                     r"(?:--no-floppy\s+)?([0-9A-Fa-f-]+)(?:\s+(\w+))?", re.M)
_SET_PREFIX = re.compile(r"^\s*set\s+prefix=(\S+)", re.M)

_FIX = "reinstall GRUB onto this disk (grub-install /dev/vda from the guest, or grub-install " \
    "--boot-directory=MOUNT/boot --modules='part_msdos ext2' IMAGE-DEVICE from a host)"


@dataclass(frozen=True)
class CoreVerdict:
    """Whether core.img reaches GRUB's normal mode (True), stops at ``grub rescue>``
    (False), or cannot be told (None); the prefix it ends with and why."""

    boots: bool | None
    reason: str
    prefix: str | None = None
    code: str | None = None
    fix: str | None = None
    target: PrefixTarget | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``boot.grub[].verdict``)."""
        return {"boots": self.boots, "reason": self.reason, "prefix": self.prefix,
                "code": self.code, "fix": self.fix,
                "target": self.target.to_dict() if self.target else None}


def _load_cfg_prefix(config: str, layout: Any) -> tuple[str | None, str | None]:
    """(prefix, problem) after the built-in config: ``search.fs_uuid`` resolved against the
    layout's filesystems, then ``set prefix=($root)...``."""
    m = _SET_PREFIX.search(config)
    if m is None:
        return None, None
    value = m.group(1).strip("'\"").replace("'", "").replace('"', "")
    s = _SEARCH.search(config)
    var = (s.group(1) or s.group(3) or "root") if s else None
    if s is None or (f"${var}" not in value and f"${{{var}}}" not in value):
        return value, None
    uuid = s.group(2).lower()
    fs = next((f for f in getattr(layout, "filesystems", ()) or ()
               if (f.uuid or "").lower() == uuid), None)
    if fs is None:
        return None, f"the config built into core.img searches for the filesystem UUID {uuid} " \
            "(search.fs_uuid, grub-install's load.cfg), and no filesystem on this disk has it: " \
            "GRUB says 'error: no such device' and $prefix stays unset"
    where = fs.location
    if where == "disk":
        dev = ""
    elif where.startswith("partition "):
        dev = "," + where.split()[1]
    elif where.startswith("lv "):
        dev = "lvm/" + "-".join(p.replace("-", "--") for p in where[3:].split("/", 1))
    else:
        return None, f"the filesystem {uuid} is at {where}, which is not followed"
    _dev, path = split_prefix(value.replace(f"${{{var}}}", f"${var}"))
    return f"({dev}){path}", None


def _partition_problem(disk: Reader, target: PrefixTarget, parts: Sequence[Partition],
                       table: str | None, modules: set[str], prefix: str) -> CoreVerdict | None:
    """The prefix's partition lies beyond the end of the disk, or core.img cannot read the
    partition table (no part_msdos / part_gpt built in)."""
    if target.kind == "partition" and target.partition_number is not None:
        part = next((p for p in parts if p.number == target.partition_number), None)
        if part is not None and part.start + 512 > disk.size:
            return CoreVerdict(False, f"the prefix's partition {part.number} starts at byte "
                               f"{part.start}, beyond the end of the {disk.size}-byte disk: GRUB "
                               "cannot read it (attempt to read outside of disk) and stops at "
                               "'grub rescue>'", prefix, "partition-beyond-end",
                               "resize the volume to the image's size, or rewrite the "
                               "partition table", target)
        need = PART_MODULES.get(table or "")
        if need and need not in modules:
            return CoreVerdict(False, f"core.img lacks {need}: GRUB cannot see partition "
                               f"{target.partition_number} of this {table} disk and stops at "
                               "'grub rescue>'", prefix, "grub-core-module-missing", _FIX,
                               target)
    return None


def _memdisk(core: CoreImage, modules: set[str], prefix: str, path: str) -> CoreVerdict:
    """A ``(memdisk)`` prefix: the tar built into core.img, read with its tar module."""
    if "normal" in modules:
        return CoreVerdict(True, "normal.mod is built into core.img; the prefix is its "
                           "memdisk", prefix)
    if not core.memdisk_size:
        return CoreVerdict(False, "the prefix is (memdisk) and core.img has no memdisk: "
                           "'grub rescue>'", prefix, "grub-prefix-partition-missing", _FIX)
    if not modules & {"tar", "cpio", "newc", "odc"}:
        return CoreVerdict(False, "the prefix is (memdisk) and core.img has no module that "
                           "reads its archive (tar): 'unknown filesystem', 'grub rescue>'",
                           prefix, "grub-core-module-missing", _FIX)
    want = (path.strip("/") + "/i386-pc/normal.mod").lstrip("/")
    if want in core.memdisk_files:
        return CoreVerdict(True, f"core.img's memdisk holds {want}", prefix)
    if core.memdisk_files:
        return CoreVerdict(False, f"core.img's memdisk has no {want} and normal is not built "
                           "in: 'grub rescue>'", prefix, "grub-normal-mod-missing", _FIX)
    return CoreVerdict(None, "the memdisk's files could not be listed", prefix)


def judge_core(disk: Reader, core: CoreImage, parts: Sequence[Partition], table: str | None,
               layout: Any = None) -> CoreVerdict:
    """Judge core.img's start-up (module docstring)."""
    if not core.found or core.error:
        return CoreVerdict(False, f"no usable core.img: {core.error or 'not found'}",
                           code="grub-core-img-missing", fix=_FIX)
    modules = set(core.modules)
    prefix = core.prefix
    if core.config:
        new, problem = _load_cfg_prefix(core.config, layout)
        if problem:
            return CoreVerdict(False, problem, prefix, "grub-search-uuid-missing", _FIX)
        prefix = new or prefix
    if prefix is None:
        return CoreVerdict(None, "core.img has no prefix")
    device, _path = split_prefix(prefix)
    if device == "memdisk":
        return _memdisk(core, modules, prefix, _path)
    target = resolve_prefix(disk, prefix, parts, table, layout)
    if "normal" in modules:
        return CoreVerdict(True, "normal.mod is built into core.img: GRUB reaches its normal "
                           "mode (menu or grub> prompt) whatever the prefix holds", prefix,
                           target=target)
    if target.exists is False:
        return CoreVerdict(False, f"the prefix {prefix!r} names a volume that is not on this "
                           f"disk ({target.note}): normal.mod cannot be loaded, GRUB stops at "
                           "'grub rescue>'", prefix, "grub-prefix-partition-missing", _FIX,
                           target)
    bad = _partition_problem(disk, target, parts, table, modules, prefix)
    if bad is not None:
        return bad
    fs = target.filesystem
    if fs is None and target.kind == "partition":  # a type prefix.py does not open (xfs...)
        fs = next((f.type for f in getattr(layout, "filesystems", ()) or ()
                   if f.location == f"partition {target.partition_number}"), None)
    if fs in FS_MODULES and not modules & set(FS_MODULES[fs]):
        return CoreVerdict(False, f"the prefix is on {fs}, and core.img has no module that "
                           f"reads it ({'/'.join(FS_MODULES[fs])}): 'unknown filesystem', "
                           "'grub rescue>'", prefix, "grub-core-module-missing", _FIX, target)
    if target.normal_mod is False:
        return CoreVerdict(False, f"no i386-pc/normal.mod under the prefix {prefix!r} and none "
                           "built into core.img: 'grub rescue>'", prefix,
                           "grub-normal-mod-missing", _FIX, target)
    if target.normal_mod is None or target.exists is None:
        return CoreVerdict(None, f"the prefix {prefix!r} could not be followed "
                           f"({target.note or 'filesystem not read'})", prefix, target=target)
    return CoreVerdict(True, f"core.img reads normal.mod from {prefix} ({fs})", prefix,
                       target=target)
