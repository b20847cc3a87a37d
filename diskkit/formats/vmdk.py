"""VMDK: the sparse extent header (``KDMV``), its embedded descriptor and streamOptimized
footer, and plain-text descriptor files.

Header layout (VMware "Virtual Disk Format 5.0", SparseExtentHeader, little-endian, packed):
:data:`LAYOUT` (magic, version, flags, capacity in sectors, grainSize, descriptorOffset,
descriptorSize, numGTEsPerGT, rgdOffset, gdOffset (``GD_AT_END``: the real header is the
footer), overHead, uncleanShutdown, four newline-detection bytes, compressAlgorithm).
A streamOptimized file ends with a footer marker, a copy of the header, and an end-of-stream
marker (three 512-byte sectors); qemu (block/vmdk.c) then takes the footer's fields over the
header's, so we do too, and report when they disagree. A footer that itself says "the grain
directory is at the footer" is refused: qemu would read its L1 table from offset
0xFFFFFFFFFFFFFFFF sectors, and oslo.utils' inspector refuses it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diskkit.findings import Finding, Severity
from diskkit.formats import vmdk_descriptor
from diskkit.formats.base import Match, Source, finding
from diskkit.formats.fields import Header, Layout

MAGIC = b"KDMV"
GD_AT_END = 0xFFFFFFFFFFFFFFFF
_FLAG_COMPRESSED = 1 << 16
_MARKER_EOS = 0
_MARKER_FOOTER = 3
#: qemu refuses more than 512 grain table entries per table; we call more absurd.
MAX_GTES = 512
#: Grain directory larger than this (bytes) would make a reader allocate absurd memory.
MAX_GD_BYTES = 32 << 20
#: Most descriptor bytes detection reads.
DESC_READ = 64 * 1024

LAYOUT = Layout(
    "<", ("magic", "4s"), ("version", "I"), ("flags", "I"), ("capacity", "Q"),
    ("grain_size", "Q"), ("descriptor_offset", "Q"), ("descriptor_size", "Q"),
    ("num_gtes_per_gt", "I"), ("rgd_offset", "Q"), ("gd_offset", "Q"), ("overhead", "Q"),
    ("unclean_shutdown", "B"), ("newline_test", "4s"), ("compress_algorithm", "H"))
#: The fields a streamOptimized footer must repeat unchanged.
_FOOTER_SAME = ("version", "capacity", "grain_size", "descriptor_offset", "descriptor_size",
                "num_gtes_per_gt")


@dataclass(frozen=True, kw_only=True)
class VmdkHeader(Header):
    """A VMDK SparseExtentHeader (sizes and offsets in 512-byte sectors, as stored)."""

    LAYOUT = LAYOUT
    magic: bytes
    version: int
    flags: int
    capacity: int
    grain_size: int
    descriptor_offset: int
    descriptor_size: int
    num_gtes_per_gt: int
    rgd_offset: int
    gd_offset: int
    overhead: int
    unclean_shutdown: int
    newline_test: bytes
    compress_algorithm: int

    @property
    def compressed(self) -> bool:
        """True when grains are compressed (flags bit 16)."""
        return bool(self.flags & _FLAG_COMPRESSED)

    @property
    def gd_at_end(self) -> bool:
        """True when the grain directory offset is in the footer (streamOptimized)."""
        return self.gd_offset == GD_AT_END


@dataclass(frozen=True, kw_only=True)
class VmdkMarker(Header):
    """A streamOptimized marker sector (block/vmdk.c: value, size, type, zero padding)."""

    LAYOUT = Layout("<", ("value", "Q"), ("size", "I"), ("type", "I"), ("pad", "496s"))
    value: int
    size: int
    type: int
    pad: bytes

    def is_marker(self, kind: int) -> bool:
        """A metadata marker (size 0) of ``kind``, zero-padded."""
        return self.size == 0 and self.type == kind and not self.pad.strip(b"\0")


def _footer(src: Source, hdr: VmdkHeader, findings: list[Finding]) -> VmdkHeader | None:
    """The streamOptimized footer header, or None (with a finding) when it is not valid."""
    if src.size < 1536 + 512:
        findings.append(_mismatch("the file is too short to hold the footer", None, b""))
        return None
    start = src.size - 1536
    raw = src.read(start, 1536)
    marker = VmdkMarker.parse(raw, 0, file_offset=start, what="VMDK footer marker")
    eos = VmdkMarker.parse(raw, 1024, file_offset=start + 1024, what="VMDK end-of-stream")
    foot = VmdkHeader.parse(raw, 512, file_offset=start + 512, what="VMDK footer")
    if not marker.is_marker(_MARKER_FOOTER) or foot.magic != MAGIC or \
            not eos.is_marker(_MARKER_EOS) or eos.value:
        findings.append(_mismatch("gdOffset says 'at the footer' but there is no valid footer "
                                  "(footer marker, footer magic, end-of-stream marker)",
                                  start, marker.bytes_of("value", "type")
                                  + foot.bytes_of("magic") + eos.bytes_of("value", "type")))
        return None
    if foot.gd_at_end:
        findings.append(_mismatch(
            "the footer's gdOffset also says 'at the footer': there is no grain directory "
            "(qemu cannot read the L1 table)", foot.offset("gd_offset"),
            foot.bytes_of("gd_offset")))
        return None
    for key in _FOOTER_SAME:
        if getattr(foot, key) != getattr(hdr, key):
            findings.append(_mismatch(
                f"header {key} is {getattr(hdr, key)}, footer {key} is {getattr(foot, key)} "
                "(qemu uses the footer)", foot.file_offset, foot.raw))
            break
    return foot


def _mismatch(what: str, offset: int | None, data: bytes) -> Finding:
    return finding("vmdk-header-footer-mismatch", Severity.ERROR,
                   f"VMDK streamOptimized header and footer disagree: {what}",
                   "refuse the image; re-export it from the source hypervisor",
                   [("footer", offset, data)])


def _sparse(src: Source) -> Match:
    hdr = VmdkHeader.parse(src.head, 0, what="VMDK sparse header")
    findings: list[Finding] = []
    used = hdr
    if hdr.version not in (1, 2, 3):
        findings.append(finding("vmdk-bad-version", Severity.ERROR,
                                f"VMDK sparse header version {hdr.version} is not 1, 2 or 3",
                                "refuse the image", [hdr.evidence("version", "version")]))
    if hdr.gd_at_end:
        used = _footer(src, hdr, findings) or hdr
    grain, gtes, capacity = used.grain_size, used.num_gtes_per_gt, used.capacity
    if grain == 0 or gtes == 0 or gtes > MAX_GTES:
        findings.append(finding(
            "absurd-table-size", Severity.ERROR,
            f"VMDK grain size {grain} sectors / {gtes} entries per grain table is invalid",
            "refuse the image",
            [used.evidence("grainSize, numGTEsPerGT", "grain_size", "num_gtes_per_gt")]))
    elif -(-capacity // (grain * gtes)) * 4 > MAX_GD_BYTES:
        findings.append(finding(
            "absurd-table-size", Severity.ERROR,
            f"VMDK capacity {capacity} sectors needs a grain directory over "
            f"{MAX_GD_BYTES >> 20} MiB", "refuse the image",
            [used.evidence("capacity", "capacity")]))
    if not used.gd_at_end and used.gd_offset and used.gd_offset * 512 >= src.size:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VMDK grain directory at sector {used.gd_offset} is past the end of the file",
            "refuse the image (truncated or hostile)", [used.evidence("gdOffset", "gd_offset")]))
    details: dict[str, Any] = {"version": hdr.version, "flags": hdr.flags,
                               "grain_size": grain * 512, "compressed": hdr.compressed,
                               "footer": hdr.gd_at_end, "create_type": "monolithicSparse"}
    desc_off, desc_size = used.descriptor_offset * 512, used.descriptor_size * 512
    if desc_off:
        if desc_size > vmdk_descriptor.MAX_DESCRIPTOR:
            findings.append(finding(
                "absurd-table-size", Severity.ERROR,
                f"VMDK embedded descriptor claims {desc_size} bytes", "refuse the image",
                [used.evidence("descriptorSize", "descriptor_size")]))
        elif desc_off + desc_size > src.size:
            findings.append(finding(
                "header-field-out-of-bounds", Severity.ERROR,
                f"VMDK embedded descriptor [{desc_off}, +{desc_size}) is past the end of "
                "the file", "refuse the image (truncated or hostile)",
                [used.evidence("descriptorOffset", "descriptor_offset", "descriptor_size")]))
        else:
            raw = src.read(desc_off, min(desc_size, DESC_READ))
            desc = vmdk_descriptor.parse(raw)
            findings += vmdk_descriptor.check(desc, desc_off, raw, embedded=True)
            details["create_type"] = desc.create_type
            details["descriptor"] = desc.fields
            details["extents"] = [e.file for e in desc.extents]
    return Match("vmdk", capacity * 512, details, tuple(findings))


def _text(src: Source) -> Match:
    raw = src.head
    desc = vmdk_descriptor.parse(raw)
    findings = vmdk_descriptor.check(desc, 0, raw, embedded=False)
    details = {"create_type": desc.create_type, "descriptor_file": True,
               "descriptor": desc.fields,
               "extents": [{"access": e.access, "sectors": e.sectors, "type": e.type,
                            "file": e.file, "offset": e.offset} for e in desc.extents]}
    return Match("vmdk", desc.sectors * 512, details, tuple(findings))


def probe(src: Source) -> Match | None:
    """A VMDK sparse extent or descriptor file, or None."""
    if src.head[:4] == MAGIC:
        return _sparse(src)
    if vmdk_descriptor.looks_like_descriptor(src.head):
        return _text(src)
    return None
