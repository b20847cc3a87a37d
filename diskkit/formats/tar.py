"""tar archives and OVA packages (a tar whose first member is the .ovf descriptor).

POSIX ustar header (512 bytes, POSIX.1-2008 "pax" ustar Interchange Format): name @0 (100),
size @124 (12, octal or GNU base-256), checksum @148 (8, octal, computed with the field as
spaces), typeflag @156, magic ``ustar`` @257 (GNU tar writes ``ustar  \\0``), prefix @345
(155). Entries that describe the next member rather than being one are skipped:

- pax extended headers, typeflag ``x`` (for the next member; Python's tarfile and
  ``tar --format=pax`` write one named ``././@PaxHeader`` before a member whose mtime, name or
  size ustar cannot hold) and ``g`` (global). Their data is records ``"LEN key=value\\n"``
  (LEN counts the whole record); ``path`` and ``size`` override the next member's fields.
- GNU long-name (``L``) and long-link (``K``) entries (``././@LongLink``), whose data is the
  next member's NUL-terminated name or link target.

Members are listed as far as the bounded head reaches: an entry whose header or metadata
data lies past the head ends the listing, so nothing is read beyond the detection prefix.
"""

from __future__ import annotations

from diskkit.findings import Severity
from diskkit.formats.base import Match, Source, ascii_field, finding

MAX_MEMBERS = 64
#: Typeflags of entries that carry metadata for the next member (not members themselves).
PAX_NEXT, PAX_GLOBAL, GNU_LONG_NAME, GNU_LONG_LINK = 0x78, 0x67, 0x4C, 0x4B  # x g L K
DISK_SUFFIXES = (".vmdk", ".qcow2", ".img", ".raw", ".vhd", ".vhdx", ".iso")


def _octal(field: bytes) -> int | None:
    if field[:1] and field[0] & 0x80:  # GNU base-256
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return None


def _valid(header: bytes) -> bool:
    """The header checksum: the byte sum with the 8-byte checksum field counted as spaces."""
    field = header[148:156]
    stored = _octal(field)
    return stored is not None and stored == sum(header) - sum(field) + 8 * 0x20


def _pax_records(data: bytes) -> dict[str, str]:
    """The ``key=value`` records of a pax extended header's data; parsing stops at the first
    malformed record (a length that is not a number or runs past the data)."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 20)
        if space < 0:
            break
        digits = data[pos:space]
        if not digits.isdigit():
            break
        length = int(digits)
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1] != 0x0A:
            break
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if sep:
            out[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        pos = end
    return out


def _size(value: str | None) -> int | None:
    """A pax ``size`` value (decimal, at most 20 digits), or None."""
    if value and len(value) <= 20 and value.isascii() and value.isdigit():
        return int(value)
    return None


def members(head: bytes) -> list[tuple[str, int]]:
    """(name, size) of each member whose header lies in ``head`` (pax and GNU metadata
    entries applied to the member they describe, not listed)."""
    return _walk(head)[0]


def _walk(head: bytes) -> tuple[list[tuple[str, int]], int]:
    """The members in ``head`` and how many valid headers (metadata ones included) led
    to them."""
    out: list[tuple[str, int]] = []
    headers = 0
    pos = 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    while pos + 512 <= len(head) and len(out) < MAX_MEMBERS:
        hdr = head[pos:pos + 512]
        if hdr[257:262] != b"ustar" or not _valid(hdr):
            break
        headers += 1
        size = _octal(hdr[124:136]) or 0
        data_at = pos + 512
        kind = hdr[156]
        if kind in (PAX_NEXT, PAX_GLOBAL, GNU_LONG_NAME, GNU_LONG_LINK):
            if data_at + size > len(head):
                break  # the metadata runs past the head: stop, read nothing more
            data = head[data_at:data_at + size]
            if kind == PAX_NEXT:
                pax = _pax_records(data)
            elif kind == GNU_LONG_NAME:
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
        else:
            name = ascii_field(hdr[0:100])
            prefix = ascii_field(hdr[345:500])
            name = f"{prefix}/{name}" if prefix else name
            name = pax.get("path") or long_name or name
            pax_size = _size(pax.get("size"))
            size = size if pax_size is None else pax_size
            out.append((name, size))
            pax, long_name = {}, None
        pos = data_at + -(-size // 512) * 512
    return out, headers


def probe(src: Source) -> Match | None:
    """A tar archive (``ova`` when its first member is an .ovf), or None."""
    if src.head[257:262] != b"ustar":
        return None
    found, headers = _walk(src.head)
    if not headers:  # the first header's checksum is wrong: not a tar
        return None
    names = [n for n, _ in found]
    is_ova = bool(names) and names[0].lower().endswith(".ovf")
    fmt = "ova" if is_ova else "tar"
    disks = [n for n in names if n.lower().endswith(DISK_SUFFIXES)]
    fix = ("unpack it (tar -xf FILE) and upload the disk it holds"
           + (f" ({', '.join(disks)})" if disks else ""))
    f = finding("archive-upload", Severity.ERROR,
                f"the file is a{'n OVA package' if is_ova else ' tar archive'}, not a disk "
                "image", fix, [("ustar magic", 257, src.head[257:265])], members=names)
    return Match(fmt, None, {"members": names, "disks": disks}, (f,))
