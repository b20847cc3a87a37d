"""XFS, NTFS (and ext, FAT when chosen) through libyal's Python bindings (libfsxfs-python,
libfsntfs-python, libfsext-python, libfsfat-python on PyPI).

The libraries are read-only, written for hostile forensic images and fuzzed continuously
(OSS-Fuzz); they read through a Python file object, here :class:`ReaderFile` over any diskkit
Reader. Every exception they raise on bad bytes becomes an ImageError. Names are looked up by
scanning a directory's entries once (libfsext's lookup by name fails on some directories),
with the entry count checked against the bound before anything is listed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import os
from collections.abc import Iterator
from typing import Any

from diskkit.errors import HostError, ImageError
from diskkit.guest.fs.api import MAX_DIR_ENTRIES, MAX_LINK_TARGET, BoundExceeded, FileStat
from diskkit.guest.fs.base import BaseFS, default_mode, kind_of_mode
from diskkit.readers.base import Reader

#: fstype -> (binding module, driver name).
MODULES = {"ext2": "pyfsext", "ext3": "pyfsext", "ext4": "pyfsext", "xfs": "pyfsxfs",
           "vfat": "pyfsfat", "ntfs": "pyfsntfs"}
_PYPI = {"pyfsext": "libfsext-python", "pyfsxfs": "libfsxfs-python",
         "pyfsfat": "libfsfat-python", "pyfsntfs": "libfsntfs-python"}
#: NTFS metadata files ($MFT, $Bitmap, ... MFT entries 0-15 but the root, 5): not listed,
#: as ntfs-3g does not list them.
_NTFS_META = set(range(16)) - {5}
_FILE_ATTRIBUTE_DIRECTORY = 0x10
_FILE_ATTRIBUTE_REPARSE_POINT = 0x400
_FILE_ATTRIBUTE_SYSTEM = 0x4
_INTERIX_LINK = b"IntxLNK\x01"
#: Directory entries cached for name lookups (directories, not entries).
_CACHE_DIRS = 256


class ReaderFile:
    """A read-only Python file object over a Reader (read, seek, tell, get_size)."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        """Bytes from the current position (``size`` < 0: to the end)."""
        if size is None or size < 0:
            size = self.reader.size - self.pos
        data = self.reader.read(self.pos, size) if self.pos < self.reader.size else b""
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position (SEEK_SET, SEEK_CUR, SEEK_END)."""
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.reader.size}[whence]
        if base + offset < 0:
            raise OSError("seek before the start")
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        """The current position."""
        return self.pos

    def get_size(self) -> int:
        """The reader's size."""
        return self.reader.size

    def close(self) -> None:
        """Nothing: the reader belongs to the caller."""


def load(fstype: str) -> Any:
    """The binding module for ``fstype`` (HostError when it is not installed)."""
    name = MODULES[fstype]
    try:
        return importlib.import_module(name)
    except ImportError:
        raise HostError(f"the {name} module is missing", code="binding-missing",
                        hint=f"pip install {_PYPI[name]} (it builds with gcc and python3-dev)") \
            from None


class _Node:
    """A libyal file entry with the key its directory cache uses."""

    __slots__ = ("entry", "key")

    def __init__(self, entry: Any, key: Any) -> None:
        self.entry = entry
        self.key = key


