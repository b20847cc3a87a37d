"""VDI (VirtualBox): the pre-header and header version 1.1.

Layout (VirtualBox VDICore.h; qemu block/vdi.c), little-endian: text @0 (64 bytes),
signature u32 @0x40 = 0xBEDA107F, version u32 @0x44, header size @0x48, image type u32 @0x4C
(1 dynamic, 2 static, 3 undo, 4 differencing), offset of the block map u32 @0x154, offset of
the data u32 @0x158, disk size u64 @0x170, block size u32 @0x178, blocks in image u32 @0x180,
parent UUID @0x1B8. qemu rounds an odd disk size up to a whole sector.
"""

from __future__ import annotations

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, ascii_field, finding, unpack

SIGNATURE = 0xBEDA107F
_SIGNATURE_BYTES = SIGNATURE.to_bytes(4, "little")
TYPES = {1: "dynamic", 2: "static", 3: "undo", 4: "differencing"}
#: Block maps over this many bytes are absurd (qemu's VDI_BLOCKS_IN_IMAGE_MAX is 0x3fffffff).
MAX_BMAP_BYTES = 32 << 20


def probe(src: Source) -> Match | None:
    """A VDI image, or None."""
    if src.head[0x40:0x44] != _SIGNATURE_BYTES:
        return None
    (version, _hsize, image_type, _flags) = unpack("<IIII", src.head, 0x44, "VDI header")
    bmap_off, data_off = unpack("<II", src.head, 0x154, "VDI header")
    disk_size, block_size, _extra, blocks, allocated = unpack("<QIIII", src.head, 0x170,
                                                              "VDI header")
    parent = src.head[0x1B8:0x1C8]
    findings: list[Finding] = []
    details = {"version": f"{version >> 16}.{version & 0xFFFF}", "text": ascii_field(
        src.head[:64]), "image_type": TYPES.get(image_type, str(image_type)),
        "block_size": block_size, "blocks_in_image": blocks, "blocks_allocated": allocated}
    if image_type == 4 or parent.strip(b"\0"):
        findings.append(finding(
            "vdi-differencing", Severity.ERROR,
            "VDI is a differencing image that depends on a parent image",
            "merge it into its parent in VirtualBox (VBoxManage clonemedium), then upload",
            [("image type / parent UUID", 0x4C, src.head[0x4C:0x50])]))
    elif image_type not in (1, 2):
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VDI image type {image_type} is not one qemu reads (1 dynamic, 2 static)",
            "refuse the image", [("image type", 0x4C, src.head[0x4C:0x50])]))
    if blocks * 4 > MAX_BMAP_BYTES:
        findings.append(finding(
            "absurd-table-size", Severity.ERROR,
            f"VDI block map of {blocks} entries would need {blocks * 4} bytes",
            "refuse the image", [("blocks in image", 0x180, src.head[0x180:0x184])]))
    elif bmap_off + blocks * 4 > src.size or data_off > src.size:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VDI block map [{bmap_off}, +{blocks * 4}) or data offset {data_off} is past "
            "the end of the file", "refuse the image (truncated or hostile)",
            [("block map / data offsets", 0x154, src.head[0x154:0x15C])]))
    size = -(-disk_size // 512) * 512  # qemu: ROUND_UP(disk_size, 512)
    return Match("vdi", size, details, tuple(findings), offset=0x40)
