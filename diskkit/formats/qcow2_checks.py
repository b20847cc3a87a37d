"""qcow2 detection and safety checks, over the header parsed by
:func:`diskkit.formats.qcow2.parse_header` (the readers' parser; one parser for the project).

Facts from QEMU docs/interop/qcow2.txt: incompatible feature bits are 0 dirty, 1 corrupt,
2 external data file, 3 compression type, 4 extended L2; any other bit means "do not open".
Note the OpenStack inspector tests bit 3 for the data file (it is bit 2) and rejects bit 4
(extended L2 is a valid, known feature). qemu caps the L1 table at 32 MiB
(QCOW_MAX_L1_SIZE) and the refcount table at 8 MiB (QCOW_MAX_REFTABLE_SIZE).
"""

from __future__ import annotations

from typing import Any

from diskkit.errors import ImageError
from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, finding
from diskkit.formats.qcow2 import parse_header

MAGIC = b"QFI\xfb"
KNOWN_INCOMPATIBLE = 0x1F
DATA_FILE_BIT = 1 << 2
CORRUPT_BIT = 1 << 1
EXTENDED_L2_BIT = 1 << 4
MAX_L1_BYTES = 32 << 20
MAX_REFTABLE_BYTES = 8 << 20
MAX_SNAPSHOTS = 65536


def _get(h: Any, name: str, default: Any = None) -> Any:
    return getattr(h, name, default)


def _oob(what: str, offset: int, data: bytes, **details: Any) -> Finding:
    return finding("header-field-out-of-bounds", Severity.ERROR,
                   f"qcow2 {what} is outside the file", "refuse the image (truncated or hostile)",
                   [(what, offset, data)], **details)