class LibyalFS(BaseFS):
    """One filesystem read by a libyal binding."""

    def __init__(self, reader: Reader, fstype: str, *, label: str | None = None,
                 uuid: str | None = None) -> None:
        self.mod = load(fstype)
        self.fstype = fstype
        self.label, self.uuid = label, uuid
        self.driver = MODULES[fstype].replace("py", "lib", 1)
        self.name = reader.name
        self.case_insensitive = fstype in ("vfat", "ntfs")
        self._cache: dict[Any, dict[str, int]] = {}
        try:
            self.vol = self.mod.volume()
            self.vol.open_file_object(ReaderFile(reader))
            self._root_node = _Node(self.vol.get_root_directory(), ("root",))
        except (OSError, ValueError, TypeError, MemoryError, OverflowError) as exc:
            raise ImageError(f"{reader.name}: cannot read the {fstype} filesystem: "
                             f"{_short(exc)}", code="bad-filesystem") from None

    def _err(self, exc: BaseException) -> ImageError:
        return ImageError(f"{self.name}: {self.fstype}: {_short(exc)}", code="bad-filesystem")

    def _key(self, entry: Any) -> Any:
        if self.fstype == "vfat":
            return entry.identifier
        if self.fstype == "ntfs":
            return entry.file_reference
        return entry.inode_number

    def _root(self) -> _Node:
        return self._root_node

    def _count(self, node: _Node) -> int:
        try:
            n = int(node.entry.number_of_sub_file_entries or 0)
        except (OSError, ValueError, TypeError, MemoryError, OverflowError) as exc:
            raise self._err(exc) from None
        if n > MAX_DIR_ENTRIES + 64:  # (NTFS counts its hidden metadata files too)
            raise BoundExceeded(f"{self.name}: a directory claims {n} entries "
                                f"(bound {MAX_DIR_ENTRIES})")
        return n

    def _child(self, node: _Node, i: int) -> tuple[str, _Node] | None:
        try:
            e = node.entry.get_sub_file_entry(i)
            if self.fstype == "ntfs" and (e.file_reference & 0xFFFFFFFFFFFF) in _NTFS_META:
                return None
            name = e.name
            return (name or "", _Node(e, self._key(e)))
        except (OSError, ValueError, TypeError, MemoryError, OverflowError) as exc:
            raise self._err(exc) from None

    def _children(self, directory: _Node) -> Iterator[tuple[str, _Node]]:
        for i in range(self._count(directory)):
            got = self._child(directory, i)
            if got is not None:
                yield got

    def _lookup(self, directory: _Node, name: str) -> _Node | None:
        index = self._cache.get(directory.key)
        if index is None:
            index = {}
            for i in range(self._count(directory)):
                got = self._child(directory, i)
                if got is None:
                    continue
                k = got[0].casefold() if self.case_insensitive else got[0]
                index.setdefault(k, i)
            if len(self._cache) >= _CACHE_DIRS:
                self._cache.clear()
            self._cache[directory.key] = index
        at = index.get(name.casefold() if self.case_insensitive else name)
        if at is None:
            return None
        got = self._child(directory, at)
        return got[1] if got else None

    def _lstat(self, node: _Node) -> FileStat:
        e = node.entry
        try:
            if self.fstype in ("vfat", "ntfs"):
                got = self._lstat_windows(e)
                if node is self._root_node and not got.is_dir:  # FAT's root has no entry
                    return FileStat("dir", 0, default_mode("dir"), None, None, got.mtime)
                return got
            mode = int(e.file_mode)
            kind = kind_of_mode(mode)
            target = None
            if kind == "symlink":
                target = (e.symbolic_link_target or "")[:MAX_LINK_TARGET]
            ns = e.get_modification_time_as_integer()
            return FileStat(kind, int(e.size or 0), mode, int(e.owner_identifier),
                            int(e.group_identifier), ns / 1e9 if ns is not None else None,
                            target, int(e.inode_number))
        except (OSError, ValueError, TypeError, MemoryError, OverflowError) as exc:
            raise self._err(exc) from None

    def _lstat_windows(self, e: Any) -> FileStat:
        flags = int(e.file_attribute_flags or 0)
        target = None
        if self.fstype == "ntfs":
            is_dir = bool(flags & _FILE_ATTRIBUTE_DIRECTORY) or bool(
                e.has_directory_entries_index())
            if flags & _FILE_ATTRIBUTE_REPARSE_POINT:
                target = e.symbolic_link_target
            elif flags & _FILE_ATTRIBUTE_SYSTEM and not is_dir and \
                    8 < int(e.size or 0) <= 8 + 2 * MAX_LINK_TARGET:
                # An Interix symlink, as ntfs-3g writes them: "IntxLNK\1" + UTF-16LE target.
                head = bytes(e.read_buffer_at_offset(int(e.size), 0))
                if head.startswith(_INTERIX_LINK):
                    target = head[8:].decode("utf-16-le", "replace")
            inode: int | None = int(e.file_reference) & 0xFFFFFFFFFFFF
        else:
            is_dir = bool(flags & _FILE_ATTRIBUTE_DIRECTORY)
            inode = None
        kind = "symlink" if target else "dir" if is_dir else "file"
        if target:
            target = target.replace("\\", "/")[:MAX_LINK_TARGET]
        mtime = e.modification_time
        ts = None
        if isinstance(mtime, dt.datetime):
            if mtime.tzinfo is None:
                mtime = mtime.replace(tzinfo=dt.UTC)
            ts = mtime.timestamp()
        size = 0 if kind == "dir" else len(target.encode()) if target else int(e.size or 0)
        return FileStat(kind, size, default_mode(kind), None, None, ts, target, inode)

    def _read(self, node: _Node, offset: int, length: int) -> bytes:
        try:
            data = node.entry.read_buffer_at_offset(length, offset)
        except (OSError, ValueError, TypeError, MemoryError, OverflowError) as exc:
            raise self._err(exc) from None
        return bytes(data)

    def _close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.vol.close()


def _short(exc: BaseException) -> str:
    """The first clause of a libyal error (they chain every level's message)."""
    text = str(exc).strip() or type(exc).__name__
    return text.split(". ", 1)[0][:200]
