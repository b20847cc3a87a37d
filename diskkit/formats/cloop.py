"""cloop (compressed loop, Knoppix) images: qemu's "cloop" driver (read-only).

Layout (qemu block/cloop.c): a 128-byte shell preamble starting with :data:`MAGIC`, then
(big-endian) the block size and the number of blocks (:class:`CloopHeader`), then
n_blocks + 1 u64 offsets of zlib-compressed blocks. qemu: the block size is a non-zero
multiple of 512 of at most 64 MiB; virtual size = n_blocks * block_size.
"""

from __future__ import annotations

from dataclasses import dataclass

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, finding
from diskkit.formats.fields import Header, Layout
from diskkit.formats.legacy import refused

MAGIC = (b"#!/bin/sh\n#V2.0 Format\n"
         b"modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n")
MAX_BLOCK_SIZE = 64 << 20


@dataclass(frozen=True, kw_only=True)
class CloopHeader(Header):
    """The preamble and the two numbers after it."""

    LAYOUT = Layout(">", ("preamble", "128s"), ("block_size", "I"), ("n_blocks", "I"))
    preamble: bytes
    block_size: int
    n_blocks: int


def probe(src: Source) -> Match | None:
    """A cloop image, or None."""
    if not src.head.startswith(MAGIC):
        return None
    hdr = CloopHeader.parse(src.head, 0, what="cloop header")
    findings: list[Finding] = [refused(
        "cloop-image", "cloop", "a cloop compressed image",
        "qemu opens it read-only and nothing in OpenStack accepts it",
        [hdr.evidence("preamble", "preamble")])]
    bs = hdr.block_size
    if bs == 0 or bs % 512 or bs > MAX_BLOCK_SIZE:
        findings.append(finding(
            "header-field-out-of-bounds", Severity.ERROR,
            f"cloop block size {bs} is not a non-zero multiple of 512 up to 64 MiB (qemu "
            "refuses it)", "refuse the image", [hdr.evidence("block size", "block_size")]))
    details = {"block_size": bs, "n_blocks": hdr.n_blocks, "qemu_format": "cloop"}
    return Match("cloop", hdr.n_blocks * bs, details, tuple(findings))
