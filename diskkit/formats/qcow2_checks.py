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

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, finding
from diskkit.formats.qcow2 import (
    INCOMPAT_CORRUPT,
    INCOMPAT_DATA_FILE,
    INCOMPAT_EXTL2,
    KNOWN_INCOMPATIBLE,
    MAGIC,
    Qcow2Header,
    Qcow2HeaderError,
    parse_header,
)

MAX_L1_BYTES = 32 << 20
MAX_REFTABLE_BYTES = 8 << 20
MAX_SNAPSHOTS = 65536
#: What each unreadable-header error names, for the finding's evidence note.
_FIELDS = {0: "magic", 4: "version", 20: "cluster_bits", 72: "version 3 header fields",
           100: "header_length"}


def _oob(what: str, offset: int, data: bytes, **details: Any) -> Finding:
    return finding("header-field-out-of-bounds", Severity.ERROR,
                   f"qcow2 {what} is outside the file", "refuse the image (truncated or hostile)",
                   [(what, offset, data)], **details)


#: The fix of ``qcow2-backing-file``: safe to paste on the very image it is printed for.
#: ``qemu-img convert`` (a "flatten") would read the backing file the image names, on this
#: host: a hostile image naming /etc/passwd gets it copied into the output. ``rebase -u``
#: (unsafe mode) only rewrites the header and opens no backing file (qemu-img(1)).
BACKING_FIX = ("refuse the image (ask for a flattened one: its author has the backing file). "
               "To keep it anyway, drop the reference without opening it: qemu-img rebase -u "
               "-f qcow2 -b '' IMAGE (the guest then loses every block the backing file "
               "held: they read as zeros). Never qemu-img convert it here: convert reads the "
               "backing file on this host")


def unreadable(exc: Qcow2HeaderError, head: bytes) -> Finding:
    """The ``qcow2-bad-version`` / ``qcow2-bad-header`` finding for a header qemu cannot
    read (the readers refuse it with the same code)."""
    field = _FIELDS.get(exc.offset, "header extension")
    evidence = [(field, exc.offset, head[exc.offset:exc.offset + exc.length])]
    if exc.code == "qcow2-bad-version":
        version = int.from_bytes(head[4:8], "big")
        if version == 1:  # qemu's legacy "qcow" format shares the magic (block/qcow.c)
            fix = ("this is the legacy qcow (version 1) format, which OpenStack refuses: "
                   "convert it without opening any backing file it names (qemu-img convert "
                   "-O qcow2 'json:{\"driver\": \"qcow\", \"backing\": null, \"file\": "
                   "{\"driver\": \"file\", \"filename\": \"IMAGE\"}}' OUT.qcow2)")
        else:
            fix = ("refuse the image: no qemu reads this version; ask for a qcow2 written "
                   "with compat=1.1 (version 3) or compat=0.10 (version 2)")
        return finding("qcow2-bad-version", Severity.ERROR,
                       f"{exc.message}: qemu will not open it as qcow2", fix, evidence,
                       version=version)
    return finding("qcow2-bad-header", Severity.ERROR,
                   f"{exc.message}: qemu will not open it (a garbled or hostile header)",
                   "refuse the image; if its source is trusted, rebuild it there (qemu-img "
                   "convert -O qcow2) and compare checksums", evidence)


def checks(h: Qcow2Header, head: bytes, file_size: int) -> list[Finding]:
    """Every qcow2 safety check over a parsed header (its version, cluster size and header
    length are valid: :func:`parse_header` raises otherwise, and :func:`probe` turns that
    into :func:`unreadable`'s finding)."""
    out: list[Finding] = []
    backing = h.backing_file
    if backing is not None or int.from_bytes(head[8:16], "big"):
        out.append(finding(
            "qcow2-backing-file", Severity.ERROR,
            f"qcow2 image has a backing file {backing!r}: qemu would open that path on the "
            "host (CVE-2024-32498)",
            BACKING_FIX, [("backing file offset and size", 8, head[8:20])],
            backing_file=backing, backing_format=h.backing_format))
    incompat = h.incompatible_features
    data_file = h.data_file
    if incompat & INCOMPAT_DATA_FILE or data_file is not None:
        out.append(finding(
            "qcow2-data-file", Severity.ERROR,
            f"qcow2 image keeps its data in an external file {data_file!r}: qemu would open "
            "that path on the host (CVE-2024-32498)",
            "refuse the image: every qemu-img command that reads its data (convert, "
            "compare, dd) opens the external file it names; only its author, who has that "
            "file, can rebuild it",
            [("incompatible features", 72, head[72:80])], data_file=data_file))
    unknown = incompat & ~KNOWN_INCOMPATIBLE
    if unknown:
        out.append(finding(
            "qcow2-unknown-incompatible-features", Severity.ERROR,
            f"qcow2 image sets incompatible feature bits {unknown:#x} that no qemu knows",
            "refuse the image", [("incompatible features", 72, head[72:80])]))
    if incompat & INCOMPAT_EXTL2:
        out.append(finding(
            "qcow2-extended-l2", Severity.ERROR,
            "qcow2 image uses extended L2 entries (incompatible bit 4): Glance and Nova "
            "refuse it (oslo.utils' inspector knows bits 0-3 only), and qemu before 5.2 "
            "cannot open it",
            "convert it without subclusters (and without opening any backing file it names): "
            "qemu-img convert -O qcow2 -o extended_l2=off 'json:{\"driver\": "
            "\"qcow2\", \"backing\": null, \"file\": {\"driver\": \"file\", \"filename\": "
            "\"IMAGE\"}}' OUT.qcow2", [("incompatible features", 72,
                                                     head[72:80])]))
    if incompat & INCOMPAT_CORRUPT:
        out.append(finding("qcow2-corrupt", Severity.WARNING,
                           "qcow2 image is marked corrupt: qemu opens it read-only only",
                           "run qemu-img check -r all on a copy",
                           [("incompatible features", 72, head[72:80])]))
    crypt = h.crypt_method
    if crypt:
        legacy = crypt == 1
        out.append(finding(
            "encrypted", Severity.ERROR if legacy else Severity.WARNING,
            "qcow2 image is encrypted" + (" with the broken legacy AES method (qemu refuses "
                                          "to run it)" if legacy else " (LUKS)"),
            "decrypt it on a trusted host: qemu-img convert --object secret,... -O qcow2",
            [("crypt method", 32, head[32:36])], crypt_method=crypt))
    return out + _table_checks(h, head, file_size)


