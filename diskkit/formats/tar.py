"""tar archives and OVA packages (a tar whose first member is the .ovf descriptor).

POSIX ustar header (512 bytes): name @0 (100), size @124 (12, octal or GNU base-256), checksum
@148 (8, octal, computed with the field as spaces), magic ``ustar`` @257, prefix @345 (155).
Members are listed as far as the bounded head reaches.
"""

from __future__ import annotations

from diskkit.findings import Severity
from diskkit.formats.base import Match, Source, ascii_field, finding

MAX_MEMBERS = 64


def _octal(field: bytes) -> int | None:
    if field[:1] and field[0] & 0x80:  # GNU base-256
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return None


def _valid(header: bytes) -> bool:
    stored = _octal(header[148:156])
    return stored is not None and stored == sum(header[:148]) + 256 + sum(header[156:512])


def members(head: bytes) -> list[tuple[str, int]]:
    """(name, size) of each member whose header lies in ``head``."""
    out: list[tuple[str, int]] = []
    pos = 0
    while pos + 512 <= len(head) and len(out) < MAX_MEMBERS:
        hdr = head[pos:pos + 512]
        if hdr[257:262] != b"ustar" or not _valid(hdr):
            break
        size = _octal(hdr[124:136]) or 0
        name = ascii_field(hdr[0:100])
        prefix = ascii_field(hdr[345:500])
        out.append((f"{prefix}/{name}" if prefix else name, size))
        pos += 512 + -(-size // 512) * 512
    return out


def probe(src: Source) -> Match | None:
    """A tar archive (``ova`` when its first member is an .ovf), or None."""
    if src.head[257:262] != b"ustar" or not _valid(src.head[:512]):
        return None
    found = members(src.head)
    names = [n for n, _ in found]
    is_ova = bool(names) and names[0].lower().endswith(".ovf")
    fmt = "ova" if is_ova else "tar"
    disks = [n for n in names if n.lower().endswith((".vmdk", ".qcow2", ".img", ".raw",
                                                     ".vhd", ".vhdx", ".iso"))]
    fix = ("unpack it (tar -xf FILE) and upload the disk it holds"
           + (f" ({', '.join(disks)})" if disks else ""))
    f = finding("archive-upload", Severity.ERROR,
                f"the file is a{'n OVA package' if is_ova else ' tar archive'}, not a disk "
                "image", fix, [("ustar magic", 257, src.head[257:265])], members=names)
    return Match(fmt, None, {"members": names, "disks": disks}, (f,))
