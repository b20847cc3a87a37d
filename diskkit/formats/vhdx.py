"""VHDX: file identifier, region table, metadata table, virtual disk size.

Layout ([MS-VHDX] 2.2): the file identifier (:class:`VhdxIdentifier`, ``vhdxfile``) at 0;
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


@dataclass(frozen=True, kw_only=True)
class VhdxIdentifier(Header):
    """The file type identifier at offset 0."""

    LAYOUT = Layout("<", ("signature", "8s"), ("creator", "512s"))
    signature: bytes
    creator: bytes


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
