"""VHDX: file identifier, region table, metadata table, virtual disk size.

Layout ([MS-VHDX] 2.2): the file identifier (:class:`VhdxIdentifier`, ``vhdxfile``) at 0;
two headers (:class:`VhdxHeader`, ``head``) at 64 KiB and 128 KiB, each checksummed with
CRC-32C (:func:`crc32c`) over its 4 KiB;
the region table (:class:`RegionTableHeader`, signature ``regi``, then at most 2047
:class:`RegionEntry` of 32 bytes: GUID, file offset, length, required) at 192 KiB. The
metadata region (GUID 8B7CA206-...) starts with a table (:class:`MetadataTableHeader`,
``metadata``, then at most 2047 :class:`MetadataEntry` of 32 bytes: item GUID, offset from
the region start, length, flags). The Virtual Disk Size item (2FA54224-...) is a u64;
File Parameters (CAA16737-...) hold the block size and flags, bit 1 = HasParent; a
differencing disk also has a Parent Locator item (A8D35F2D-...) naming its parent file.
All little-endian; GUIDs in
Microsoft's mixed-endian byte order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, finding, one
from diskkit.formats.fields import Header, Layout

SIGNATURE = b"vhdxfile"
REGION_TABLE = 192 * 1024
MAX_ENTRIES = 2047
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
LOGICAL_SECTOR_SIZE = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
PAGE83_DATA = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
PHYSICAL_SECTOR_SIZE = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556")
#: The two headers ([MS-VHDX] 2.2.2): 4 KiB each (the checksum covers all 4 KiB).
HEADER_OFFSETS = (64 * 1024, 128 * 1024)
HEADER_SIZE = 4096
#: The region table is 64 KiB (its checksum covers all of it).
REGION_TABLE_SIZE = 64 * 1024


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected, as [MS-VHDX] checksums use); table-driven."""
    crc, table = 0xFFFFFFFF, _CRC32C
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def checksum_ok(block: bytes, at: int = 4) -> bool:
    """True when the u32 at ``block[at:at+4]`` is the CRC-32C of ``block`` with that field
    zeroed (VHDX headers and region tables)."""
    if len(block) < at + 4:
        return False
    stored = int.from_bytes(block[at:at + 4], "little")
    return crc32c(block[:at] + bytes(4) + block[at + 4:]) == stored


@dataclass(frozen=True, kw_only=True)
class VhdxIdentifier(Header):
    """The file type identifier at offset 0."""

    LAYOUT = Layout("<", ("signature", "8s"), ("creator", "512s"))
    signature: bytes
    creator: bytes


@dataclass(frozen=True, kw_only=True)
class VhdxHeader(Header):
    """One of the two headers (at 64 KiB and 128 KiB): the current one is the valid one
    with the higher sequence number; a non-zero ``log_guid`` means a log to replay."""

    LAYOUT = Layout("<", ("signature", "4s"), ("checksum", "I"), ("sequence_number", "Q"),
                    ("file_write_guid", "16s"), ("data_write_guid", "16s"),
                    ("log_guid", "16s"), ("log_version", "H"), ("version", "H"),
                    ("log_length", "I"), ("log_offset", "Q"))
    signature: bytes
    checksum: int
    sequence_number: int
    file_write_guid: bytes
    data_write_guid: bytes
    log_guid: bytes
    log_version: int
    version: int
    log_length: int
    log_offset: int


@dataclass(frozen=True, kw_only=True)
class RegionTableHeader(Header):
    """The region table header (at 192 KiB, and its copy at 256 KiB)."""

    LAYOUT = Layout("<", ("signature", "4s"), ("checksum", "I"), ("entry_count", "I"),
                    ("reserved", "I"))
    signature: bytes
    checksum: int
    entry_count: int
    reserved: int


@dataclass(frozen=True, kw_only=True)
class RegionEntry(Header):
    """One region table entry: where a region (BAT, metadata) lies in the file."""

    LAYOUT = Layout("<", ("guid", "16s"), ("region_offset", "Q"), ("length", "I"),
                    ("required", "I"))
    guid: bytes
    region_offset: int
    length: int
    required: int


@dataclass(frozen=True, kw_only=True)
class MetadataTableHeader(Header):
    """The metadata table header at the start of the metadata region."""

    LAYOUT = Layout("<", ("signature", "8s"), ("reserved", "H"), ("entry_count", "H"),
                    ("reserved2", "20s"))
    signature: bytes
    reserved: int
    entry_count: int
    reserved2: bytes


@dataclass(frozen=True, kw_only=True)
class MetadataEntry(Header):
    """One metadata table entry: an item's offset from the region start and its length."""

    LAYOUT = Layout("<", ("item_id", "16s"), ("item_offset", "I"), ("length", "I"),
                    ("flags", "I"), ("reserved", "I"))
    item_id: bytes
    item_offset: int
    length: int
    flags: int
    reserved: int


@dataclass(frozen=True, kw_only=True)
class FileParameters(Header):
    """The File Parameters metadata item: block size, and flags (bit 1 = HasParent)."""

    LAYOUT = Layout("<", ("block_size", "I"), ("flags", "I"))
    block_size: int
    flags: int

    @property
    def has_parent(self) -> bool:
        """A differencing disk (HasParent)."""
        return bool(self.flags & 2)


