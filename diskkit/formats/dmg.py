"""Apple disk images (UDIF ``.dmg``): qemu's "dmg" driver (read-only).

The UDIF trailer ``koly`` (:class:`KolyTrailer`, big-endian, 512 bytes) ends the file; qemu
(block/dmg.c) reads the data fork offset, the resource fork and the XML property list from it,
and takes the virtual size from ``sector_count`` (* 512). qemu's own probe goes by the file
name only (``.dmg``); we go by the trailer.
"""

from __future__ import annotations

from dataclasses import dataclass

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, finding
from diskkit.formats.fields import Header, Layout
from diskkit.formats.legacy import refused

MAGIC = b"koly"


@dataclass(frozen=True, kw_only=True)
class KolyTrailer(Header):
    """The UDIF trailer (Apple "UDIFResourceFile")."""

    LAYOUT = Layout(
        ">", ("signature", "4s"), ("version", "I"), ("header_size", "I"), ("flags", "I"),
        ("running_data_fork_offset", "Q"), ("data_fork_offset", "Q"),
        ("data_fork_length", "Q"), ("rsrc_fork_offset", "Q"), ("rsrc_fork_length", "Q"),
        ("segment_number", "I"), ("segment_count", "I"), ("segment_id", "16s"),
        ("data_checksum_type", "I"), ("data_checksum_size", "I"), ("data_checksum", "128s"),
        ("xml_offset", "Q"), ("xml_length", "Q"), ("reserved1", "120s"),
        ("checksum_type", "I"), ("checksum_size", "I"), ("checksum", "128s"),
        ("image_variant", "I"), ("sector_count", "Q"), ("reserved2", "12s"))
    signature: bytes
    version: int
    header_size: int
    flags: int
    running_data_fork_offset: int
    data_fork_offset: int
    data_fork_length: int
    rsrc_fork_offset: int
    rsrc_fork_length: int
    segment_number: int
    segment_count: int
    segment_id: bytes
    data_checksum_type: int
    data_checksum_size: int
    data_checksum: bytes
    xml_offset: int
    xml_length: int
    reserved1: bytes
    checksum_type: int
    checksum_size: int
    checksum: bytes
    image_variant: int
    sector_count: int
    reserved2: bytes


def probe(src: Source) -> Match | None:
    """A UDIF image whose trailer is the last 512 bytes, or None."""
    if src.tail[:4] != MAGIC or len(src.tail) != 512:
        return None
    koly = KolyTrailer.parse(src.tail, 0, file_offset=src.tail_offset, what="UDIF trailer")
    findings: list[Finding] = [refused(
        "dmg-image", "dmg", "an Apple disk image (UDIF)",
        "qemu opens it read-only and nothing in OpenStack accepts it",
        [koly.evidence("koly trailer", "signature")])]
    end = koly.file_offset
    if (koly.data_fork_offset > end or koly.xml_offset + koly.xml_length > end
            or koly.rsrc_fork_offset + koly.rsrc_fork_length > end
            or (koly.xml_length == 0 and koly.rsrc_fork_length == 0)):
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            "UDIF trailer points past itself, or names neither a resource fork nor a "
            "property list (qemu refuses it)", "refuse the image (truncated or hostile)",
            [koly.evidence("fork / plist offsets", "data_fork_offset", "rsrc_fork_length"),
             koly.evidence("plist offset, length", "xml_offset", "xml_length")]))
    details = {"version": koly.version, "xml_length": koly.xml_length, "qemu_format": "dmg"}
    return Match("dmg", koly.sector_count * 512, details, tuple(findings),
                 offset=koly.file_offset)
