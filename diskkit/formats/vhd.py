"""VHD (qemu's "vpc"): the 512-byte footer, fixed and dynamic/differencing.

Footer (Microsoft "Virtual Hard Disk Image Format Specification", big-endian): cookie
``conectix`` @0, data offset u64 @16, creator application @28, original size u64 @40,
current size u64 @48, geometry (cylinders u16 @56, heads u8 @58, sectors u8 @59), disk type
u32 @60 (2 fixed, 3 dynamic, 4 differencing), checksum u32 @64.

A dynamic disk keeps a copy of the footer at offset 0; a FIXED disk has it ONLY in its last
512 bytes, so a start-of-file check calls it raw (qemu-img's probe and the OpenStack inspector
both do). Note the inspector reads the size at @40 (original size): qemu uses @48 or CHS.

Virtual size, as qemu 7.2 block/vpc.c computes it: cylinders*heads*sectors*512, except when
the creator is one that writes the exact size (``win ``, ``qem2``, ``d2v ``, ``CTXS``,
``tap\\0``) or the geometry is the maximum 65535/16/255: then current_size rounded down to a
sector. (Later qemu releases use current_size for every creator but ``vpc `` and ``qemu``.)
"""

from __future__ import annotations

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, ascii_field, finding, unpack

COOKIE = b"conectix"
TYPES = {2: "fixed", 3: "dynamic", 4: "differencing"}
_FOOTER = ">8sIIQI4sI4sQQHBBII16sB"
_CURRENT_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")
_MAX_GEOMETRY = 65535 * 16 * 255
#: qemu refuses VHDs over 2040 GiB (VHD_MAX_SECTORS).
MAX_SECTORS = 0xFF000000
MAX_BAT_BYTES = 32 << 20


def checksum(footer: bytes) -> int:
    """One's complement of the byte sum, with the checksum field (@64) counted as zero."""
    return ~(sum(footer[:64]) + sum(footer[68:512])) & 0xFFFFFFFF


def virtual_size(creator: bytes, cyls: int, heads: int, secs: int, current: int) -> int:
    """The guest size qemu 7.2 gives this footer (see the module docstring)."""
    total = cyls * heads * secs
    if creator in _CURRENT_SIZE_CREATORS or total == _MAX_GEOMETRY:
        total = current // 512
    return total * 512


def _dynamic(src: Source, data_offset: int, disk_type: int, findings: list[Finding],
             details: dict) -> None:
    if data_offset + 1024 > src.size:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VHD dynamic header offset {data_offset} is past the end of the file",
            "refuse the image (truncated or hostile)", [("data offset", 16, None)]))
        return
    hdr = src.read(data_offset, 1024)
    (cookie, _data, table_off, _ver, entries, block_size) = unpack(
        ">8sQQIII", hdr, 0, "VHD dynamic header")
    if cookie != b"cxsparse":
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VHD dynamic header at {data_offset} has no 'cxsparse' cookie",
            "refuse the image", [("dynamic header", data_offset, hdr[:8])]))
        return
    details["block_size"] = block_size
    details["max_table_entries"] = entries
    if entries * 4 > MAX_BAT_BYTES or block_size < 512 or block_size & (block_size - 1):
        findings.append(finding(
            "absurd-table-size", Severity.ERROR,
            f"VHD block allocation table of {entries} entries / block size {block_size}",
            "refuse the image", [("max table entries, block size", data_offset + 28,
                                  hdr[28:36])]))
    elif table_off + entries * 4 > src.size:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VHD block allocation table [{table_off}, +{entries * 4}) is past the end",
            "refuse the image (truncated or hostile)", [("table offset", data_offset + 16,
                                                         hdr[16:24])]))
    if disk_type == 4:
        parent = hdr[64:576].decode("utf-16-be", errors="replace").split("\0", 1)[0]
        details["parent"] = parent
        findings.append(finding(
            "vhd-differencing", Severity.ERROR,
            f"VHD is a differencing disk whose parent is {parent!r}: qemu would open it",
            "merge it into its parent on a trusted host, then upload the result",
            [("disk type 4 (differencing)", 60, None)], parent=parent))


def probe(src: Source) -> Match | None:
    """A VHD with its footer at the start (dynamic) or only at the end (fixed), or None."""
    if src.head[:8] == COOKIE:
        raw, where = src.head[:512], 0
    elif src.tail[:8] == COOKIE and len(src.tail) == 512:
        raw, where = src.tail, src.tail_offset
    else:
        return None
    (_c, _feat, _ver, data_offset, _ts, creator, _cv, _os, orig, current, cyls, heads, secs,
     disk_type, stored_sum, _uuid, _saved) = unpack(_FOOTER, raw, 0, "VHD footer")
    if where and disk_type != 2:
        return None  # qemu only accepts an end-only footer for a fixed disk
    findings: list[Finding] = []
    size = virtual_size(creator, cyls, heads, secs, current)
    details: dict = {"subformat": TYPES.get(disk_type, f"type {disk_type}"),
                     "creator_app": ascii_field(creator), "current_size": current,
                     "original_size": orig, "geometry": [cyls, heads, secs],
                     "footer_offset": where}
    if stored_sum != checksum(raw):
        findings.append(finding("vhd-bad-checksum", Severity.WARNING,
                                "VHD footer checksum does not match its content",
                                "re-export the image", [("checksum", where + 64, raw[64:68])]))
    if size // 512 > MAX_SECTORS:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VHD size {size} is over the 2040 GiB the format allows", "refuse the image",
            [("current size", where + 48, raw[48:56])]))
    if disk_type in (3, 4):
        _dynamic(src, data_offset, disk_type, findings, details)
    elif disk_type != 2:
        findings.append(finding("header-field-out-of-bounds", Severity.ERROR,
                                f"VHD disk type {disk_type} is not 2, 3 or 4",
                                "refuse the image", [("disk type", where + 60, raw[60:64])]))
    return Match("vhd", size, details, tuple(findings), offset=where)
