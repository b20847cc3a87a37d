"""QEMU qcow version 1 (the format before qcow2): qemu's "qcow" driver.

Header (qemu block/qcow.c ``QCowHeader``, big-endian, 48 bytes): :data:`LAYOUT`. It shares
the magic ``QFI\\xfb`` with qcow2; version 1 tells them apart. It can name a backing file and
use qemu's old, broken AES encryption. oslo.utils' inspector calls it qcow2 and refuses it
("Unsupported qcow2 version").
"""

from __future__ import annotations

from dataclasses import dataclass

from diskkit.findings import Finding, Severity
from diskkit.formats.base import Match, Source, finding
from diskkit.formats.fields import Header, Layout
from diskkit.formats.legacy import refused

MAGIC = b"QFI\xfb"
VERSION = 1


@dataclass(frozen=True, kw_only=True)
class QcowHeader(Header):
    """A qcow (v1) header, as stored."""

    LAYOUT = Layout(
        ">", ("magic", "4s"), ("version", "I"), ("backing_file_offset", "Q"),
        ("backing_file_size", "I"), ("mtime", "I"), ("size", "Q"), ("cluster_bits", "B"),
        ("l2_bits", "B"), ("padding", "H"), ("crypt_method", "I"), ("l1_table_offset", "Q"))
    magic: bytes
    version: int
    backing_file_offset: int
    backing_file_size: int
    mtime: int
    size: int
    cluster_bits: int
    l2_bits: int
    padding: int
    crypt_method: int
    l1_table_offset: int


def is_qcow1(head: bytes) -> bool:
    """True when ``head`` starts with a qcow header of version 1."""
    return head[:4] == MAGIC and head[4:8] == VERSION.to_bytes(4, "big")


def probe(src: Source) -> Match | None:
    """A qcow v1 image, or None."""
    if not is_qcow1(src.head):
        return None
    hdr = QcowHeader.parse(src.head, 0, what="qcow header")
    findings: list[Finding] = [refused(
        "qcow1-image", "qcow", "a qcow version 1 image",
        "Glance takes it for qcow2 and refuses it: unsupported qcow2 version",
        [hdr.evidence("magic, version", "magic", "version")])]
    if hdr.backing_file_offset:
        findings.append(finding(
            "qcow2-backing-file", Severity.ERROR,
            "qcow image names a backing file: qemu would open another file",
            "refuse it; to keep only its own data, convert it without opening the backing "
            "file: qemu-img convert -O qcow2 'json:{\"driver\": \"qcow\", \"backing\": "
            "null, \"file\": {\"driver\": \"file\", \"filename\": \"IMAGE\"}}' OUT.qcow2 "
            "(blocks the backing file held read as zeros)",
            [hdr.evidence("backing file offset", "backing_file_offset", "backing_file_size")]))
    if hdr.crypt_method:
        findings.append(finding(
            "encrypted", Severity.ERROR,
            "qcow image uses qemu's legacy AES encryption (broken, and refused by qemu for "
            "reading since 2.9 without the legacy option)", "decrypt and convert it on a "
            "trusted host", [hdr.evidence("crypt method", "crypt_method")]))
    details = {"version": 1, "cluster_size": 1 << hdr.cluster_bits if hdr.cluster_bits < 32
               else None, "qemu_format": "qcow"}
    return Match("qcow", hdr.size, details, tuple(findings))
