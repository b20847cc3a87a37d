"""Filesystems (and swap, LVM2 PVs, LUKS) recognised by their superblocks.

Each probe takes a Reader over the candidate region (a partition, an LV, the whole disk) and
returns a :class:`Probe` or None. Names, UUID and label forms follow libblkid
(``blkid -p -o export``), which the tests compare against: TYPE ext4/xfs/btrfs/vfat/ntfs/swap/
LVM2_member/crypto_LUKS/iso9660/squashfs. Offsets are those of each format's own
specification (cited per probe); every length read from the image is bounded before use.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from diskkit.readers.base import Reader


@dataclass(frozen=True)
class Probe:
    """What a superblock says: type, UUID, label, size in bytes, type-specific details."""

    type: str
    uuid: str | None = None
    label: str | None = None
    size: int | None = None
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _text(raw: bytes) -> str | None:
    s = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").rstrip(" ")
    return s or None


def _uuid(raw: bytes) -> str | None:
    return None if raw == b"\0" * 16 else str(uuid.UUID(bytes=bytes(raw)))


def _u(fmt: str, data: bytes, off: int) -> int:
    return struct.unpack_from(fmt, data, off)[0]


def probe_ext(r: Reader) -> Probe | None:
    """ext2/3/4: superblock at 1024, magic 0xEF53 at +0x38 (kernel Documentation/filesystems/
    ext4/super.rst). Type as libblkid decides it: any feature ext3 lacks makes it ext4."""
    sb = r.read(1024, 1024)
    if len(sb) < 1024 or _u("<H", sb, 0x38) != 0xEF53:
        return None
    log_bs = _u("<I", sb, 0x18)
    if log_bs > 6:
        return None
    compat, incompat, ro = struct.unpack_from("<III", sb, 0x5C)
    blocks = _u("<I", sb, 0x4)
    if incompat & 0x80:  # INCOMPAT_64BIT: high half of the block count
        blocks |= _u("<I", sb, 0x150) << 32
    if incompat & ~(0x2 | 0x4 | 0x10) or ro & ~(0x1 | 0x2 | 0x4):
        kind = "ext4"
    elif compat & 0x4:  # COMPAT_HAS_JOURNAL
        kind = "ext3"
    else:
        kind = "ext2"
    return Probe(kind, _uuid(sb[0x68:0x78]), _text(sb[0x78:0x88]), blocks * (1024 << log_bs), {
        "has_journal": bool(compat & 0x4),
        "needs_recovery": bool(incompat & 0x4),  # INCOMPAT_RECOVER: journal not replayed
        "block_size": 1024 << log_bs,
        "last_mounted": _text(sb[0x88:0xC8]),
    })


def probe_xfs(r: Reader) -> Probe | None:
    """XFS: "XFSB" at 0, block size BE u32 @4, data blocks BE u64 @8, UUID @32, name @108."""
    sb = r.read(0, 512)
    if sb[:4] != b"XFSB" or len(sb) < 120:
        return None
    bs, dblocks = struct.unpack_from(">IQ", sb, 4)
    return Probe("xfs", _uuid(sb[32:48]), _text(sb[108:120]), bs * dblocks,
                 {"block_size": bs})


def probe_btrfs(r: Reader) -> Probe | None:
    """btrfs: superblock at 64 KiB, magic "_BHRfS_M" @0x40, fsid @0x20, total bytes @0x70,
    label @0x12B (256 bytes)."""
    sb = r.read(0x10000, 0x22B)
    if len(sb) < 0x22B or sb[0x40:0x48] != b"_BHRfS_M":
        return None
    return Probe("btrfs", _uuid(sb[0x20:0x30]), _text(sb[0x12B:0x22B]), _u("<Q", sb, 0x70))


def probe_swap(r: Reader) -> Probe | None:
    """Linux swap v1: "SWAPSPACE2" in the last 10 bytes of the first page; version @1024,
    last page @1028, UUID @1036, label @1052 (include/linux/swap.h union swap_header)."""
    for page in (4096, 8192, 16384, 65536):
        magic = r.read(page - 10, 10)
        if magic in (b"SWAPSPACE2", b"SWAP-SPACE"):
            if magic == b"SWAP-SPACE":
                return Probe("swap", details={"version": 0, "page_size": page})
            h = r.read(1024, 44)
            if len(h) < 44:
                return None
            last = _u("<I", h, 4)
            return Probe("swap", _uuid(h[12:28]), _text(h[28:44]), (last + 1) * page,
                         {"version": _u("<I", h, 0), "page_size": page})
    return None


def probe_lvm2(r: Reader) -> Probe | None:
    """LVM2 PV: label "LABELONE" in one of sectors 0-3, "LVM2 001" at +24, PV UUID (32
    characters) at the pv_header (label offset + u32 @20). See :mod:`diskkit.layout.lvm`."""
    for sector in range(4):
        lab = r.read(sector * 512, 512)
        if lab[:8] == b"LABELONE" and lab[24:32] == b"LVM2 001":
            off = _u("<I", lab, 20)
            if not 32 <= off <= 512 - 40:
                return None
            raw = lab[off : off + 32].decode("ascii", errors="replace")
            pvuuid = "-".join((raw[0:6], raw[6:10], raw[10:14], raw[14:18], raw[18:22],
                               raw[22:26], raw[26:32]))
            return Probe("LVM2_member", pvuuid, None, _u("<Q", lab, off + 32),
                         {"label_sector": sector})
    return None


def probe_luks(r: Reader) -> Probe | None:
    """LUKS1/2: "LUKS\\xba\\xbe" at 0, version BE u16 @6, UUID (40 chars) @168; LUKS2 label
    @24 (48 bytes). (LUKS1 on-disk format 1.2.3; LUKS2 on-disk format)."""
    h = r.read(0, 208)
    if h[:6] != b"LUKS\xba\xbe" or len(h) < 208:
        return None
    version = _u(">H", h, 6)
    label = _text(h[24:72]) if version == 2 else None
    return Probe("crypto_LUKS", _text(h[168:208]), label, None, {"version": version})


def probe_squashfs(r: Reader) -> Probe | None:
    """squashfs 4: "hsqs" at 0, bytes_used LE u64 @40, version u16 @28."""
    h = r.read(0, 96)
    if h[:4] != b"hsqs" or len(h) < 48:
        return None
    return Probe("squashfs", None, None, _u("<Q", h, 40),
                 {"version": f"{_u('<H', h, 28)}.{_u('<H', h, 30)}"})


def probe_iso9660(r: Reader) -> Probe | None:
    """ISO 9660 (ECMA-119 8.4): primary volume descriptor at 0x8000 ("\\x01CD001"), volume id
    @40, space size LE u32 @80, block size LE u16 @128, dates @813 (creation) and @830
    (modification). libblkid makes the UUID from a date: YYYY-MM-DD-HH-MM-SS-CC."""
    pvd = r.read(0x8000, 2048)
    if len(pvd) < 2048 or pvd[1:6] != b"CD001" or pvd[0] != 1:
        return None
    blocks, bsize = _u("<I", pvd, 80), _u("<H", pvd, 128)
    uid = None
    for off in (830, 813):  # libblkid prefers the modification date
        d = pvd[off : off + 16]
        if d.isdigit() and d != b"0" * 16:
            s = d.decode()
            uid = "-".join((s[0:4], s[4:6], s[6:8], s[8:10], s[10:12], s[12:14], s[14:16]))
            break
    return Probe("iso9660", uid, _text(pvd[40:72]), blocks * bsize, {"block_size": bsize})


def _ntfs_label(r: Reader, boot: bytes) -> str | None:
    """The volume name: attribute 0x60 of MFT record 3 ($Volume)."""
    bps, spc = _u("<H", boot, 11), boot[13]
    cluster = bps * spc
    mft = _u("<Q", boot, 0x30) * cluster
    cpr = struct.unpack_from("<b", boot, 0x40)[0]
    rec_size = 1 << -cpr if cpr < 0 else cpr * cluster
    if not 256 <= rec_size <= 65536:
        return None
    rec = bytearray(r.read(mft + 3 * rec_size, rec_size))
    if len(rec) < rec_size or rec[:4] != b"FILE":
        return None
    usa_off, usa_n = _u("<H", rec, 4), _u("<H", rec, 6)
    for i in range(1, usa_n):  # update sequence: restore each sector's last two bytes
        end = i * 512 - 2
        if usa_off + 2 * i + 2 > rec_size or end + 2 > rec_size:
            break
        rec[end : end + 2] = rec[usa_off + 2 * i : usa_off + 2 * i + 2]
    pos = _u("<H", rec, 0x14)
    while pos + 24 <= rec_size:
        atype, alen = _u("<I", rec, pos), _u("<I", rec, pos + 4)
        if atype == 0xFFFFFFFF or alen < 24 or pos + alen > rec_size:
            return None
        if atype == 0x60 and rec[pos + 8] == 0:  # resident VOLUME_NAME
            vlen, voff = _u("<I", rec, pos + 0x10), _u("<H", rec, pos + 0x14)
            if voff + vlen <= alen:
                return bytes(rec[pos + voff : pos + voff + vlen]).decode(
                    "utf-16-le", errors="replace") or None
        pos += alen
    return None


def probe_ntfs(r: Reader) -> Probe | None:
    """NTFS: "NTFS    " at 3, total sectors u64 @0x28, serial u64 @0x48 (blkid's UUID)."""
    boot = r.read(0, 512)
    if len(boot) < 512 or boot[3:11] != b"NTFS    ":
        return None
    bps, spc = _u("<H", boot, 11), boot[13]
    if bps not in (512, 1024, 2048, 4096) or spc == 0:
        return None
    return Probe("ntfs", f"{_u('<Q', boot, 0x48):016X}", _ntfs_label(r, boot),
                 _u("<Q", boot, 0x28) * bps)


def probe_vfat(r: Reader) -> Probe | None:
    """FAT12/16/32 (Microsoft FAT specification): BPB in the boot sector; FAT32 when the
    16-bit FAT size is 0; the FAT width follows from the cluster count (<4085 FAT12,
    <65525 FAT16). Volume id and label from the extended BPB (@39/@43, FAT32 @67/@71)."""
    b = r.read(0, 512)
    if len(b) < 512 or b[0] not in (0xEB, 0xE9) or b[510:512] != b"\x55\xaa":
        return None
    bps, spc, reserved, nfats, root_ents, tot16, _media, fatsz16 = struct.unpack_from(
        "<HBHBHHBH", b, 11)
    if bps not in (512, 1024, 2048, 4096) or spc == 0 or spc & (spc - 1) or nfats == 0:
        return None
    tot = tot16 or _u("<I", b, 32)
    fatsz = fatsz16 or _u("<I", b, 36)
    root_secs = (root_ents * 32 + bps - 1) // bps
    data = tot - reserved - nfats * fatsz - root_secs
    if tot == 0 or fatsz == 0 or data <= 0:
        return None
    clusters = data // spc
    bits = 12 if clusters < 4085 else 16 if clusters < 65525 else 32
    ext = 67 if fatsz16 == 0 else 39
    vid = label = None
    if b[ext - 1] in (0x28, 0x29):  # extended boot signature
        v = _u("<I", b, ext)
        vid = f"{v >> 16:04X}-{v & 0xFFFF:04X}"
        if b[ext - 1] == 0x29:
            label = _text(b[ext + 4 : ext + 15])
            if label == "NO NAME":
                label = None
    return Probe("vfat", vid, label, tot * bps, {"fat_bits": bits, "clusters": clusters})


#: In the order libblkid's answers agree with: containers first, FAT last (its boot sector is
#: the weakest signature; an NTFS boot sector also has 55 AA).
PROBES: tuple[Callable[[Reader], Probe | None], ...] = (
    probe_luks, probe_lvm2, probe_swap, probe_squashfs, probe_xfs, probe_btrfs, probe_ext,
    probe_iso9660, probe_ntfs, probe_vfat,
)


def probe(reader: Reader) -> Probe | None:
    """The first thing recognised at the start of ``reader``, or None."""
    for fn in PROBES:
        try:
            found = fn(reader)
        except struct.error:  # a short region: not this type
            continue
        if found is not None:
            return found
    return None
