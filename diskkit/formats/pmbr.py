"""The MBR partition-table rules OpenStack enforces on every raw image with ``55 AA`` at 510
(oslo.utils' GPT inspector, run by Glance and Nova since the 2024 format CVEs).

A protective MBR (UEFI 2.10, 5.2.3) has exactly one partition record, in slot 0: OS type
0xEE, boot indicator 0, starting CHS 0x000200, starting LBA 1; the other three records are
zero. An MBR that is not protective may hold any partitions, but every boot indicator is 0x00
or 0x80. A boot sector whose BPB says "two FATs, fixed disk" (a FAT volume boot record) is
not a partition table at all. OpenStack refuses: a boot indicator other than 0x00/0x80, a
0xEE record with another start CHS or LBA, a 0xEE record beside other records (a hybrid MBR,
or two 0xEE records), and a signature with no partition at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from diskkit.findings import Finding, Severity
from diskkit.formats.base import finding
from diskkit.formats.fields import Header, Layout

SIGNATURE = b"\x55\xaa"
TABLE_AT = 446
PROTECTIVE = 0xEE


@dataclass(frozen=True, kw_only=True)
class MbrEntry(Header):
    """One 16-byte MBR partition record."""

    LAYOUT = Layout("<", ("boot", "B"), ("start_chs", "3s"), ("os_type", "B"),
                    ("end_chs", "3s"), ("start_lba", "I"), ("sectors", "I"))
    boot: int
    start_chs: bytes
    os_type: int
    end_chs: bytes
    start_lba: int
    sectors: int


def is_fat_boot_sector(head: bytes) -> bool:
    """The test OpenStack uses to tell a FAT volume boot record from an MBR."""
    return len(head) > 0x15 and head[0x10] == 2 and head[0x15] == 0xF8


def entries(head: bytes) -> list[MbrEntry]:
    """The four records of the MBR in ``head`` (which holds at least 512 bytes)."""
    size = MbrEntry.LAYOUT.size
    return [MbrEntry.parse(head, TABLE_AT + i * size, what="MBR partition record")
            for i in range(4)]


def check(head: bytes) -> list[Finding]:
    """ERROR findings for an MBR OpenStack refuses; [] when ``head`` has none or it is
    acceptable."""
    if len(head) < 512 or head[510:512] != SIGNATURE or is_fat_boot_sector(head):
        return []
    recs = entries(head)
    fix = ("repair the partition table (sgdisk --zap the MBR and let it rewrite a "
           "protective one: sgdisk -e IMG; for a hybrid MBR: sgdisk -z then re-create the "
           "GPT, or convert the disk to a plain MBR)")
    for i, e in enumerate(recs):
        if e.boot not in (0x00, 0x80):
            return [finding("mbr-bad-boot-flag", Severity.ERROR,
                            f"MBR partition {i + 1} has boot indicator {e.boot:#04x} (only 0x00 "
                            "and 0x80 are valid): OpenStack refuses the image", fix,
                            [e.evidence(f"partition {i + 1} boot indicator", "boot")])]
    used = [i for i, e in enumerate(recs) if e.os_type]
    out: list[Finding] = []
    pmbr = [i for i in used if recs[i].os_type == PROTECTIVE]
    for i in pmbr:
        e = recs[i]
        if e.start_chs != b"\x00\x02\x00" or e.start_lba != 1:
            out.append(finding(
                "protective-mbr-invalid", Severity.ERROR,
                f"protective MBR record {i + 1} starts at CHS {e.start_chs.hex()} / LBA "
                f"{e.start_lba} (UEFI requires 000200 and LBA 1): OpenStack refuses the "
                "image", fix, [e.evidence(f"partition {i + 1} start CHS..start LBA",
                                          "start_chs", "start_lba")]))
            break
    if pmbr and used != [0]:
        what = ("two protective records" if len(pmbr) > 1 else
                "a hybrid MBR (a 0xEE record beside other partitions)" if len(used) > 1
                else "its 0xEE record outside slot 1")
        out.append(finding(
            "hybrid-mbr", Severity.ERROR,
            f"the protective MBR holds {what}: OpenStack refuses the image (GPT MBR defines "
            "invalid extra partitions)", fix,
            [recs[i].evidence(f"partition {i + 1}", "boot", "sectors") for i in used]))
    if not used:
        out.append(finding(
            "mbr-empty", Severity.ERROR,
            "the first sector ends in 55 AA but defines no partition: OpenStack refuses the "
            "image (GPT MBR has no partitions defined)",
            "write a partition table (or zero the 55 AA signature at byte 510 of an "
            "unpartitioned disk)", [("MBR signature", 510, head[510:512])]))
    return out
