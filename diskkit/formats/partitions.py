"""Partition table signatures, noted (not formats): an MBR's ``55 AA`` at 510 with plausible
entries, a GPT header ``EFI PART`` at LBA 1 for 512- or 4096-byte sectors (UEFI 2.10 5.3.2:
header size u32 @12, CRC32 @16 computed with the field zeroed). The layout engineer's parsers
read the tables themselves; detection only says which is there, so a raw image with a GPT is
"raw, with a GPT" and a hybrid ISO's MBR/GPT is expected, not a polyglot.
"""

from __future__ import annotations

import zlib
from typing import Any

from diskkit.formats.base import Source


def _gpt(head: bytes, at: int) -> dict[str, Any] | None:
    hdr = head[at:at + 512]
    if hdr[:8] != b"EFI PART" or len(hdr) < 92:
        return None
    size = int.from_bytes(hdr[12:16], "little")
    crc_ok = None
    if 92 <= size <= len(hdr):
        body = hdr[:16] + b"\0\0\0\0" + hdr[20:size]
        crc_ok = zlib.crc32(body) == int.from_bytes(hdr[16:20], "little")
    return {"type": "gpt", "sector_size": at, "header_crc_ok": crc_ok}


def _mbr(head: bytes) -> dict[str, Any] | None:
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return None
    entries = [head[446 + 16 * i: 462 + 16 * i] for i in range(4)]
    if any(e[0] not in (0, 0x80) for e in entries):
        return None  # a FAT/NTFS boot sector or boot code, not a partition table
    used = [e for e in entries if e[4] != 0]
    if not used:
        return None
    return {"type": "mbr", "partitions": len(used),
            "protective": any(e[4] == 0xEE for e in used)}


def note(src: Source) -> dict[str, Any] | None:
    """``{"type": "gpt"|"mbr", ...}`` for the partition table at the start, or None."""
    for at in (512, 4096):
        gpt = _gpt(src.head, at)
        if gpt:
            return gpt
    return _mbr(src.head)
