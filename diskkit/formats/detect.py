"""Format detection in one pass: ONE bounded read of the head, one of the tail (none when the
head holds the whole file), every probe whose signature can match.

The first two bytes pick, with one dict look-up (:data:`AT_ZERO`), the one probe among those
whose signature can only sit at offset 0; each probe in :data:`ALWAYS` runs when a cheap
necessary condition of its signature holds (:func:`_gates`).
Every probe that runs sees the same :class:`~diskkit.formats.base.Source`; every match is
reported.
Two container formats matching the same file is a polyglot (an ISO whose system area holds a
qcow2 header, a raw disk whose guest wrote a VMDK header): that is a finding, never resolved
silently. Partition tables are noted, not matched, so a hybrid ISO's MBR/GPT is expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module

from diskkit.errors import ImageError
from diskkit.findings import Finding, Severity
from diskkit.formats import registry
from diskkit.formats.base import Match, Source, finding
from diskkit.readers.base import Reader

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Probe = Callable[[Source], Match | None]

#: Every probe, in the order a primary format is chosen when several match (qemu's own
#: probe would take the header at offset 0 first), as "module:function" in
#: diskkit.formats: a module is imported only when detection calls its probe (when the
#: file's first bytes or a gate below say its signature can match), so detecting a qcow2
#: imports qcow2's checks and no other format's module.
PROBES: tuple[tuple[str, str], ...] = (
    ("qcow2", "qcow:probe"),
    ("qed", "qed:probe"),
    ("vmdk", "vmdk:probe"),
    ("vhdx", "vhdx:probe"),
    ("vdi", "vdi:probe"),
    ("luks", "luks:probe"),
    ("compressed", "compressed:probe"),
    ("tar", "tar:probe"),
    ("vhd", "vhd:probe"),
    ("iso", "iso:probe"),
    ("parallels", "parallels:probe"),
    ("bochs", "bochs:probe"),
    ("cloop", "cloop:probe"),
    ("dmg", "dmg:probe"),
)


def _qcow(src: Source) -> Match | None:
    """qcow v1 and qcow2 share their magic; the version tells them apart."""
    if src.head[:8] == b"QFI\xfb\0\0\0\x01":  # qcow1.is_qcow1: magic, version 1
        from diskkit.formats import qcow1

        return qcow1.probe(src)
    from diskkit.formats import qcow2_checks

    return qcow2_checks.probe(src)


def _probe(spec: str) -> Probe:
    """The probe function named by ``spec`` ("module:function"; "qcow:probe" is qcow v1
    or qcow2 by the header's version), its module imported now."""
    module, _, func = spec.partition(":")
    if module == "qcow":
        return _qcow
    fn: Probe = getattr(import_module(f"diskkit.formats.{module}"), func)
    return fn


#: Probes whose signature can only sit at offset 0, keyed by the signature's first two
#: bytes (all distinct): a file runs at most one of them, chosen by one dict look-up. Each
#: probe still checks its whole signature; the key is only a necessary condition.
AT_ZERO: dict[bytes, str] = {
    b"QF": "qcow2", b"QE": "qed", b"vh": "vhdx", b"LU": "luks",
    b"\x1f\x8b": "compressed", b"\xfd7": "compressed", b"\x28\xb5": "compressed",
    b"BZ": "compressed", b"PK": "compressed",
    b"Wi": "parallels", b"Bo": "bochs", b"#!": "cloop",
}
#: Probes whose signature is not (only) at offset 0, each with the cheap necessary condition
#: detection checks before calling it (the probe then checks everything): a VMDK sparse
#: header or text descriptor (vmdk_descriptor.looks_like_descriptor needs a leading "#" or
#: "createType" in the first 4 KiB), VDI's signature @0x40, ustar @257, a VHD footer at the
#: start or in the tail, and a head long enough to reach the ISO 9660 descriptors.
ALWAYS = ("vmdk", "vdi", "tar", "vhd", "iso", "dmg")
#: The signatures the gates look at, copied here so that a gate costs no import (the
#: modules' own constants: vmdk.MAGIC, vdi.SIGNATURE, vhd.COOKIE, iso.START + iso.SECTOR,
#: dmg.MAGIC; tests/formats/test_detect_lazy.py checks they agree).
_VMDK_MAGIC = b"KDMV"
_VDI_SIGNATURE = (0xBEDA107F).to_bytes(4, "little")
_VHD_COOKIE = b"conectix"
_ISO_MIN_HEAD = 32768 + 2048
_DMG_MAGIC = b"koly"


def _gates(head: bytes, tail: bytes) -> int:
    """Bit i set when ``ALWAYS[i]``'s probe may match (bits, not a list: no allocation)."""
    return ((head[:4] == _VMDK_MAGIC or head[:1] == b"#"
             or head.find(b"createType", 0, 4096) >= 0)
            | (head[0x40:0x44] == _VDI_SIGNATURE) << 1
            | (head[257:262] == b"ustar") << 2
            | (head[:8] == _VHD_COOKIE or tail[:8] == _VHD_COOKIE) << 3
            | (len(head) >= _ISO_MIN_HEAD) << 4
            | (tail[:4] == _DMG_MAGIC) << 5)


_Plan = tuple[tuple[str, "Probe"], ...]
#: The probes to run, in PROBES order, for each (offset-0 probe, gates) pair: built on first
#: use (at most 10 x 32 small tuples), so a detection does one dict look-up.
_PLANS: dict[tuple[str | None, int], _Plan] = {}


def _plan(first: str | None, gates: int) -> _Plan:
    key = (first, gates)
    plan = _PLANS.get(key)
    if plan is None:
        wanted = {first} | {n for i, n in enumerate(ALWAYS) if gates >> i & 1}
        plan = _PLANS[key] = tuple((n, _probe(p)) for n, p in PROBES if n in wanted)
    return plan


#: Every format name detection can give.
FORMATS = registry.names(detected=True)


@dataclass(frozen=True)
class Detection:
    """What a file is."""

    #: The primary format ("raw" when nothing else matched).
    format: str
    #: Every format that matched, primary first (empty for raw).
    formats_matched: tuple[str, ...]
    #: Guest-visible size of the primary format (file size for raw and iso).
    virtual_size: int | None
    #: Size of the file (or device) itself.
    size: int
    matches: tuple[Match, ...]
    #: The partition table at the start of the file, when there is one (noted, not a format).
    partition_table: dict[str, Any] | None
    findings: tuple[Finding, ...]
    #: Bytes detection read (head + tail + extra reads).
    bytes_read: int = 0
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def match(self, fmt: str) -> Match | None:
        """The match for ``fmt``, if it matched."""
        return next((m for m in self.matches if m.format == fmt), None)

    @property
    def safe(self) -> bool:
        """True when no finding blocks."""
        return not any(f.blocking for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, ``detection``)."""
        return {"format": self.format, "formats_matched": list(self.formats_matched),
                "virtual_size": self.virtual_size, "size": self.size,
                "partition_table": self.partition_table, "details": self.details,
                "findings": [f.to_dict() for f in self.findings],
                "bytes_read": self.bytes_read}


def _polyglot(matches: list[Match]) -> Finding:
    names = [m.format for m in matches]
    return finding(
        "polyglot", Severity.ERROR,
        f"the file is valid as {' and as '.join(names)} at once: tools that probe would "
        f"disagree about what it is (qemu-img would call it {names[0]})",
        "refuse the image; rebuild it from a trusted source",
        [(f"{m.format} signature", m.offset, None) for m in matches], formats=names)


def detect(reader: Reader) -> Detection:
    """Detect the container format of ``reader``'s bytes; run every safety check.

    Raises :class:`~diskkit.errors.ImageError` when a header that matched is truncated or
    cannot be parsed at all (unreadable input).
    """
    src = Source(reader)
    matches: list[Match] = []
    # One dict look-up on the first two bytes and a few byte comparisons pick the probes
    # whose signature can match; the others are never called.
    head = src.head
    for _name, probe in _plan(AT_ZERO.get(head[:2]), _gates(head, src.tail)):
        try:
            m = probe(src)
        except ImageError as exc:
            raise ImageError(f"{reader.name}: {exc.message}", code=exc.code,
                             hint=exc.hint or "the file is truncated or not a disk image"
                             ) from None
        if m is not None:
            matches.append(m)
    if not matches:  # OpenStack's MBR rules apply to the raw disk's first sector
        from diskkit.formats import partitions, pmbr

        return Detection("raw", (), src.size, src.size, (), partitions.note(src),
                         tuple(pmbr.check(head)), src.bytes_read, {})
    primary = matches[0]
    fmt, details = primary.format, dict(primary.details)
    if len(matches) == 1:
        findings = primary.findings
    else:
        findings = (_polyglot(matches), *[f for m in matches for f in m.findings])
    # The bytes at the start are the guest's only for raw, iso and a fixed VHD.
    guest_at_zero = fmt == "iso" or details.get("subformat") == "fixed"
    if guest_at_zero:
        from diskkit.formats import partitions, pmbr
    table = partitions.note(src) if guest_at_zero else None
    if details.get("subformat") == "fixed":
        findings = (*findings, *pmbr.check(head))
    return Detection(fmt, tuple([m.format for m in matches]), primary.virtual_size, src.size,
                     tuple(matches), table, tuple(findings), src.bytes_read, details)
