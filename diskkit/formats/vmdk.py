"""VMDK: the sparse extent header (``KDMV``), its embedded descriptor and streamOptimized
footer, and plain-text descriptor files.

Header layout (VMware "Virtual Disk Format 5.0", SparseExtentHeader, little-endian, packed):
magic @0, version u32 @4, flags u32 @8, capacity u64 @12 (sectors), grainSize u64 @20,
descriptorOffset u64 @28, descriptorSize u64 @36, numGTEsPerGT u32 @44, rgdOffset u64 @48,
gdOffset u64 @56 (``GD_AT_END``: the real header is the footer), overHead u64 @64,
uncleanShutdown u8 @72, four newline-detection bytes @73, compressAlgorithm u16 @77.
A streamOptimized file ends with a footer marker, a copy of the header, and an end-of-stream
marker (three 512-byte sectors); qemu (block/vmdk.c) then takes the footer's fields over the
header's, so we do too, and report when they disagree.
"""

from __future__ import annotations

from diskkit.findings import Finding, Severity
from diskkit.formats import vmdk_descriptor
from diskkit.formats.base import Match, Source, finding, unpack

MAGIC = b"KDMV"
GD_AT_END = 0xFFFFFFFFFFFFFFFF
_HDR = "<4sIIQQQQIQQQB4sH"
_FLAG_COMPRESSED = 1 << 16
_MARKER_FOOTER = 3
#: qemu refuses more than 512 grain table entries per table; we call more absurd.
MAX_GTES = 512
#: Grain directory larger than this (bytes) would make a reader allocate absurd memory.
MAX_GD_BYTES = 32 << 20
#: Most descriptor bytes detection reads.
DESC_READ = 64 * 1024


def _header(data: bytes, offset: int, what: str) -> dict[str, int | bytes]:
    (magic, version, flags, capacity, grain, desc_off, desc_size, gtes, rgd, gd, overhead,
     _unclean, _nl, compress) = unpack(_HDR, data, offset, what)
    return {"magic": magic, "version": version, "flags": flags, "capacity": capacity,
            "grain": grain, "desc_off": desc_off, "desc_size": desc_size, "gtes": gtes,
            "rgd": rgd, "gd": gd, "overhead": overhead, "compress": compress}


def _footer(src: Source, hdr: dict, findings: list[Finding]) -> dict | None:
    """The streamOptimized footer header, or None (with a finding) when it is not valid."""
    if src.size < 1536 + 512:
        findings.append(_mismatch("the file is too short to hold the footer", None, b""))
        return None
    start = src.size - 1536
    raw = src.read(start, 1536)
    _val, size, mtype = unpack("<QII", raw, 0, "VMDK footer marker")
    eos = unpack("<QII", raw, 1024, "VMDK end-of-stream marker")
    foot = _header(raw, 512, "VMDK footer")
    if size != 0 or mtype != _MARKER_FOOTER or foot["magic"] != MAGIC or eos != (0, 0, 0):
        findings.append(_mismatch("gdOffset says 'at the footer' but there is no valid footer",
                                  start, raw[:16] + raw[512:516]))
        return None
    for key in ("version", "capacity", "grain", "desc_off", "desc_size", "gtes"):
        if foot[key] != hdr[key]:
            findings.append(_mismatch(
                f"header {key} is {hdr[key]}, footer {key} is {foot[key]} (qemu uses the "
                "footer)", start + 512, raw[512:512 + 79]))
            break
    return foot


def _mismatch(what: str, offset: int | None, data: bytes) -> Finding:
    return finding("vmdk-header-footer-mismatch", Severity.ERROR,
                   f"VMDK streamOptimized header and footer disagree: {what}",
                   "refuse the image; re-export it from the source hypervisor",
                   [("footer", offset, data)])


def _sparse(src: Source) -> Match:
    hdr = _header(src.head, 0, "VMDK sparse header")
    findings: list[Finding] = []
    used = hdr
    if hdr["version"] not in (1, 2, 3):
        findings.append(finding("vmdk-bad-version", Severity.ERROR,
                                f"VMDK sparse header version {hdr['version']} is not 1, 2 or 3",
                                "refuse the image", [("version", 4, src.head[4:8])]))
    if hdr["gd"] == GD_AT_END:
        used = _footer(src, hdr, findings) or hdr
    grain, gtes, capacity = used["grain"], used["gtes"], used["capacity"]
    if grain == 0 or gtes == 0 or gtes > MAX_GTES:
        findings.append(finding(
            "absurd-table-size", Severity.ERROR,
            f"VMDK grain size {grain} sectors / {gtes} entries per grain table is invalid",
            "refuse the image", [("grainSize, numGTEsPerGT", 20, src.head[20:48])]))
    elif -(-capacity // (grain * gtes)) * 4 > MAX_GD_BYTES:
        findings.append(finding(
            "absurd-table-size", Severity.ERROR,
            f"VMDK capacity {capacity} sectors needs a grain directory over "
            f"{MAX_GD_BYTES >> 20} MiB", "refuse the image",
            [("capacity", 12, src.head[12:20])]))
    if used["gd"] not in (GD_AT_END, 0) and used["gd"] * 512 >= src.size:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"VMDK grain directory at sector {used['gd']} is past the end of the file",
            "refuse the image (truncated or hostile)", [("gdOffset", 56, src.head[56:64])]))
    details: dict = {"version": hdr["version"], "flags": hdr["flags"],
                     "grain_size": grain * 512, "compressed": bool(hdr["flags"] &
                                                                   _FLAG_COMPRESSED),
                     "footer": hdr["gd"] == GD_AT_END, "create_type": "monolithicSparse"}
    desc_off, desc_size = used["desc_off"] * 512, used["desc_size"] * 512
    if desc_off:
        if desc_size > vmdk_descriptor.MAX_DESCRIPTOR:
            findings.append(finding(
                "absurd-table-size", Severity.ERROR,
                f"VMDK embedded descriptor claims {desc_size} bytes", "refuse the image",
                [("descriptorSize", 36, src.head[36:44])]))
        elif desc_off + desc_size > src.size:
            findings.append(finding(
                "header-field-out-of-bounds", Severity.ERROR,
                f"VMDK embedded descriptor [{desc_off}, +{desc_size}) is past the end of "
                "the file", "refuse the image (truncated or hostile)",
                [("descriptorOffset", 28, src.head[28:44])]))
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
