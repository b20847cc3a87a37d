"""Parallels (and Virtuozzo ploop) images: qemu's "parallels" driver.

Header (qemu block/parallels.c ``ParallelsHeader``, little-endian, packed): :data:`LAYOUT`.
Magic ``WithoutFreeSpace`` (version 1 images) or ``WithouFreSpacExt`` (the extended format,
which ploop uses), version 2. qemu: virtual size = nb_sectors * 512, only the low 32 bits
of nb_sectors for the old magic; ``tracks`` is the cluster size in sectors.
"""

from __future__ import annotations

from dataclasses import dataclass

from diskkit.formats.base import Match, Source
from diskkit.formats.fields import Header, Layout
from diskkit.formats.legacy import refused

MAGIC_V1 = b"WithoutFreeSpace"
MAGIC_EXT = b"WithouFreSpacExt"
HEADER_VERSION = 2

LAYOUT = Layout(
    "<", ("magic", "16s"), ("version", "I"), ("heads", "I"), ("cylinders", "I"),
    ("tracks", "I"), ("bat_entries", "I"), ("nb_sectors", "Q"), ("inuse", "I"),
    ("data_off", "I"), ("flags", "I"), ("ext_off", "Q"))


@dataclass(frozen=True, kw_only=True)
class ParallelsHeader(Header):
    """A Parallels image header, as stored."""

    LAYOUT = LAYOUT
    magic: bytes
    version: int
    heads: int
    cylinders: int
    tracks: int
    bat_entries: int
    nb_sectors: int
    inuse: int
    data_off: int
    flags: int
    ext_off: int

    @property
    def virtual_size(self) -> int:
        """Guest size as qemu computes it."""
        sectors = self.nb_sectors if self.magic == MAGIC_EXT else self.nb_sectors & 0xFFFFFFFF
        return sectors * 512


def probe(src: Source) -> Match | None:
    """A Parallels image (qemu's probe: either magic and version 2), or None."""
    if src.head[:16] not in (MAGIC_V1, MAGIC_EXT):
        return None
    hdr = ParallelsHeader.parse(src.head, 0, what="Parallels header")
    if hdr.version != HEADER_VERSION:
        return None
    sub = "ploop/extended" if hdr.magic == MAGIC_EXT else "v1"
    details = {"subformat": sub, "cluster_size": hdr.tracks * 512,
               "bat_entries": hdr.bat_entries, "qemu_format": "parallels"}
    finding = refused("parallels-image", "parallels", f"a Parallels ({sub}) image",
                      "Glance's ploop disk_format is for Virtuozzo hosts only; KVM/libvirt "
                      "Nova cannot boot it", [hdr.evidence("magic", "magic")])
    return Match("parallels", hdr.virtual_size, details, (finding,))