def checks(h: Any, head: bytes, file_size: int) -> list[Finding]:
    """Every qcow2 safety check over a parsed header."""
    out: list[Finding] = []
    version = _get(h, "version")
    if version not in (2, 3):
        out.append(finding("qcow2-bad-version", Severity.ERROR,
                           f"qcow2 version {version} is not 2 or 3", "refuse the image",
                           [("version", 4, head[4:8])]))
    backing = _get(h, "backing_file")
    if backing is not None or int.from_bytes(head[8:16], "big"):
        out.append(finding(
            "qcow2-backing-file", Severity.ERROR,
            f"qcow2 image has a backing file {backing!r}: qemu would open that path on the "
            "host (CVE-2024-32498)",
            "flatten it on a trusted host: qemu-img convert -f qcow2 -O qcow2 IN OUT "
            "(or refuse it)", [("backing file offset and size", 8, head[8:20])],
            backing_file=backing, backing_format=_get(h, "backing_format")))
    incompat = _get(h, "incompatible_features", 0) or 0
    data_file = _get(h, "data_file")
    if incompat & DATA_FILE_BIT or data_file is not None:
        out.append(finding(
            "qcow2-data-file", Severity.ERROR,
            f"qcow2 image keeps its data in an external file {data_file!r}: qemu would open "
            "that path on the host (CVE-2024-32498)",
            "refuse the image; only a trusted host should convert it "
            "(qemu-img convert -f qcow2 -O qcow2 IN OUT)",
            [("incompatible features", 72, head[72:80])], data_file=data_file))
    unknown = incompat & ~KNOWN_INCOMPATIBLE
    if unknown:
        out.append(finding(
            "qcow2-unknown-incompatible-features", Severity.ERROR,
            f"qcow2 image sets incompatible feature bits {unknown:#x} that no qemu knows",
            "refuse the image", [("incompatible features", 72, head[72:80])]))
    if incompat & CORRUPT_BIT:
        out.append(finding("qcow2-corrupt", Severity.WARNING,
                           "qcow2 image is marked corrupt: qemu opens it read-only only",
                           "run qemu-img check -r all on a copy",
                           [("incompatible features", 72, head[72:80])]))
    crypt = _get(h, "crypt_method", 0) or 0
    if crypt:
        legacy = crypt == 1
        out.append(finding(
            "encrypted", Severity.ERROR if legacy else Severity.WARNING,
            "qcow2 image is encrypted" + (" with the broken legacy AES method (qemu refuses "
                                          "to run it)" if legacy else " (LUKS)"),
            "decrypt it on a trusted host: qemu-img convert --object secret,... -O qcow2",
            [("crypt method", 32, head[32:36])], crypt_method=crypt))
    cluster_bits = _get(h, "cluster_bits", 16)
    if not 9 <= cluster_bits <= 21:
        out.append(_oob("cluster size (cluster_bits)", 20, head[20:24]))
        return out
    cluster = 1 << cluster_bits
    l1_size, l1_off = _get(h, "l1_size", 0), _get(h, "l1_table_offset", 0)
    if l1_size * 8 > MAX_L1_BYTES:
        out.append(finding("absurd-table-size", Severity.ERROR,
                           f"qcow2 L1 table of {l1_size} entries ({l1_size * 8} bytes) is over "
                           f"qemu's {MAX_L1_BYTES >> 20} MiB limit", "refuse the image",
                           [("L1 size", 36, head[36:40])], l1_size=l1_size))
    elif l1_size and l1_off + l1_size * 8 > file_size:
        out.append(_oob("L1 table", 40, head[40:48], l1_table_offset=l1_off))
    entry = 16 if incompat & EXTENDED_L2_BIT else 8
    per_l1 = cluster * (cluster // entry)
    size = _get(h, "size", 0) or 0
    if -(-size // per_l1) > l1_size and l1_size * 8 <= MAX_L1_BYTES:
        out.append(_oob("L1 table (too small for the virtual size)", 36, head[36:40]))
    rt_off, rt_clusters = _get(h, "refcount_table_offset"), _get(h, "refcount_table_clusters")
    if rt_off is not None and rt_clusters is not None:
        if rt_clusters * cluster > MAX_REFTABLE_BYTES:
            out.append(finding("absurd-table-size", Severity.ERROR,
                               f"qcow2 refcount table of {rt_clusters} clusters is over qemu's "
                               "8 MiB limit", "refuse the image", [("refcount table clusters",
                                                                    56, head[56:60])]))
        elif rt_off + rt_clusters * cluster > file_size:
            out.append(_oob("refcount table", 48, head[48:60]))
    nb_snap = _get(h, "nb_snapshots")
    if nb_snap is not None and nb_snap > MAX_SNAPSHOTS:
        out.append(finding("absurd-table-size", Severity.ERROR,
                           f"qcow2 claims {nb_snap} snapshots (qemu allows {MAX_SNAPSHOTS})",
                           "refuse the image", [("nb_snapshots", 60, head[60:64])]))
    elif nb_snap and _get(h, "snapshots_offset", 0) >= file_size:
        out.append(_oob("snapshot table", 64, head[64:72]))
    return out


def probe(src: Source) -> Match | None:
    """A qcow2 image (header parsed by the readers' parser), or None."""
    if src.head[:4] != MAGIC:
        return None
    try:
        h = parse_header(src.head, src.size)
    except ImageError as exc:
        if exc.code != "qcow2-bad-version":
            raise
        # A version qemu cannot read is a finding about a recognised qcow2, not unreadable
        # input: report it (oslo.utils says nothing about it).
        version = int.from_bytes(src.head[4:8], "big")
        return Match("qcow2", None, {"version": version}, (finding(
            "qcow2-bad-version", Severity.ERROR, f"qcow2 version {version} is not 2 or 3",
            "refuse the image", [("version", 4, src.head[4:8])]),))
    incompat = _get(h, "incompatible_features", 0) or 0
    details = {
        "version": _get(h, "version"), "cluster_size": 1 << _get(h, "cluster_bits", 16)
        if 0 <= _get(h, "cluster_bits", 16) < 64 else None,
        "backing_file": _get(h, "backing_file"), "backing_format": _get(h, "backing_format"),
        "data_file": _get(h, "data_file"), "crypt_method": _get(h, "crypt_method"),
        "incompatible_features": incompat, "extended_l2": bool(incompat & EXTENDED_L2_BIT),
        "compression_type": _get(h, "compression_type"),
        "l1_size": _get(h, "l1_size"), "l1_table_offset": _get(h, "l1_table_offset"),
    }
    return Match("qcow2", _get(h, "size"), details, tuple(checks(h, src.head, src.size)))
