"""VHDX: file identifier, region table, metadata table, virtual disk size.

Layout ([MS-VHDX] 2.2): ``vhdxfile`` at 0; region table at 192 KiB (signature ``regi``, entry
count u32 @8, at most 2047 entries of 32 bytes: GUID, file offset u64, length u32, required
u32). The metadata region (GUID 8B7CA206-...) starts with a table (``metadata``, entry count
u16 @10, at most 2047 entries of 32 bytes: item GUID, offset u32 from the region start,
length u32, flags). The Virtual Disk Size item (2FA54224-...) is a u64; File Parameters
(CAA16737-...) hold the block size and flags, bit 1 = HasParent; a differencing disk also has
a Parent Locator item (A8D35F2D-...) naming its parent file. All little-endian; GUIDs in
Microsoft's mixed-endian byte order.
"""

from __future__ import annotations

import uuid

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, finding, one, unpack

SIGNATURE = b"vhdxfile"
REGION_TABLE = 192 * 1024
MAX_ENTRIES = 2047
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
LOGICAL_SECTOR_SIZE = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")


def _guid(data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes_le=bytes(data[:16]))


def _oob(what: str, offset: int, data: bytes | None) -> Finding:
    return finding("header-field-out-of-bounds", Severity.ERROR,
                   f"VHDX {what} is outside the file", "refuse the image (truncated or hostile)",
                   [(what, offset, data)])


def _regions(src: Source) -> tuple[int, dict[uuid.UUID, tuple[int, int]]]:
    """(entry count, {region GUID: (file offset, length)}); no entries are read when the
    count is over the limit or the signature is wrong."""
    head = src.read(REGION_TABLE, 16)
    sig, _sum, count = unpack("<4sII", head, 0, "VHDX region table")
    if sig != b"regi" or count > MAX_ENTRIES:
        return count, {}
    table = src.read(REGION_TABLE + 16, count * 32)
    out = {}
    for i in range(count):
        guid = _guid(unpack("16s", table, i * 32, "VHDX region entry")[0])
        out[guid] = unpack("<QI", table, i * 32 + 16, "VHDX region entry")
    return count, out


def probe(src: Source) -> Match | None:
    """A VHDX file, or None."""
    if src.head[:8] != SIGNATURE:
        return None
    findings: list[Finding] = []
    details: dict = {"creator": src.head[8:520].decode("utf-16-le", "replace").split("\0")[0]}
    count, regions = _regions(src)
    if count > MAX_ENTRIES:
        findings.append(finding("absurd-table-size", Severity.ERROR,
                                f"VHDX region table claims {count} entries (the limit is "
                                f"{MAX_ENTRIES})", "refuse the image",
                                [("region table entry count", REGION_TABLE + 8, None)]))
        return Match("vhdx", None, details, tuple(findings))
    if METADATA_REGION not in regions:
        findings.append(_oob("metadata region (missing from the region table)", REGION_TABLE,
                             src.read(REGION_TABLE, 4)))
        return Match("vhdx", None, details, tuple(findings))
    meta_off, meta_len = regions[METADATA_REGION]
    if meta_off + 32 > src.size or meta_off + meta_len > src.size:
        findings.append(_oob("metadata region", REGION_TABLE, None))
        return Match("vhdx", None, details, tuple(findings))
    table_head = src.read(meta_off, 32)
    sig, count = unpack("<8s2xH", table_head, 0, "VHDX metadata table")
    if sig != b"metadata" or count > MAX_ENTRIES:
        findings.append(finding("absurd-table-size", Severity.ERROR,
                                f"VHDX metadata table is invalid ({sig!r}, {count} entries)",
                                "refuse the image", [("metadata table", meta_off, sig)]))
        return Match("vhdx", None, details, tuple(findings))
    entries = src.read(meta_off + 32, count * 32)
    items: dict[uuid.UUID, tuple[int, int]] = {}
    for i in range(count):
        guid = _guid(unpack("16s", entries, i * 32, "VHDX metadata entry")[0])
        items[guid] = unpack("<II", entries, i * 32 + 16, "VHDX metadata entry")

    def item(guid: uuid.UUID, fmt: str) -> int | None:
        if guid not in items:
            return None
        off, _length = items[guid]
        if off + 8 > meta_len or meta_off + off + 8 > src.size:
            findings.append(_oob(f"metadata item {guid}", meta_off, None))
            return None
        return one(fmt, src.read(meta_off + off, 8), 0, f"VHDX metadata item {guid}")

    size = item(VIRTUAL_DISK_SIZE, "<Q")
    block = item(FILE_PARAMETERS, "<I")
    details["block_size"] = block
    details["logical_sector_size"] = item(LOGICAL_SECTOR_SIZE, "<I")
    if FILE_PARAMETERS in items:
        off = items[FILE_PARAMETERS][0]
        flags = one("<I", src.read(meta_off + off + 4, 4), 0, "VHDX file parameters") \
            if meta_off + off + 8 <= src.size else 0
        details["has_parent"] = bool(flags & 2)
    if details.get("has_parent") or PARENT_LOCATOR in items:
        findings.append(finding(
            "vhdx-parent", Severity.ERROR,
            "VHDX is a differencing disk: qemu would open the parent file it names",
            "merge it into its parent on a trusted host, then upload the result",
            [("file parameters HasParent / parent locator", meta_off, None)]))
    if size is None:
        findings.append(_oob("virtual disk size item", meta_off, None))
    return Match("vhdx", size, details, tuple(findings))
