"""The VMDK text descriptor: a pure, cautious parser and its safety checks.

Descriptor syntax (VMware "Virtual Disk Format 5.0", section "The Descriptor File"): comment
lines (``#``), ``key = value`` header lines (``version``, ``CID``, ``parentCID``,
``createType``, ``parentFileNameHint``), extent lines ``ACCESS SECTORS TYPE ["FILE" [OFFSET]]``
and ``ddb.*`` lines. Anything else is not descriptor syntax: a VMDK whose descriptor holds it
is refused (``vmdk-bad-descriptor``) rather than guessed at, as the OpenStack inspector does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from diskkit.findings import Finding, Severity
from diskkit.formats.base import finding

#: createTypes whose data lives inside the one file (CVE-2022-47951: any other names files).
SAFE_CREATE_TYPES = ("monolithicSparse", "streamOptimized")
ACCESS_MODES = ("RW", "RDONLY", "NOACCESS")
EXTENT_TYPES = ("FLAT", "SPARSE", "ZERO", "VMFS", "VMFSSPARSE", "VMFSRDM", "VMFSRAW",
                "SESPARSE")
_EXTENT = re.compile(r'^(\w+)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$')
_HEADER = re.compile(r'^([A-Za-z_][\w.]*)\s*=\s*(.*)$')
#: Descriptors larger than this are not read (qemu refuses above 1 MiB too).
MAX_DESCRIPTOR = 1 << 20


@dataclass(frozen=True)
class Extent:
    """One extent line."""

    access: str
    sectors: int
    type: str
    file: str | None
    offset: int


@dataclass(frozen=True)
class Descriptor:
    """What a descriptor says."""

    create_type: str | None
    extents: tuple[Extent, ...]
    fields: dict[str, str]
    #: Lines that are not descriptor syntax: (line number, text).
    bad_lines: tuple[tuple[int, str], ...]

    @property
    def sectors(self) -> int:
        """Sum of the extents' sizes in 512-byte sectors (qemu's virtual size)."""
        return sum(e.sectors for e in self.extents)

    @property
    def parent(self) -> str | None:
        """``parentFileNameHint``: the file a delta link reads through to."""
        return self.fields.get("parentFileNameHint")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse(data: bytes) -> Descriptor:
    """Parse descriptor text (NUL padding stripped). Never raises on bad content: bad lines
    are collected in ``bad_lines``."""
    text = data.split(b"\0", 1)[0].decode("latin-1")
    fields: dict[str, str] = {}
    extents: list[Extent] = []
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # An extent line starts with RW, RDONLY or NOACCESS: other lines skip its regex.
        m = _EXTENT.match(line) if line[0] in "RrNn" else None
        # Numbers of more than 20 digits are not 64-bit sector counts (and Python refuses to
        # convert more than 4,300 digits): a bad line, not a crash.
        if m and m.group(1).upper() in ACCESS_MODES and m.group(3).upper() in EXTENT_TYPES \
                and len(m.group(2)) <= 20 and len(m.group(5) or "") <= 20:
            extents.append(Extent(m.group(1).upper(), int(m.group(2)), m.group(3).upper(),
                                  m.group(4), int(m.group(5) or 0)))
            continue
        h = _HEADER.match(line)
        if h:
            fields[h.group(1)] = _unquote(h.group(2))
            continue
        bad.append((number, line[:200]))
    create = fields.get("createType")
    return Descriptor(create, tuple(extents), fields, tuple(bad))


_CREATE_TYPE_LINE = re.compile(rb"(?m)^\s*createType\s*=")
_VERSION_LINE = re.compile(rb"(?m)^\s*version\s*=")


def looks_like_descriptor(head: bytes) -> bool:
    """True when ``head`` is a plain-text VMDK descriptor (not a sparse file's header)."""
    if head[:21].lower() == b"# disk descriptorfile":
        return True
    if head.find(b"createType", 0, 4096) < 0:  # the regexes below cannot match without it
        return False
    # Text up to the first NUL, at most 4 KiB (sliced first: never copy the whole head).
    text = head[:4096].split(b"\0", 1)[0]
    return bool(_CREATE_TYPE_LINE.search(text)) and bool(_VERSION_LINE.search(text))


def check(desc: Descriptor, offset: int, raw: bytes, *, embedded: bool) -> list[Finding]:
    """The VMDK descriptor safety checks. ``embedded`` is True for the descriptor inside a
    sparse file (whose one extent is the file itself)."""
    out: list[Finding] = []
    ct = desc.create_type
    if ct is None or ct not in SAFE_CREATE_TYPES:
        out.append(finding(
            "vmdk-create-type", Severity.ERROR,
            f"VMDK createType is {ct!r}: only monolithicSparse and streamOptimized keep all "
            "data inside the one file (CVE-2022-47951)",
            "refuse it and ask its author for a monolithicSparse or streamOptimized VMDK: "
            "converting it (qemu-img convert) reads the extent files its descriptor names, "
            "on the host that runs the conversion",
            [("createType in the descriptor", offset, raw[:512])], create_type=ct))
    for ext in desc.extents:
        if ext.file is None:
            continue
        plain = "/" not in ext.file and "\\" not in ext.file and ext.file not in ("", ".", "..")
        if embedded and plain and len(desc.extents) == 1:
            continue  # a sparse file's descriptor names the file itself; qemu ignores it
        out.append(finding(
            "vmdk-extent-file", Severity.ERROR,
            f"VMDK extent names the file {ext.file!r}: qemu would open it on the host "
            "(CVE-2022-47951)",
            "never accept VMDKs that reference other files; ask for a monolithicSparse or "
            "streamOptimized VMDK",
            [("extent line", offset, None)], extent_file=ext.file, extent_type=ext.type))
    if desc.parent:
        out.append(finding(
            "vmdk-parent", Severity.ERROR,
            f"VMDK is a delta link whose parent is {desc.parent!r}: qemu would open that file",
            "refuse it and ask its author for a flattened VMDK: a plain qemu-img convert reads "
            "the parent it names on this host; to keep only the delta's own data: qemu-img "
            "convert -O qcow2 'json:{\"driver\": \"vmdk\", \"backing\": null, \"file\": "
            "{\"driver\": \"file\", \"filename\": \"IMAGE.vmdk\"}}' OUT.qcow2 (blocks the "
            "parent held read as zeros)",
            [("parentFileNameHint", offset, None)], parent=desc.parent))
    if desc.bad_lines or (not desc.extents and not embedded):
        what = (f"line {desc.bad_lines[0][0]}: {desc.bad_lines[0][1]!r}" if desc.bad_lines
                else "no extent lines")
        out.append(finding(
            "vmdk-bad-descriptor", Severity.ERROR,
            f"VMDK descriptor holds text that is not descriptor syntax ({what})",
            "refuse the image; regenerate it with qemu-img convert or VMware tools",
            [("descriptor", offset, raw[:64])],
            bad_lines=[f"{n}: {t}" for n, t in desc.bad_lines[:10]]))
    return out
