"""ext2/3/4 and FAT12/16/32 through diskkit's own bounded readers (:mod:`diskkit.boot.ext`,
:mod:`diskkit.boot.fat`), which boot inspection also uses for grub.cfg and the ESP.

Chosen over libfsext/libfsfat after measuring both on the crafted images of issue 11
(docs/guest-fs.md): libfsext reads a file's whole extent tree when the entry is created (a
depth-3 fan-out tree took 911 MB just to list the directory holding it); libfsfat refused a
well-formed FAT32 root. Ours stop at a node budget, read each block once and never read more
of a FAT than a chain needs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from diskkit.boot.ext import ROOT_INODE, ExtFs, ExtInode
from diskkit.boot.fat import FatEntry, FatFs
from diskkit.guest.fs.api import MAX_DIR_ENTRIES, BoundExceeded, FileStat
from diskkit.guest.fs.base import BaseFS, default_mode, kind_of_mode
from diskkit.readers.base import Reader

#: Directory bytes read at most (ext): a directory beyond it is a bound, not a listing.
_MAX_DIR_BYTES = 16 << 20


class ExtGuestFS(BaseFS):
    """An ext2/3/4 filesystem (:class:`diskkit.boot.ext.ExtFs`)."""

    driver = "diskkit ext"

    def __init__(self, reader: Reader, fstype: str = "ext4", *, label: str | None = None,
                 uuid: str | None = None) -> None:
        self.fs = ExtFs(reader)
        self.fstype, self.label, self.uuid, self.name = fstype, label, uuid, reader.name
        self._dirs: dict[int, dict[str, int]] = {}

    def _root(self) -> ExtInode:
        return self.fs.inode(ROOT_INODE)

    def _index(self, directory: ExtInode) -> dict[str, int]:
        got = self._dirs.get(directory.number)
        if got is None:
            if directory.size > _MAX_DIR_BYTES:
                raise BoundExceeded(f"{self.name}: a directory of {directory.size} bytes "
                                    f"(bound {_MAX_DIR_BYTES})")
            got = self.fs.listdir(directory)
            got.pop(".", None)
            got.pop("..", None)
            if len(got) > MAX_DIR_ENTRIES:
                raise BoundExceeded(f"{self.name}: a directory with more than "
                                    f"{MAX_DIR_ENTRIES} entries")
            if len(self._dirs) > 256:
                self._dirs.clear()
            self._dirs[directory.number] = got
        return got

    def _lookup(self, directory: ExtInode, name: str) -> ExtInode | None:
        num = self._index(directory).get(name)
        return self.fs.inode(num) if num is not None else None

    def _children(self, directory: ExtInode) -> Iterator[tuple[str, ExtInode]]:
        for name, num in self._index(directory).items():
            yield name, self.fs.inode(num)

    def _lstat(self, node: ExtInode) -> FileStat:
        kind = kind_of_mode(node.mode)
        target = self.fs.readlink(node) if kind == "symlink" else None
        return FileStat(kind, node.size, node.mode, node.uid, node.gid, float(node.mtime),
                        target, node.number)

    def _read(self, node: ExtInode, offset: int, length: int) -> bytes:
        return self.fs.read_range(node, offset, length)


class FatGuestFS(BaseFS):
    """A FAT12/16/32 filesystem (:class:`diskkit.boot.fat.FatFs`); names compare
    case-insensitively, as on FAT."""

    driver = "diskkit fat"
    case_insensitive = True

    def __init__(self, reader: Reader, fstype: str = "vfat", *, label: str | None = None,
                 uuid: str | None = None) -> None:
        self.fs = FatFs(reader)
        self.fstype, self.label, self.uuid, self.name = fstype, label, uuid, reader.name

    def _root(self) -> FatEntry:
        return FatEntry("", "", True, 0, 0)

    def _children(self, directory: FatEntry) -> Iterator[tuple[str, FatEntry]]:
        for e in self.fs.listdir(directory.cluster):
            yield e.name, e

    def _lstat(self, node: FatEntry) -> FileStat:
        kind = "dir" if node.is_dir else "file"
        return FileStat(kind, 0 if node.is_dir else node.size, default_mode(kind), None, None,
                        _fat_time(node.mtime), None, node.cluster or None)

    def _read(self, node: FatEntry, offset: int, length: int) -> bytes:
        return self.fs.read_range(node, offset, length)


def _fat_time(raw: int) -> float | None:
    """A FAT date/time pair (date << 16 | time, local time taken as UTC) as epoch seconds."""
    date, time = raw >> 16, raw & 0xFFFF
    try:
        return dt.datetime(1980 + (date >> 9), (date >> 5) & 0xF, date & 0x1F, time >> 11,
                           (time >> 5) & 0x3F, min(59, (time & 0x1F) * 2),
                           tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None

