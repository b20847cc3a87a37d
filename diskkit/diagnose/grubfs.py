"""Can the image's GRUB read the filesystem it loads grub.cfg and the kernel from?

GRUB refuses a filesystem whose superblock sets an incompatible feature its driver does not
know, with ``error: unknown filesystem.``. The masks below are GRUB's own, by release
(grub-core/fs/xfs.c ``XFS_SB_FEAT_INCOMPAT_SUPPORTED``, grub-core/fs/ext2.c
``EXT2_DRIVER_SUPPORTED_INCOMPAT | EXT2_DRIVER_IGNORED_INCOMPAT``). Debian's 2.06-13 and later
carry 2.12's xfs.c (NREXT64), as the xfs variants of tests/fixtures/debian.py show.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from diskkit.readers.base import Reader

XFS_FEATURES = {0x1: "ftype", 0x2: "sparse inodes", 0x4: "meta uuid", 0x8: "bigtime",
                0x10: "needsrepair", 0x20: "nrext64", 0x40: "exchange-range",
                0x80: "parent pointers", 0x100: "metadir"}
EXT_FEATURES = {0x1: "compression", 0x2: "filetype", 0x4: "needs_recovery",
                0x8: "journal_dev", 0x10: "meta_bg", 0x40: "extent", 0x80: "64bit",
                0x100: "mmp", 0x200: "flex_bg", 0x400: "ea_inode", 0x1000: "dirdata",
                0x2000: "metadata_csum_seed", 0x4000: "large_dir", 0x8000: "inline_data",
                0x10000: "encrypt", 0x20000: "casefold"}

#: (GRUB release, incompat features its XFS driver reads).
XFS_MASKS = (((2, 2), 0x1 | 0x4), ((2, 4), 0x7), ((2, 6), 0x1F), ((2, 12), 0x3F),
             ((2, 14), 0x1FF))
#: (GRUB release, incompat features its ext2/3/4 driver reads or ignores).
_EXT_BASE = 0x2 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200
EXT_MASKS = (((2, 2), _EXT_BASE), ((2, 4), _EXT_BASE | 0x10000),
             ((2, 6), _EXT_BASE | 0x10000 | 0x2000),
             ((2, 12), _EXT_BASE | 0x10000 | 0x2000 | 0x4000))


@dataclass(frozen=True)
class Readability:
    """Whether GRUB ``version`` reads a filesystem: ``unreadable`` names the features it
    does not know (empty: readable); ``version`` None = the image's GRUB version unknown."""

    fstype: str
    incompat: int
    unreadable: tuple[str, ...]
    version: str | None
    evidence: str


def grub_version(packages: dict[str, str]) -> tuple[tuple[int, int] | None, str | None]:
    """((major, minor), the package text) of the GRUB package in the guest (grub-pc,
    grub-efi-amd64, grub2-common, grub2-pc...); (None, None) when none is listed."""
    for name in sorted(packages):
        if not name.startswith("grub"):
            continue
        m = re.match(r"(?:\d+:)?(\d+)\.(\d+)(?:[~.+-]|$)", packages[name])
        if m:
            return (int(m.group(1)), int(m.group(2))), f"{name} {packages[name]}"
    return None, None


def _xfs_version(ver: tuple[int, int] | None, pkg: str | None) -> tuple[int, int] | None:
    """Debian's 2.06-13 and later carry 2.12's xfs.c (NREXT64)."""
    deb = re.search(r" (?:\d+:)?2\.06-(\d+)", pkg or "")
    return (2, 12) if ver == (2, 6) and deb and int(deb.group(1)) >= 13 else ver


def _mask(masks: tuple[tuple[tuple[int, int], int], ...], ver: tuple[int, int] | None) -> int:
    if ver is None:
        return masks[-1][1]
    best = masks[0][1]
    for v, m in masks:
        if ver >= v:
            best = m
    return best


def _names(bits: int, table: dict[int, str]) -> tuple[str, ...]:
    return tuple(table.get(1 << i, f"bit 0x{1 << i:x}") for i in range(32) if bits & (1 << i))


def readability(disk: Reader, offset: int, fstype: str, packages: dict[str, str],
                ) -> Readability | None:
    """Read the superblock at ``offset`` and compare its incompatible features with what
    the image's GRUB reads; None for a type GRUB's check does not cover here."""
    ver, pkg = grub_version(packages)
    if fstype == "xfs":
        sb = disk.read(offset, 224)
        if len(sb) < 224 or sb[:4] != b"XFSB":
            return None
        if struct.unpack_from(">H", sb, 100)[0] & 0xF != 5:
            return Readability(fstype, 0, (), pkg, "XFS v4 superblock: no incompat field")
        inc = struct.unpack_from(">I", sb, 216)[0]
        bad = inc & ~_mask(XFS_MASKS, _xfs_version(ver, pkg))
        return Readability(fstype, inc, _names(bad, XFS_FEATURES), pkg,
                           f"XFS superblock sb_features_incompat = 0x{inc:x} "
                           f"({', '.join(_names(inc, XFS_FEATURES)) or 'none'})")
    if fstype in ("ext2", "ext3", "ext4"):
        sb = disk.read(offset + 1024, 0x64)
        if len(sb) < 0x64 or sb[0x38:0x3A] != b"\x53\xef":
            return None
        inc = struct.unpack_from("<I", sb, 0x60)[0]
        bad = inc & ~_mask(EXT_MASKS, ver)
        return Readability(fstype, inc, _names(bad, EXT_FEATURES), pkg,
                           f"ext superblock s_feature_incompat = 0x{inc:x} "
                           f"({', '.join(_names(inc, EXT_FEATURES)) or 'none'})")
    return None
