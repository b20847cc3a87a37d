"""Guest filesystems read through any Reader, with no root and no mount.

``open_filesystem(reader, fstype)`` gives a :class:`~diskkit.guest.fs.api.GuestFS` over a
partition, an LV or a whole disk of any reader (file, qcow2, qemu-nbd, nbd://, rbd:):

- ext2/3/4 and FAT12/16/32: diskkit's own bounded readers (:mod:`diskkit.guest.fs.native`
  over :mod:`diskkit.boot.ext` / :mod:`diskkit.boot.fat`, which boot inspection shares);
- XFS and NTFS: libyal's bindings (:mod:`diskkit.guest.fs.libyal`);
- ISO 9660 (Rock Ridge, Joliet) and UDF bridge images: pycdlib (:mod:`diskkit.guest.fs.iso`);
- anything else (btrfs, pure UDF, ...) raises HostError ``fs-unsupported`` here; the service
  layer (:mod:`diskkit.guest.fs.service`) reads those through the libguestfs appliance
  (:mod:`diskkit.guest.fs.appliance`).

docs/guest-fs.md says why each parser was chosen.
"""

from __future__ import annotations

from typing import Any

from diskkit.errors import HostError, ImageError, UserError
from diskkit.guest.fs.api import (
    DEFAULT_READ_LIMIT,
    MAX_DIR_ENTRIES,
    MAX_SYMLINKS,
    BoundExceeded,
    DirEntry,
    FileStat,
    GuestFS,
    NotADirectory,
    NotAFile,
    NotASymlink,
    NotFound,
    SymlinkLoop,
)
from diskkit.readers.base import Reader

__all__ = [
    "DEFAULT_READ_LIMIT", "IN_PROCESS", "MAX_DIR_ENTRIES", "MAX_SYMLINKS", "BoundExceeded",
    "DirEntry", "FileStat", "GuestFS", "NotADirectory", "NotAFile", "NotASymlink", "NotFound",
    "SymlinkLoop", "location_reader", "open_filesystem", "open_location", "readable_in_process",
]

#: fstypes read in-process (no root, no appliance).
IN_PROCESS = ("ext2", "ext3", "ext4", "xfs", "vfat", "ntfs", "iso9660", "udf")


def readable_in_process(fstype: str | None) -> bool:
    """True when :func:`open_filesystem` reads ``fstype`` itself (no appliance)."""
    return fstype in IN_PROCESS


def open_filesystem(reader: Reader, fstype: str | None = None, *, label: str | None = None,
                    uuid: str | None = None) -> GuestFS:
    """The filesystem on ``reader`` as a :class:`GuestFS` (see the module docstring).

    ``fstype`` is blkid's TYPE as :mod:`diskkit.layout.filesystems` gives it; None probes.
    ``label``/``uuid`` default to what the probe reads (blkid's rules). The caller closes the
    result; that never closes ``reader``.
    """
    from diskkit.layout.filesystems import probe

    found = probe(reader)
    if fstype is None:
        if found is None:
            raise ImageError(f"{reader.name}: no filesystem diskkit recognises",
                             code="no-filesystem")
        fstype = found.type
    if found is not None and found.type == fstype:
        label = label if label is not None else found.label
        uuid = uuid if uuid is not None else found.uuid
    if fstype in ("ext2", "ext3", "ext4"):
        from diskkit.guest.fs.native import ExtGuestFS

        return ExtGuestFS(reader, fstype, label=label, uuid=uuid)
    if fstype == "vfat":
        from diskkit.guest.fs.native import FatGuestFS

        return FatGuestFS(reader, fstype, label=label, uuid=uuid)
    if fstype in ("xfs", "ntfs"):
        from diskkit.guest.fs.libyal import LibyalFS

        return LibyalFS(reader, fstype, label=label, uuid=uuid)
    if fstype in ("iso9660", "udf"):
        from diskkit.guest.fs.iso import IsoFS
        from diskkit.layout.filesystems import probe_iso9660

        if fstype == "udf" and probe_iso9660(reader) is None:
            raise HostError(f"{reader.name}: a pure UDF volume (no ISO 9660 bridge) is not "
                            "read in-process", code="fs-unsupported",
                            hint="the libguestfs appliance reads it (diskkit cat/ls do so "
                                 "automatically)")

        return IsoFS(reader, fstype, label=label, uuid=uuid)
    raise HostError(f"{reader.name}: diskkit reads no {fstype} filesystem in-process",
                    code="fs-unsupported",
                    hint="the libguestfs appliance reads it (diskkit cat/ls do so automatically)")


def location_reader(disk: Reader, layout: Any, location: str) -> Reader:
    """The reader of a layout location ("disk", "partition 2", "lv vg/root") of ``disk``
    (``layout`` is :func:`diskkit.layout.inspect_layout`'s answer for it)."""
    from diskkit.layout.inspect import lv_reader, partition_reader

    if location == "disk":
        return disk
    if location.startswith("partition "):
        number = location.split()[1]
        part = layout.partition(int(number)) if number.isdigit() else None
        if part is None:
            raise UserError(f"{location} does not exist", code="no-such-partition")
        return partition_reader(disk, part)
    if location.startswith("lv "):
        return lv_reader(disk, layout, location[3:])
    raise UserError(f"cannot read {location!r}", code="bad-location")


def open_location(disk: Reader, layout: Any, location: str) -> GuestFS:
    """The filesystem the layout found at ``location`` of ``disk``, with its type, label and
    UUID as the layout probed them (ImageError when the layout found none there)."""
    found = next((f for f in layout.filesystems if f.location == location), None)
    if found is None:
        raise ImageError(f"{location}: no filesystem there", code="no-filesystem")
    return open_filesystem(location_reader(disk, layout, location), found.type,
                           label=found.label, uuid=found.uuid)
