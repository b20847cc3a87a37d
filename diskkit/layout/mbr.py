"""The MBR partition table: four primary entries and the chain of extended boot records.

Layout (the IBM PC MBR, as libfdisk and the Linux kernel's msdos.c read it): the table is at
0x1BE, four 16-byte entries (boot flag, CHS start, type, CHS end, LE u32 start LBA, LE u32
sector count), then the signature ``55 AA`` at 0x1FE. An extended partition (type 0x05, 0x0F,
0x85) holds a chain of EBRs: each EBR's entry 0 is a logical partition, relative to that EBR;
entry 1 points at the next EBR, relative to the start of the extended partition.
Numbering follows the kernel and sfdisk: primaries 1-4 by slot, logicals from 5 in chain order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from diskkit.findings import Evidence, Finding, Severity, bound_finding
from diskkit.layout.model import Partition
from diskkit.layout.types import MBR_EXTENDED, mbr_type_name
from diskkit.readers.base import Reader

TABLE_OFFSET = 0x1BE
SIGNATURE = b"\x55\xaa"
#: More logical partitions than this is hostile (the kernel stops far earlier).
MAX_LOGICAL = 256


@dataclass(frozen=True)
class MbrEntry:
    """One raw 16-byte entry of a partition table."""

    slot: int
    status: int
    type: int
    lba: int
    sectors: int

    @property
    def empty(self) -> bool:
        """True for an unused slot (type 0 or no sectors)."""
        return self.type == 0 or self.sectors == 0


@dataclass(frozen=True)
class MbrTable:
    """What sector 0 (and the EBR chain) says."""

    disk_signature: int
    entries: tuple[MbrEntry, ...]
    partitions: tuple[Partition, ...]
    #: One 0xEE entry covering the disk: the MBR is only GPT's guard.
    protective: bool
    #: 0xEE next to other entries: a hybrid MBR (Apple Boot Camp, isohybrid).
    hybrid: bool
    findings: tuple[Finding, ...] = ()


def has_signature(sector0: bytes) -> bool:
    """True when the sector ends with 55 AA (also true of FAT/NTFS boot sectors)."""
    return len(sector0) >= 512 and sector0[510:512] == SIGNATURE


def parse_entries(sector: bytes) -> tuple[MbrEntry, ...]:
    """The four entries of a 512-byte (or longer) MBR/EBR sector."""
    out = []
    for i in range(4):
        off = TABLE_OFFSET + 16 * i
        status, ptype, lba, count = struct.unpack_from("<B3xB3xII", sector, off)
        out.append(MbrEntry(i, status, ptype, lba, count))
    return tuple(out)


def looks_like_table(sector0: bytes) -> bool:
    """True when sector 0 holds a plausible partition table: the signature, every status byte
    0x00 or 0x80, and at least one non-empty entry. A FAT or NTFS boot sector fails this
    (its bytes at 0x1BE are boot code or zeros)."""
    if not has_signature(sector0):
        return False
    entries = parse_entries(sector0)
    if any(e.status not in (0, 0x80) for e in entries):
        return False
    return any(not e.empty for e in entries)


def _part(entry: MbrEntry, number: int, start_lba: int, ss: int, kind: str) -> Partition:
    return Partition(
        number=number,
        start=start_lba * ss,
        size=entry.sectors * ss,
        type=f"0x{entry.type:02x}",
        type_name=mbr_type_name(entry.type),
        bootable=entry.status == 0x80,
        kind=kind,
    )


def _logicals(
    reader: Reader, ext: MbrEntry, ss: int, findings: list[Finding]
) -> list[Partition]:
    """Follow the EBR chain of the extended partition ``ext``; loops and runaway chains stop
    with a finding."""
    out: list[Partition] = []
    seen: set[int] = set()
    ebr_lba = ext.lba
    number = 5
    while True:
        if len(out) >= MAX_LOGICAL and ebr_lba not in seen:
            findings.append(bound_finding(
                f"the chain of extended boot records goes on past {MAX_LOGICAL} logical "
                f"partitions (next EBR at sector {ebr_lba}): work bound hit, the rest not read",
                ebr_sector=ebr_lba))
            break
        if ebr_lba in seen:
            findings.append(Finding(
                "mbr-ebr-loop", Severity.ERROR,
                f"the chain of extended boot records loops back (EBR at sector {ebr_lba})",
                (Evidence("EBR seen twice", ebr_lba * ss, None, "disk"),),
                "recreate the logical partitions with fdisk",
            ))
            break
        seen.add(ebr_lba)
        sector = reader.read(ebr_lba * ss, 512)
        if not has_signature(sector):
            findings.append(Finding(
                "mbr-ebr-bad-signature", Severity.WARNING,
                f"extended boot record at sector {ebr_lba} has no 55 AA signature",
                (Evidence("bytes at 0x1FE", ebr_lba * ss + 510, sector[510:512], "disk"),),
                "recreate the logical partitions with fdisk",
            ))
            break
        first, link = parse_entries(sector)[:2]
        if not first.empty:
            out.append(_part(first, number, ebr_lba + first.lba, ss, "logical"))
            number += 1
        if link.empty or link.type not in MBR_EXTENDED:
            break
        ebr_lba = ext.lba + link.lba
    return out


def parse_mbr(reader: Reader, sector_size: int = 512) -> MbrTable:
    """Read the MBR of ``reader`` with ``sector_size``-byte sectors. The caller has checked
    :func:`looks_like_table`; entries past the end of the disk yield findings, not errors."""
    ss = sector_size
    sector0 = reader.read(0, 512)
    entries = parse_entries(sector0)
    (disk_sig,) = struct.unpack_from("<I", sector0, 0x1B8)
    findings: list[Finding] = []
    parts: list[Partition] = []
    used = [e for e in entries if not e.empty]
    gpt_guard = [e for e in used if e.type == 0xEE]
    protective = len(used) == 1 and bool(gpt_guard)
    hybrid = bool(gpt_guard) and len(used) > 1
    extended_seen = False
    for e in entries:
        if e.empty:
            continue
        if e.type in MBR_EXTENDED:
            parts.append(_part(e, e.slot + 1, e.lba, ss, "extended"))
            if extended_seen:
                continue  # the kernel follows only the first extended partition
            extended_seen = True
            parts.extend(_logicals(reader, e, ss, findings))
        else:
            parts.append(_part(e, e.slot + 1, e.lba, ss, "primary"))
    disk_end = reader.size
    for p in parts:
        if p.end > disk_end:
            findings.append(Finding(
                "partition-beyond-disk", Severity.ERROR,
                f"partition {p.number} ends at byte {p.end}, past the end of the disk "
                f"({disk_end} bytes): the image was truncated or the table is wrong",
                (Evidence("partition end vs disk size", p.start, None, "disk"),),
                "restore the full image, or fix the partition table with fdisk",
                {"partition": p.number, "end": p.end, "disk_size": disk_end},
            ))
    return MbrTable(disk_sig, entries, tuple(parts), protective, hybrid, tuple(findings))
