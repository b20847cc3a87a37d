"""QED: recognised so it can be refused (no longer maintained; OpenStack bans it).

Header (qemu docs/interop/qed_spec.txt, little-endian): magic ``QED\\0`` @0, cluster size
u32 @4, table size u32 @8, header size u32 @12, features u64 @16 (bit 0: backing file),
l1 table offset u64 @40, image size u64 @48, backing file name offset u32 @56, size u32 @60.
"""

from __future__ import annotations

from diskkit.findings import Severity
from diskkit.formats.base import Match, Source, finding, unpack

MAGIC = b"QED\0"
MAX_NAME = 1024


def probe(src: Source) -> Match | None:
    """A QED image, or None."""
    if src.head[:4] != MAGIC:
        return None
    (cluster, table, _hsize, features, _compat, _auto, l1_off, size, name_off,
     name_size) = unpack("<IIIQQQQQII", src.head, 4, "QED header")
    details: dict = {"cluster_size": cluster, "table_size": table, "features": features,
                     "l1_table_offset": l1_off}
    findings = [finding(
        "qed-unsupported", Severity.ERROR,
        "QED images are no longer maintained and are refused by OpenStack",
        "convert it to qcow2 without opening any backing file it names: qemu-img convert "
        "-O qcow2 'json:{\"driver\": \"qed\", \"backing\": null, \"file\": {\"driver\": "
        "\"file\", \"filename\": \"IMAGE.qed\"}}' OUT.qcow2",
        [("QED magic", 0, MAGIC)])]
    if features & 1:
        name = None
        if name_size <= MAX_NAME and name_off + name_size <= len(src.head):
            name = src.head[name_off:name_off + name_size].decode("utf-8", "replace")
        details["backing_file"] = name
        findings.append(finding(
            "qed-backing-file", Severity.ERROR,
            f"QED image has a backing file ({name!r}): qemu would open it on the host",
            "refuse the image", [("features bit 0", 16, src.head[16:24])], backing_file=name))
    return Match("qed", size, details, tuple(findings))
