"""VHD (qemu's "vpc"): the 512-byte footer, fixed and dynamic/differencing.

Footer (Microsoft "Virtual Hard Disk Image Format Specification", big-endian):
:data:`FOOTER` (cookie ``conectix``, data offset, creator application, original size, current
size, geometry, disk type 2 fixed / 3 dynamic / 4 differencing, checksum...); the dynamic
disk header (``cxsparse``) is :data:`DYNAMIC`.

A dynamic disk keeps a copy of the footer at offset 0; a FIXED disk has it ONLY in its last
512 bytes, so a start-of-file check calls it raw (qemu-img's probe and the OpenStack inspector
both do). Note the inspector reads ``original_size``: qemu uses ``current_size`` or CHS.

Virtual size, as qemu 7.2 block/vpc.c computes it: cylinders*heads*sectors*512, except when
the creator is one that writes the exact size (``win ``, ``qem2``, ``d2v ``, ``CTXS``,
``tap\\0``) or the geometry is the maximum 65535/16/255: then current_size rounded down to a
sector. (Later qemu releases use current_size for every creator but ``vpc `` and ``qemu``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, ascii_field, finding
from diskkit.formats.fields import Header, Layout

COOKIE = b"conectix"
TYPES = {2: "fixed", 3: "dynamic", 4: "differencing"}
FOOTER = Layout(
    ">", ("cookie", "8s"), ("features", "I"), ("format_version", "I"), ("data_offset", "Q"),
    ("timestamp", "I"), ("creator_app", "4s"), ("creator_version", "I"), ("creator_os", "4s"),
    ("original_size", "Q"), ("current_size", "Q"), ("cylinders", "H"), ("heads", "B"),
    ("sectors", "B"), ("disk_type", "I"), ("checksum", "I"), ("uuid", "16s"),
    ("saved_state", "B"))
DYNAMIC = Layout(
    ">", ("cookie", "8s"), ("data_offset", "Q"), ("table_offset", "Q"),
    ("header_version", "I"), ("max_table_entries", "I"), ("block_size", "I"),
    ("checksum", "I"), ("parent_uuid", "16s"), ("parent_timestamp", "I"), ("reserved", "I"),
    ("parent_name", "512s"))


@dataclass(frozen=True, kw_only=True)
class VhdFooter(Header):
    """The 512-byte VHD footer (the first 85 bytes are fields, the rest is reserved)."""

    LAYOUT = FOOTER
    cookie: bytes
    features: int
    format_version: int
    data_offset: int
    timestamp: int
    creator_app: bytes
    creator_version: int
    creator_os: bytes
    original_size: int
    current_size: int
    cylinders: int
    heads: int
    sectors: int
    disk_type: int
    checksum: int
    uuid: bytes
    saved_state: int


@dataclass(frozen=True, kw_only=True)
class VhdDynamicHeader(Header):
    """The dynamic disk header of a dynamic or differencing VHD."""

    LAYOUT = DYNAMIC
    cookie: bytes
    data_offset: int
    table_offset: int
    header_version: int
    max_table_entries: int
    block_size: int
    checksum: int
    parent_uuid: bytes
    parent_timestamp: int
    reserved: int
    parent_name: bytes

_CURRENT_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")
_MAX_GEOMETRY = 65535 * 16 * 255
#: qemu refuses VHDs over 2040 GiB (VHD_MAX_SECTORS).
MAX_SECTORS = 0xFF000000
MAX_BAT_BYTES = 32 << 20


_SUM_AT = FOOTER.offset("checksum")


def checksum(footer: bytes) -> int:
    """One's complement of the byte sum, with the checksum field counted as zero."""
    return ~(sum(footer[:_SUM_AT]) + sum(footer[_SUM_AT + 4:512])) & 0xFFFFFFFF


def virtual_size(creator: bytes, cyls: int, heads: int, secs: int, current: int) -> int:
    """The guest size qemu 7.2 gives this footer (see the module docstring)."""
    total = cyls * heads * secs
    if creator in _CURRENT_SIZE_CREATORS or total == _MAX_GEOMETRY:
        total = current // 512
    return total * 512


