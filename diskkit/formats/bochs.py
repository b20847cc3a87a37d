"""Bochs growing ("redolog") images: qemu's "bochs" driver (read-only).

Header (qemu block/bochs.c ``bochs_header``, little-endian, 512 bytes): :data:`LAYOUT` for
version 2 (0x00020000), :data:`LAYOUT_V1` for version 1 (0x00010000, no ``reserved`` word,
so the disk size sits 4 bytes earlier). qemu's probe wants the magic, type ``Redolog`` and
subtype ``Growing`` (NUL-terminated); virtual size = disk size rounded down to a sector.
"""

from __future__ import annotations

from dataclasses import dataclass

from diskkit.formats.base import Match, Source, ascii_field
from diskkit.formats.fields import Header, Layout
from diskkit.formats.legacy import refused

MAGIC = b"Bochs Virtual HD Image"
VERSION_2 = 0x00020000
VERSION_1 = 0x00010000


@dataclass(frozen=True, kw_only=True)
class BochsHeader(Header):
    """A version 2 Bochs redolog header."""

    LAYOUT = Layout(
        "<", ("magic", "32s"), ("type", "16s"), ("subtype", "16s"), ("version", "I"),
        ("header_size", "I"), ("catalog", "I"), ("bitmap", "I"), ("extent", "I"),
        ("reserved", "I"), ("disk", "Q"))
    magic: bytes
    type: bytes
    subtype: bytes
    version: int
    header_size: int
    catalog: int
    bitmap: int
    extent: int
    reserved: int
    disk: int


@dataclass(frozen=True, kw_only=True)
class BochsHeaderV1(Header):
    """A version 1 Bochs redolog header."""

    LAYOUT = Layout(
        "<", ("magic", "32s"), ("type", "16s"), ("subtype", "16s"), ("version", "I"),
        ("header_size", "I"), ("catalog", "I"), ("bitmap", "I"), ("extent", "I"),
        ("disk", "Q"))
    magic: bytes
    type: bytes
    subtype: bytes
    version: int
    header_size: int
    catalog: int
    bitmap: int
    extent: int
    disk: int


def _cstr(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def probe(src: Source) -> Match | None:
    """A Bochs growing image, or None."""
    if not src.head.startswith(MAGIC) or len(src.head) < 512:
        return None
    hdr: BochsHeader | BochsHeaderV1 = BochsHeader.parse(src.head, 0, what="Bochs header")
    if (_cstr(hdr.magic) != MAGIC or _cstr(hdr.type) != b"Redolog"
            or _cstr(hdr.subtype) != b"Growing" or hdr.version not in (VERSION_1, VERSION_2)):
        return None
    if hdr.version == VERSION_1:
        hdr = BochsHeaderV1.parse(src.head, 0, what="Bochs v1 header")
    details = {"version": hdr.version >> 16, "subtype": ascii_field(hdr.subtype),
               "extent_size": hdr.extent, "catalog_entries": hdr.catalog,
               "qemu_format": "bochs"}
    finding = refused("bochs-image", "bochs", "a Bochs growing image",
                      "qemu opens it read-only and nothing in OpenStack accepts it",
                      [hdr.evidence("magic, type, subtype, version", "magic", "version")])
    return Match("bochs", hdr.disk // 512 * 512, details, (finding,))
