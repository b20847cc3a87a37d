"""The GUID partition table (UEFI specification 2.10, section 5.3).

Header at LBA 1 (byte 512 on 512-byte-sector disks, 4096 on 4Kn disks): ``EFI PART``, revision,
header size (u32 @12), header CRC32 (u32 @16, computed with the field zeroed), my LBA (@24),
alternate LBA (@32), first/last usable LBA (@40/@48), disk GUID (@56), entry array LBA (@72),
number of entries (u32 @80), entry size (u32 @84), entry array CRC32 (u32 @88).
Entries: type GUID, unique GUID (both mixed-endian), first LBA, last LBA (inclusive),
attributes (bit 2: legacy BIOS bootable), name (36 UTF-16LE code units).
The backup header sits at the last LBA of the disk; after a volume is grown it is left behind.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from diskkit.errors import ImageError
from diskkit.findings import Evidence, Finding, Severity
from diskkit.layout.model import Partition
from diskkit.layout.types import gpt_type_name
from diskkit.readers.base import Reader

SIGNATURE = b"EFI PART"
#: Bounds on what a header may ask us to read (the usual array is 128 x 128 bytes).
MAX_ENTRY_ARRAY = 4 << 20
MIN_ENTRY_SIZE = 128
MAX_ENTRY_SIZE = 4096
_HDR = struct.Struct("<8sIIIIQQQQ16sQIII")


@dataclass(frozen=True)
class GptHeader:
    """A parsed GPT header, with whether its CRC holds."""

    offset: int
    revision: int
    header_size: int
    crc_ok: bool
    my_lba: int
    alternate_lba: int
    first_usable: int
    last_usable: int
    disk_guid: str
    entries_lba: int
    num_entries: int
    entry_size: int
    entries_crc: int


@dataclass(frozen=True)
class GptTable:
    """The table as read: the header used, the partitions, and what was wrong."""

    sector_size: int
    header: GptHeader
    partitions: tuple[Partition, ...]
    backup_lba: int | None
    findings: tuple[Finding, ...] = ()


def detect_sector_size(reader: Reader) -> int | None:
    """512 or 4096 when a GPT signature is at LBA 1 for that sector size, else None."""
    for ss in (512, 4096):
        if reader.read(ss, 8) == SIGNATURE:
            return ss
    return None


def detect_from_backup(reader: Reader) -> int | None:
    """Sector size of a GPT whose primary header is gone but whose backup header (at the
    last LBA) is intact, else None."""
    for ss in (512, 4096):
        last = reader.size // ss - 1
        if last > 1:
            h = read_header(reader, last, ss)
            if h is not None and h.crc_ok:
                return ss
    return None


def guid(raw: bytes) -> str:
    """Canonical uppercase form of a GUID stored mixed-endian (as UEFI stores them)."""
    import uuid  # here: uuid imports platform; a disk without GPT need not (start-up)

    return str(uuid.UUID(bytes_le=bytes(raw))).upper()


def read_header(reader: Reader, lba: int, ss: int) -> GptHeader | None:
    """The header at ``lba``, or None when there is no ``EFI PART`` there."""
    offset = lba * ss
    raw = reader.read(offset, ss)
    if len(raw) < _HDR.size or raw[:8] != SIGNATURE:
        return None
    (_sig, rev, hsize, crc, _res, my, alt, first, last, dguid, elba, n, esize, ecrc) = (
        _HDR.unpack_from(raw)
    )
    crc_ok = False
    if 92 <= hsize <= ss:
        body = bytearray(raw[:hsize])
        body[16:20] = b"\0\0\0\0"
        crc_ok = zlib.crc32(bytes(body)) == crc
    return GptHeader(offset, rev, hsize, crc_ok, my, alt, first, last, guid(dguid), elba, n,
                     esize, ecrc)


def _finding(code: str, sev: Severity, msg: str, offset: int, data: bytes | None, fix: str,
             **details: object) -> Finding:
    return Finding(code, sev, msg, (Evidence(msg, offset, data, "disk"),), fix, dict(details))


def _entries(reader: Reader, h: GptHeader, ss: int, findings: list[Finding]) -> list[Partition]:
    if not MIN_ENTRY_SIZE <= h.entry_size <= MAX_ENTRY_SIZE or h.entry_size % 8:
        raise ImageError(f"GPT entry size {h.entry_size} is not valid", code="bad-gpt")
    total = h.num_entries * h.entry_size
    if total > MAX_ENTRY_ARRAY:
        raise ImageError(f"GPT entry array of {total} bytes is implausibly large",
                         code="bad-gpt")
    array = reader.read(h.entries_lba * ss, total)
    if len(array) < total:
        findings.append(_finding(
            "gpt-entries-truncated", Severity.ERROR,
            "the GPT partition entry array runs past the end of the disk",
            h.entries_lba * ss, None, "restore the full image"))
        array = array + b"\0" * (total - len(array))
    if zlib.crc32(array) != h.entries_crc:
        findings.append(_finding(
            "gpt-entries-crc-mismatch", Severity.ERROR,
            "the CRC32 of the GPT partition entry array does not match the header",
            h.entries_lba * ss, struct.pack("<I", h.entries_crc),
            "repair with gdisk (r, then v and w) or sgdisk --backup first",
            expected=h.entries_crc, actual=zlib.crc32(array)))
    parts: list[Partition] = []
    for i in range(h.num_entries):
        e = array[i * h.entry_size : i * h.entry_size + 128]
        if e[:16] == b"\0" * 16:
            continue
        first, last, attrs = struct.unpack_from("<QQQ", e, 32)
        name = e[56:128].decode("utf-16-le", errors="replace").split("\0", 1)[0]
        size = (last - first + 1) * ss if last >= first else 0  # last LBA is inclusive
        parts.append(Partition(
            number=i + 1, start=first * ss, size=size, type=guid(e[:16]),
            type_name=gpt_type_name(guid(e[:16])), name=name,
            bootable=bool(attrs & (1 << 2)), kind="gpt", uuid=guid(e[16:32]),
        ))
    return parts


def parse_gpt(reader: Reader, ss: int) -> GptTable:
    """Read the GPT of ``reader`` with ``ss``-byte sectors (see :func:`detect_sector_size`)."""
    findings: list[Finding] = []
    last_lba = reader.size // ss - 1
    primary = read_header(reader, 1, ss)
    backup_at_end = read_header(reader, last_lba, ss) if last_lba > 1 else None
    header = primary
    if primary is None or not primary.crc_ok:
        backup_ok = backup_at_end is not None and backup_at_end.crc_ok
        findings.append(_finding(
            "gpt-header-crc-mismatch", Severity.WARNING if backup_ok else Severity.ERROR,
            "the primary GPT header is missing or its CRC32 does not match: "
            + ("firmware will use the backup" if backup_ok else "and there is no valid backup"),
            ss, reader.read(ss + 16, 4), "repair with gdisk (r, b or c, then w)"))
        if backup_ok:
            header = backup_at_end
    if header is None:
        raise ImageError("GPT header is unreadable", code="bad-gpt")
    backup_lba: int | None = None
    if primary is not None and primary.crc_ok:
        alt = primary.alternate_lba
        at_alt = read_header(reader, alt, ss) if 1 < alt <= last_lba else None
        if backup_at_end is not None and backup_at_end.crc_ok:
            backup_lba = last_lba
        elif at_alt is not None and at_alt.crc_ok:
            backup_lba = alt
            findings.append(_finding(
                "gpt-backup-header-not-at-end", Severity.WARNING,
                f"the backup GPT header is at LBA {alt}, not at the last LBA {last_lba}: "
                "the disk was grown and the table not moved, so the new space is not usable",
                alt * ss, SIGNATURE,
                "sgdisk -e DISK (or: sfdisk --relocate gpt-bak-std DISK, or growpart)",
                backup_lba=alt, last_lba=last_lba))
        else:
            findings.append(_finding(
                "gpt-backup-header-missing", Severity.WARNING,
                f"no valid backup GPT header at LBA {alt} nor at the last LBA {last_lba}",
                min(alt, last_lba) * ss, None,
                "sgdisk -e DISK rewrites the backup header at the end of the disk",
                alternate_lba=alt, last_lba=last_lba))
        if primary.alternate_lba != last_lba and backup_lba == last_lba:
            findings.append(_finding(
                "gpt-backup-header-not-at-end", Severity.WARNING,
                f"the primary GPT header says the backup is at LBA {alt}, but the disk ends "
                f"at LBA {last_lba}", ss + 32, struct.pack("<Q", alt), "sgdisk -e DISK",
                backup_lba=alt, last_lba=last_lba))
    parts = _entries(reader, header, ss, findings)
    for p in parts:
        if p.end > reader.size:
            findings.append(_finding(
                "partition-beyond-disk", Severity.ERROR,
                f"partition {p.number} ends at byte {p.end}, past the end of the disk "
                f"({reader.size} bytes)", p.start, None,
                "restore the full image, or fix the partition table with gdisk",
                partition=p.number, end=p.end, disk_size=reader.size))
    return GptTable(ss, header, tuple(parts), backup_lba, tuple(findings))
