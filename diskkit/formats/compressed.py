"""Compressed files and zip archives: recognised so they are never uploaded as disks.

Signatures: gzip ``1f 8b 08`` (RFC 1952), xz ``fd 37 7a 58 5a 00``, zstd frame ``28 b5 2f fd``
(RFC 8878, whose frame header may give the content size), bzip2 ``BZh`` + level + block or
end-of-stream magic, zip local file header ``PK\\x03\\x04`` (or an empty archive's
``PK\\x05\\x06``).
"""

from __future__ import annotations

from diskkit.findings import Severity
from diskkit.formats import registry
from diskkit.formats.base import Match, Source, finding, one, unpack

_FIX = "decompress it first and check what is inside: {tool}"


def _zstd_content_size(head: bytes) -> int | None:
    fhd = one("B", head, 4, "zstd frame header")
    fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if size == 0:
        return None
    value = int.from_bytes(unpack(f"{size}s", head, pos, "zstd frame header")[0], "little")
    return value + 256 if size == 2 else value


def _compressed(fmt: str, src: Source, **details: object) -> Match:
    tool = registry.get(fmt).unpack
    f = finding("compressed-upload", Severity.ERROR,
                f"the file is {fmt}-compressed, not a disk image: a hypervisor would see "
                "compressed bytes", _FIX.format(tool=tool), [("magic", 0, src.head[:6])])
    return Match(fmt, None, dict(details), (f,))


def probe(src: Source) -> Match | None:
    """A gzip, xz, zstd, bzip2 or zip file, or None."""
    h = src.head
    if h[:3] == b"\x1f\x8b\x08":
        details: dict = {}
        if len(src.tail) >= 4:
            details["size_mod_2_32"] = one("<I", src.tail, len(src.tail) - 4, "gzip trailer")
        return _compressed("gzip", src, **details)
    if h[:6] == b"\xfd7zXZ\x00":
        return _compressed("xz", src)
    if h[:4] == b"\x28\xb5\x2f\xfd":
        return _compressed("zstd", src, content_size=_zstd_content_size(h))
    if h[:3] == b"BZh" and h[3:4] in b"123456789" and len(h[3:4]) == 1 and h[4:10] in (
            b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90"):
        return _compressed("bzip2", src, level=int(h[3:4]))
    if h[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        first = None
        if h[:4] == b"PK\x03\x04":
            name_len = one("<H", h, 26, "zip local header")
            first = unpack(f"{name_len}s", h, 30, "zip local header")[0].decode(
                "utf-8", "replace")
        f = finding("archive-upload", Severity.ERROR,
                    "the file is a zip archive, not a disk image",
                    "unzip it and check the disk image inside", [("magic", 0, h[:4])],
                    first_member=first)
        return Match("zip", None, {"first_member": first}, (f,))
    return None
