"""ISO 9660 and UDF volume recognition sequences.

ECMA-119: the system area is sectors 0-15 (2048 bytes each); volume descriptors follow from
byte 32768, each with a type byte, the identifier ``CD001`` @1 and a version @6. The primary
volume descriptor (type 1) holds the volume identifier @40, the volume space size (both-endian
u32 @80) and the logical block size (both-endian u16 @128). A boot record (type 0) whose
system identifier is ``EL TORITO SPECIFICATION`` makes the disc bootable. ECMA-167 (UDF) puts
``BEA01``, ``NSR02``/``NSR03`` and ``TEA01`` descriptors in the same area.

qemu has no iso driver: it reads an ISO as raw, so the virtual size is the file size; the
volume size is reported beside it.
"""

from __future__ import annotations

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, ascii_field, finding, one

START = 32768
SECTOR = 2048
_UDF = (b"BEA01", b"NSR02", b"NSR03", b"TEA01", b"BOOT2", b"CDW02")


def probe(src: Source) -> Match | None:
    """An ISO 9660 and/or UDF volume, or None."""
    iso = udf = el_torito = False
    volume_size = None
    volume_id = None
    pos = START
    while pos + SECTOR <= len(src.head):
        desc = src.head[pos:pos + SECTOR]
        ident = desc[1:6]
        if ident == b"CD001":
            iso = True
            if desc[0] == 1 and volume_size is None:
                blocks = one("<I", desc, 80, "ISO primary volume descriptor")
                block = one("<H", desc, 128, "ISO primary volume descriptor")
                volume_size = blocks * block
                volume_id = ascii_field(desc[40:72])
            elif desc[0] == 0 and desc[7:30] == b"EL TORITO SPECIFICATION":
                el_torito = True
            elif desc[0] == 255:
                pos += SECTOR
                continue
        elif ident in _UDF:
            udf = udf or ident in (b"NSR02", b"NSR03")
        elif pos > START or ident != b"\0" * 5:
            break
        pos += SECTOR
    if not (iso or udf):
        return None
    findings: list[Finding] = []
    if volume_size is not None and volume_size > src.size:
        findings.append(finding(
            "iso-truncated", Severity.ERROR,
            f"the ISO volume claims {volume_size} bytes but the file holds {src.size}",
            "download or copy the ISO again and compare its checksum",
            [("volume space size", START + 80, None)], volume_size=volume_size))
    details = {"iso9660": iso, "udf": udf, "volume_size": volume_size,
               "volume_id": volume_id, "el_torito": el_torito}
    return Match("iso", src.size, details, tuple(findings), offset=START)
