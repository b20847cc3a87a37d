"""Filesystems (and swap, LVM2 PVs, LUKS) recognised by their superblocks.

Each probe takes a Reader over the candidate region (a partition, an LV, the whole disk) and
returns a :class:`Probe` or None. Names, UUID and label forms follow libblkid
(``blkid -p -o export``), which the tests compare against: TYPE ext4/xfs/btrfs/vfat/ntfs/swap/
LVM2_member/crypto_LUKS/udf/iso9660/squashfs. Offsets are those of each format's own
specification (cited per probe); every length read from the image is bounded before use.
"""

from __future__ import annotations

import struct
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
    import uuid  # here: uuid imports platform; a disk without filesystems need not (start-up)

    return None if raw == b"\0" * 16 else str(uuid.UUID(bytes=bytes(raw)))


def _u(fmt: str, data: bytes | bytearray, off: int) -> int:
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
    return Probe("iso9660", uid, _iso_label(r, pvd), blocks * bsize, {"block_size": bsize})


def _iso_label(r: Reader, pvd: bytes) -> str | None:
    """The label as libblkid gives it (util-linux superblocks/iso9660.c): with a Joliet
    supplementary descriptor (escape %/@, %/C or %/E), Joliet's UTF-16 name merged with the
    primary's 32 ASCII characters where one is a prefix of the other ('_' standing for a
    character ASCII cannot hold), else Joliet's name; without Joliet, the primary's."""
    joliet = None
    for i in range(1, 16):  # descriptors after the primary, up to the terminator
        d = r.read(0x8000 + i * 2048, 2048)
        if len(d) < 2048 or d[0] == 255 or d[1:6] != b"CD001":
            break
        if d[0] == 2 and d[88:91] in (b"%/@", b"%/C", b"%/E"):
            joliet = d
            break
    if joliet is None:
        return _text(pvd[40:72])
    merged = _merge_utf16be_ascii(joliet[40:72], pvd[40:72])
    raw = merged if merged is not None else joliet[40:72]
    text = raw.decode("utf-16-be", errors="replace").split("\0", 1)[0].rstrip()
    return text or None


def _merge_utf16be_ascii(utf16: bytes, ascii_: bytes) -> bytes | None:
    """libblkid's merge_utf16be_ascii() (see :func:`_iso_label`), or None where the two
    names disagree."""
    out = bytearray()
    a = u = 0
    n = len(ascii_)
    while u + 1 < n and a < n:
        if 0xD8 <= utf16[u] <= 0xDB and u + 3 < n and 0xDC <= utf16[u + 2] <= 0xDF:
            out += utf16[u:u + 2]
            u += 2
            if u + 1 >= len(utf16):
                break
        c = ascii_[a]
        if c == 0x5F:  # '_'
            out += utf16[u:u + 2]
        elif utf16[u] == 0 and utf16[u + 1] == 0x5F:
            out += bytes((0, c))
        elif utf16[u] == 0 and bytes((c,)).upper() == bytes((utf16[u + 1],)).upper():
            out += bytes((0, utf16[u + 1] if 0x41 <= c <= 0x5A else c))
        else:
            return None
        a += 1
        u += 2
    for c in ascii_[a:]:
        out += bytes((0, c))
    return bytes(out)


def _dstring(d: bytes) -> str | None:
    """An ECMA-167 dstring (compression id 8: one byte a character, 16: UTF-16BE; its length
    in the last byte, the id included), trailing white space dropped."""
    if len(d) < 2 or d[0] not in (8, 16):
        return None
    n = min(max(d[-1] - 1, 0), len(d) - 2)
    raw = d[1:1 + n]
    text = raw.decode("latin-1") if d[0] == 8 else raw[:n - n % 2].decode("utf-16-be", "replace")
    return text.split("\0", 1)[0].rstrip() or None


def _udf_uuid(volset: bytes) -> str | None:
    """libblkid's gen_uuid_from_volset_id(): the first 16 UTF-8 bytes of the volume set
    identifier, lower-cased where they are hex digits, else (part) hex-encoded."""
    if len(volset) < 2 or volset[0] not in (8, 16):
        return None
    n = min(max(volset[-1] - 1, 0), len(volset) - 2)
    raw = volset[1:1 + n]
    text = raw.decode("latin-1") if volset[0] == 8 else raw[:n - n % 2].decode(
        "utf-16-be", "replace")
    buf = text.encode("utf-8")[:16]
    if len(buf.split(b"\0", 1)[0]) < 8:
        return None
    buf = buf.ljust(16, b"\0")
    hexdig = b"0123456789abcdefABCDEF"
    nonhex = next((i for i in range(16) if buf[i] not in hexdig), 16)
    if nonhex < 8:
        return buf[:8].hex()
    if nonhex < 16:
        return buf[:8].decode("ascii").lower() + buf[8:12].hex()
    return buf.decode("ascii").lower()


