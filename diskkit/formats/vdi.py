"""VDI (VirtualBox): the pre-header and header version 1.1.

Layout (VirtualBox VDICore.h; qemu block/vdi.c ``VdiHeader``), little-endian: :data:`LAYOUT`
(text, signature 0xBEDA107F, version, header size, image type 1 dynamic / 2 static / 3 undo /
4 differencing, offsets of the block map and the data, legacy geometry, disk size, block
size, blocks in image and allocated, the image/snapshot/link/parent UUIDs).
qemu rounds an odd disk size up to a whole sector.
"""

from __future__ import annotations

from dataclasses import dataclass

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, ascii_field, finding
from diskkit.formats.fields import Header, Layout

SIGNATURE = 0xBEDA107F
_SIGNATURE_BYTES = SIGNATURE.to_bytes(4, "little")
TYPES = {1: "dynamic", 2: "static", 3: "undo", 4: "differencing"}
#: Block maps over this many bytes are absurd (qemu's VDI_BLOCKS_IN_IMAGE_MAX is 0x3fffffff).
MAX_BMAP_BYTES = 32 << 20

LAYOUT = Layout(
    "<", ("text", "64s"), ("signature", "I"), ("version", "I"), ("header_size", "I"),
    ("image_type", "I"), ("image_flags", "I"), ("description", "256s"),
    ("offset_bmap", "I"), ("offset_data", "I"), ("cylinders", "I"), ("heads", "I"),
    ("sectors", "I"), ("sector_size", "I"), ("unused1", "I"), ("disk_size", "Q"),
    ("block_size", "I"), ("block_extra", "I"), ("blocks_in_image", "I"),
    ("blocks_allocated", "I"), ("uuid_image", "16s"), ("uuid_last_snap", "16s"),
    ("uuid_link", "16s"), ("uuid_parent", "16s"))


#: Offset of the signature (the first two bytes detection keys on).
_SIG_AT = LAYOUT.offset("signature")


@dataclass(frozen=True, kw_only=True)
class VdiHeader(Header):
    """The VDI pre-header and header 1.1, as stored."""

    LAYOUT = LAYOUT
    text: bytes
    signature: int
    version: int
    header_size: int
    image_type: int
    image_flags: int
    description: bytes
    offset_bmap: int
    offset_data: int
    cylinders: int
    heads: int
    sectors: int
    sector_size: int
    unused1: int
    disk_size: int
    block_size: int
    block_extra: int
    blocks_in_image: int
    blocks_allocated: int
    uuid_image: bytes
    uuid_last_snap: bytes
    uuid_link: bytes
    uuid_parent: bytes


def probe(src: Source) -> Match | None:
    """A VDI image, or None."""
    if src.head[_SIG_AT:_SIG_AT + 4] != _SIGNATURE_BYTES:
        return None
    hdr = VdiHeader.parse(src.head, 0, what="VDI header")
    version, image_type, blocks = hdr.version, hdr.image_type, hdr.blocks_in_image
    bmap_off, data_off = hdr.offset_bmap, hdr.offset_data
    findings: list[Finding] = []
    details = {"version": f"{version >> 16}.{version & 0xFFFF}", "text": ascii_field(hdr.text),
               "image_type": TYPES.get(image_type, str(image_type)),
               "block_size": hdr.block_size, "blocks_in_image": blocks,
               "blocks_allocated": hdr.blocks_allocated}
    if image_type == 4 or hdr.uuid_parent.strip(b"\0"):
        findings.append(finding(
            "vdi-differencing", Severity.ERROR,
            "VDI is a differencing image that depends on a parent image",
            "merge it into its parent in VirtualBox (VBoxManage clonemedium), then upload",
            [hdr.evidence("image type / parent UUID", "image_type")]))
    elif image_type not in (1, 2):
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VDI image type {image_type} is not one qemu reads (1 dynamic, 2 static)",
            "refuse the image", [hdr.evidence("image type", "image_type")]))
    if blocks * 4 > MAX_BMAP_BYTES:
        findings.append(finding(
            "absurd-table-size", Severity.ERROR,
            f"VDI block map of {blocks} entries would need {blocks * 4} bytes",
            "refuse the image", [hdr.evidence("blocks in image", "blocks_in_image")]))
    elif bmap_off + blocks * 4 > src.size or data_off > src.size:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VDI block map [{bmap_off}, +{blocks * 4}) or data offset {data_off} is past "
            "the end of the file", "refuse the image (truncated or hostile)",
            [hdr.evidence("block map / data offsets", "offset_bmap", "offset_data")]))
    size = -(-hdr.disk_size // 512) * 512  # qemu: ROUND_UP(disk_size, 512)
    return Match("vdi", size, details, tuple(findings), offset=_SIG_AT)