_ENTRY = RegionEntry.LAYOUT.size


def _guid(data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes_le=bytes(data[:16]))


def _oob(what: str, offset: int, data: bytes | None) -> Finding:
    return finding("header-field-out-of-bounds", Severity.ERROR,
                   f"VHDX {what} is outside the file", "refuse the image (truncated or hostile)",
                   [(what, offset, data)])


def _regions(src: Source) -> tuple[RegionTableHeader, dict[uuid.UUID, RegionEntry]]:
    """The region table header and {region GUID: entry}; no entries are read when the
    count is over the limit or the signature is wrong."""
    head = RegionTableHeader.parse(src.read(REGION_TABLE, RegionTableHeader.LAYOUT.size), 0,
                                   file_offset=REGION_TABLE, what="VHDX region table")
    count = head.entry_count
    if head.signature != b"regi" or count > MAX_ENTRIES:
        return head, {}
    start = REGION_TABLE + RegionTableHeader.LAYOUT.size
    table = src.read(start, count * _ENTRY)
    out = {}
    for i in range(count):
        entry = RegionEntry.parse(table, i * _ENTRY, file_offset=start + i * _ENTRY,
                                  what="VHDX region entry")
        out[_guid(entry.guid)] = entry
    return head, out


def probe(src: Source) -> Match | None:
    """A VHDX file, or None."""
    if src.head[:8] != SIGNATURE:
        return None
    ident = VhdxIdentifier.parse(src.head, 0, what="VHDX file identifier")
    findings: list[Finding] = []
    details: dict[str, Any] = {
        "creator": ident.creator.decode("utf-16-le", "replace").split("\0")[0]}
    rhead, regions = _regions(src)
    if rhead.entry_count > MAX_ENTRIES:
        findings.append(finding("absurd-table-size", Severity.ERROR,
                                f"VHDX region table claims {rhead.entry_count} entries (the "
                                f"limit is {MAX_ENTRIES})", "refuse the image",
                                [rhead.evidence("region table entry count", "entry_count")]))
        return Match("vhdx", None, details, tuple(findings))
    if METADATA_REGION not in regions:
        findings.append(_oob("metadata region (missing from the region table)", REGION_TABLE,
                             rhead.bytes_of("signature")))
        return Match("vhdx", None, details, tuple(findings))
    region = regions[METADATA_REGION]
    meta_off, meta_len = region.region_offset, region.length
    hsize = MetadataTableHeader.LAYOUT.size
    if meta_off + hsize > src.size or meta_off + meta_len > src.size:
        findings.append(_oob("metadata region", region.file_offset, region.raw))
        return Match("vhdx", None, details, tuple(findings))
    mhead = MetadataTableHeader.parse(src.read(meta_off, hsize), 0, file_offset=meta_off,
                                      what="VHDX metadata table")
    count = mhead.entry_count
    if mhead.signature != b"metadata" or count > MAX_ENTRIES:
        findings.append(finding("absurd-table-size", Severity.ERROR,
                                f"VHDX metadata table is invalid ({mhead.signature!r}, {count} "
                                "entries)", "refuse the image",
                                [mhead.evidence("metadata table", "signature", "entry_count")]))
        return Match("vhdx", None, details, tuple(findings))
    esize = MetadataEntry.LAYOUT.size
    entries = src.read(meta_off + hsize, count * esize)
    items: dict[uuid.UUID, MetadataEntry] = {}
    for i in range(count):
        entry = MetadataEntry.parse(entries, i * esize, file_offset=meta_off + hsize + i * esize,
                                    what="VHDX metadata entry")
        items[_guid(entry.item_id)] = entry

    def item(guid: uuid.UUID, fmt: str) -> int | None:
        if guid not in items:
            return None
        entry = items[guid]
        off = entry.item_offset
        if off + 8 > meta_len or meta_off + off + 8 > src.size:
            findings.append(_oob(f"metadata item {guid}", entry.offset("item_offset"),
                                 entry.bytes_of("item_offset")))
            return None
        return int(one(fmt, src.read(meta_off + off, 8), 0, f"VHDX metadata item {guid}"))

    size = item(VIRTUAL_DISK_SIZE, "<Q")
    block = item(FILE_PARAMETERS, "<I")
    details["block_size"] = block
    details["logical_sector_size"] = item(LOGICAL_SECTOR_SIZE, "<I")
    params = None
    if FILE_PARAMETERS in items:
        at = meta_off + items[FILE_PARAMETERS].item_offset
        if at + FileParameters.LAYOUT.size <= src.size:
            params = FileParameters.parse(src.read(at, FileParameters.LAYOUT.size), 0,
                                          file_offset=at, what="VHDX file parameters")
            details["has_parent"] = params.has_parent
        else:
            details["has_parent"] = False
    if details.get("has_parent") or PARENT_LOCATOR in items:
        ev = params.evidence("file parameters flags (HasParent)", "flags") \
            if params is not None and params.has_parent else \
            ("parent locator item", meta_off, None)
        findings.append(finding(
            "vhdx-parent", Severity.ERROR,
            "VHDX is a differencing disk: qemu would open the parent file it names",
            "merge it into its parent on a trusted host, then upload the result", [ev]))
    if size is None:
        findings.append(_oob("virtual disk size item", meta_off, None))
    return Match("vhdx", size, details, tuple(findings))