def probe_udf(r: Reader) -> Probe | None:
    """UDF (ECMA-167, as util-linux libblkid/src/superblocks/udf.c reads it): an NSR02/NSR03
    volume structure descriptor in the 64 sectors from 32 KiB, the anchor (tag 2) at sector
    256 of a 512-4096 byte block, then the main descriptor sequence: LABEL from the logical
    volume descriptor (tag 6) identifier, UUID from the primary one's (tag 1) volume set
    identifier. At most 64 descriptors are read."""
    if not any(r.read(0x8000 + i * 2048 + 1, 5) in (b"NSR02", b"NSR03") for i in range(64)):
        return None
    for bs in (512, 1024, 2048, 4096):
        avdp = r.read(256 * bs, 32)
        if len(avdp) == 32 and _u("<H", avdp, 0) == 2:
            break
    else:
        return None
    length, loc = struct.unpack_from("<II", avdp, 16)
    label = uuid_ = None
    for b in range(min(length // bs, 64)):
        vd = r.read((loc + b) * bs, 512)
        if len(vd) < 212:
            break
        tag = _u("<H", vd, 0)
        if tag == 0 or _u("<I", vd, 12) != loc + b:
            break
        if tag == 1 and uuid_ is None:
            uuid_ = _udf_uuid(vd[72:200])
        elif tag == 6 and label is None:
            label = _dstring(vd[84:212])
        if label is not None and uuid_ is not None:
            break
    return Probe("udf", uuid_, label, None, {"block_size": bs})


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
    <65525 FAT16). Volume id from the BPB (@39, FAT32 @67); label as libblkid reads it: the
    root directory's volume entry, else the BPB's (@43, FAT32 @71), "NO NAME" meaning none."""
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
    fat32 = fatsz16 == 0
    boot_label = b[71:82] if fat32 else b[43:54]
    root = _fat_root_label(r, b, fat32, bps, spc, reserved, nfats * fatsz, root_ents)
    raw = root if root is not None and root != _NO_NAME else boot_label
    label = None if raw == _NO_NAME else _text(raw)
    v = _u("<I", b, 67 if fat32 else 39)  # libblkid prints the serial whatever byte 38/66 is
    return Probe("vfat", f"{v >> 16:04X}-{v & 0xFFFF:04X}", label, tot * bps,
                 {"fat_bits": bits, "clusters": clusters})


_NO_NAME = b"NO NAME    "


def _fat_root_label(r: Reader, b: bytes, fat32: bool, bps: int, spc: int, reserved: int,
                    fat_sectors: int, root_ents: int) -> bytes | None:
    """The volume label entry of the root directory, as libblkid's search_fat_label finds it
    (util-linux libblkid/src/superblocks/vfat.c): stop at a 0x00 name, skip deleted entries,
    entries with a cluster and long-name entries; the first entry with the volume attribute
    and not the directory one. FAT32's root is followed for at most 99 clusters, as there."""

    def search(data: bytes) -> tuple[bytes | None, bool]:
        for pos in range(0, len(data) - 31, 32):
            e = data[pos:pos + 32]
            if e[0] == 0:
                return None, True
            if e[0] == 0xE5 or e[20:22] != b"\0\0" or e[26:28] != b"\0\0" or \
                    e[11] & 0x3F == 0x0F:
                continue
            if e[11] & 0x18 == 0x08:
                return bytes(e[:11]), True
        return None, False

    if not fat32:
        found, _ = search(r.read((reserved + fat_sectors) * bps, root_ents * 32))
        return found
    cluster_bytes = spc * bps
    entries = _u("<I", b, 36) * bps // 4
    nxt = _u("<I", b, 44)
    for _ in range(99):
        if not nxt or nxt >= entries:
            break
        off = (reserved + fat_sectors + (nxt - 2) * spc) * bps
        found, _done = search(r.read(off, min(cluster_bytes, 1 << 16)))
        if found is not None:  # (libblkid goes on to the next cluster after a 0x00 name)
            return found
        fat = r.read(reserved * bps + nxt * 4, 4)
        if len(fat) < 4:
            break
        nxt = _u("<I", fat, 0) & 0x0FFFFFFF
    return None


#: In the order libblkid's answers agree with: containers first, FAT last (its boot sector is
#: the weakest signature; an NTFS boot sector also has 55 AA).
PROBES: tuple[Callable[[Reader], Probe | None], ...] = (
    probe_luks, probe_lvm2, probe_swap, probe_squashfs, probe_xfs, probe_btrfs, probe_ext,
    probe_udf, probe_iso9660, probe_ntfs, probe_vfat,
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