def _table_checks(h: Qcow2Header, head: bytes, file_size: int) -> list[Finding]:
    """The sizes and places of the L1, refcount and snapshot tables."""
    out: list[Finding] = []
    incompat = h.incompatible_features
    cluster_bits = h.cluster_bits
    if not 9 <= cluster_bits <= 21:
        out.append(_oob("cluster size (cluster_bits)", 20, head[20:24]))
        return out
    cluster = 1 << cluster_bits
    l1_size, l1_off = h.l1_size, h.l1_table_offset
    if l1_size * 8 > MAX_L1_BYTES:
        out.append(finding("absurd-table-size", Severity.ERROR,
                           f"qcow2 L1 table of {l1_size} entries ({l1_size * 8} bytes) is over "
                           f"qemu's {MAX_L1_BYTES >> 20} MiB limit", "refuse the image",
                           [("L1 size", 36, head[36:40])], l1_size=l1_size))
    elif l1_size and l1_off + l1_size * 8 > file_size:
        out.append(_oob("L1 table", 40, head[40:48], l1_table_offset=l1_off))
    entry = 16 if incompat & INCOMPAT_EXTL2 else 8
    per_l1 = cluster * (cluster // entry)
    size = h.size
    if -(-size // per_l1) > l1_size and l1_size * 8 <= MAX_L1_BYTES:
        out.append(_oob("L1 table (too small for the virtual size)", 36, head[36:40]))
    rt_off, rt_clusters = h.refcount_table_offset, h.refcount_table_clusters
    if rt_off is not None and rt_clusters is not None:
        if rt_clusters * cluster > MAX_REFTABLE_BYTES:
            out.append(finding("absurd-table-size", Severity.ERROR,
                               f"qcow2 refcount table of {rt_clusters} clusters is over qemu's "
                               "8 MiB limit", "refuse the image", [("refcount table clusters",
                                                                    56, head[56:60])]))
        elif rt_off + rt_clusters * cluster > file_size:
            out.append(_oob("refcount table", 48, head[48:60]))
    nb_snap = h.nb_snapshots
    if nb_snap is not None and nb_snap > MAX_SNAPSHOTS:
        out.append(finding("absurd-table-size", Severity.ERROR,
                           f"qcow2 claims {nb_snap} snapshots (qemu allows {MAX_SNAPSHOTS})",
                           "refuse the image", [("nb_snapshots", 60, head[60:64])]))
    elif nb_snap and h.snapshots_offset >= file_size:
        out.append(_oob("snapshot table", 64, head[64:72]))
    return out


def probe(src: Source) -> Match | None:
    """A qcow2 image (header parsed by the readers' parser), or None.

    A header qemu cannot read (a version other than 2 or 3, garbled fields) is still a qcow2
    file: it gives a match with no size and a blocking ``qcow2-bad-version`` /
    ``qcow2-bad-header`` finding. Only a file too short to hold the header is unreadable
    input (:class:`~diskkit.errors.ImageError`).
    """
    head = src.head
    if head[:4] != MAGIC:
        return None
    try:
        h = parse_header(head, src.size)
    except Qcow2HeaderError as exc:
        if exc.truncated:
            raise
        version = int.from_bytes(head[4:8], "big")
        return Match("qcow2", None, {"version": version, "header_error": exc.code},
                     (unreadable(exc, head),))
    incompat = h.incompatible_features
    details = {
        "version": h.version, "cluster_size": h.cluster_size,
        "backing_file": h.backing_file, "backing_format": h.backing_format,
        "data_file": h.data_file, "crypt_method": h.crypt_method,
        "incompatible_features": incompat, "extended_l2": bool(incompat & INCOMPAT_EXTL2),
        "compression_type": h.compression_type,
        "l1_size": h.l1_size, "l1_table_offset": h.l1_table_offset,
    }
    return Match("qcow2", h.size, details, tuple(checks(h, head, src.size)))