def _dynamic(src: Source, foot: VhdFooter, findings: list[Finding],
             details: dict[str, Any]) -> None:
    data_offset, disk_type = foot.data_offset, foot.disk_type
    if data_offset + 1024 > src.size:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VHD dynamic header offset {data_offset} is past the end of the file",
            "refuse the image (truncated or hostile)",
            [foot.evidence("data offset", "data_offset")]))
        return
    hdr = VhdDynamicHeader.parse(src.read(data_offset, 1024), 0, file_offset=data_offset,
                                 what="VHD dynamic header")
    table_off, entries, block_size = hdr.table_offset, hdr.max_table_entries, hdr.block_size
    if hdr.cookie != b"cxsparse":
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VHD dynamic header at {data_offset} has no 'cxsparse' cookie",
            "refuse the image", [hdr.evidence("dynamic header", "cookie")]))
        return
    details["block_size"] = block_size
    details["max_table_entries"] = entries
    if entries * 4 > MAX_BAT_BYTES or block_size < 512 or block_size & (block_size - 1):
        findings.append(finding(
            "absurd-table-size", Severity.ERROR,
            f"VHD block allocation table of {entries} entries / block size {block_size}",
            "refuse the image",
            [hdr.evidence("max table entries, block size", "max_table_entries", "block_size")]))
    elif table_off + entries * 4 > src.size:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VHD block allocation table [{table_off}, +{entries * 4}) is past the end",
            "refuse the image (truncated or hostile)",
            [hdr.evidence("table offset", "table_offset")]))
    if disk_type == 4:
        parent = hdr.parent_name.decode("utf-16-be", errors="replace").split("\0", 1)[0]
        details["parent"] = parent
        findings.append(finding(
            "vhd-differencing", Severity.ERROR,
            f"VHD is a differencing disk whose parent is {parent!r}: qemu would open it",
            "merge it into its parent on a trusted host, then upload the result",
            [foot.evidence("disk type 4 (differencing)", "disk_type")], parent=parent))


def probe(src: Source) -> Match | None:
    """A VHD with its footer at the start (dynamic) or only at the end (fixed), or None."""
    if src.head[:8] == COOKIE:
        raw, where = src.head[:512], 0
    elif src.tail[:8] == COOKIE and len(src.tail) == 512:
        raw, where = src.tail, src.tail_offset
    else:
        return None
    foot = VhdFooter.parse(raw, 0, file_offset=where, what="VHD footer")
    disk_type = foot.disk_type
    if where and disk_type != 2:
        return None  # qemu only accepts an end-only footer for a fixed disk
    findings: list[Finding] = []
    size = virtual_size(foot.creator_app, foot.cylinders, foot.heads, foot.sectors,
                        foot.current_size)
    details: dict[str, Any] = {
        "subformat": TYPES.get(disk_type, f"type {disk_type}"),
        "creator_app": ascii_field(foot.creator_app), "current_size": foot.current_size,
        "original_size": foot.original_size,
        "geometry": [foot.cylinders, foot.heads, foot.sectors], "footer_offset": where}
    if foot.checksum != checksum(raw):
        findings.append(finding("vhd-bad-checksum", Severity.WARNING,
                                "VHD footer checksum does not match its content",
                                "re-export the image", [foot.evidence("checksum", "checksum")]))
    if size // 512 > MAX_SECTORS:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VHD size {size} is over the 2040 GiB the format allows", "refuse the image",
            [foot.evidence("current size", "current_size")]))
    if disk_type in (3, 4):
        _dynamic(src, foot, findings, details)
    elif disk_type != 2:
        findings.append(finding("header-field-out-of-bounds", Severity.ERROR,
                                f"VHD disk type {disk_type} is not 2, 3 or 4",
                                "refuse the image", [foot.evidence("disk type", "disk_type")]))
    return Match("vhd", size, details, tuple(findings), offset=where)
