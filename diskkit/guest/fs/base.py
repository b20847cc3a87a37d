"""Path resolution, walk and find for every driver: :class:`BaseFS`.

A driver supplies five primitives over its own opaque node objects (an inode number, a
library file entry, a pycdlib record): the root node, a name lookup in a directory node, the
children of a directory node, the lstat of a node and a read of a node's bytes. Everything a
user path goes through (symlinks, "..", bounds) is done here, once, for all of them:

- a path is split into components; "." is dropped; ".." pops one directory, never above the
  guest root;
- a symlink met as a middle component (or as the last one when following) is replaced by
  its target: an absolute target restarts at the guest root, a relative one continues from
  the directory holding the link; at most :data:`~diskkit.guest.fs.api.MAX_SYMLINKS` per
  lookup, then :class:`~diskkit.guest.fs.api.SymlinkLoop`;
- nothing is ever looked up on the host: nodes come only from the driver.
"""

from __future__ import annotations

import fnmatch
import posixpath
import stat as st
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from diskkit.guest.fs.api import (
    DEFAULT_READ_LIMIT,
    DEFAULT_WALK_DEPTH,
    DEFAULT_WALK_ENTRIES,
    MAX_COMPONENTS,
    MAX_DIR_ENTRIES,
    MAX_SYMLINKS,
    BoundExceeded,
    DirEntry,
    FileStat,
    NotADirectory,
    NotAFile,
    NotASymlink,
    NotFound,
    SymlinkLoop,
)

Node = Any


def kind_of_mode(mode: int) -> str:
    """FileStat.kind of an st_mode."""
    if st.S_ISREG(mode):
        return "file"
    if st.S_ISDIR(mode):
        return "dir"
    if st.S_ISLNK(mode):
        return "symlink"
    return "other"


def default_mode(kind: str) -> int:
    """An st_mode for filesystems without one (FAT, plain ISO 9660)."""
    return {"file": 0o100644, "dir": 0o040755, "symlink": 0o120777}.get(kind, 0o100000)


def _split(path: str) -> list[str]:
    parts = [p for p in path.replace("\0", "").split("/") if p and p != "."]
    if len(parts) > MAX_COMPONENTS:
        raise BoundExceeded(f"{path[:80]}...: more than {MAX_COMPONENTS} path components")
    return parts


class BaseFS:
    """The shared half of every :class:`~diskkit.guest.fs.api.GuestFS` implementation.

    Subclasses set ``fstype``, ``label``, ``uuid``, ``driver`` and implement ``_root``,
    ``_lookup``, ``_children``, ``_lstat``, ``_read`` (and ``_close`` if they hold
    something). ``_children`` must yield at most ``MAX_DIR_ENTRIES + 1`` pairs lazily: the
    caller stops and raises past the bound.
    """

    fstype: str = "unknown"
    label: str | None = None
    uuid: str | None = None
    driver: str = "unknown"
    #: Names compare case-insensitively (FAT, NTFS, ISO without Rock Ridge).
    case_insensitive: bool = False
    name: str = "filesystem"

    # ---- driver primitives -------------------------------------------------------------
    def _root(self) -> Node:
        raise NotImplementedError

    def _lookup(self, directory: Node, name: str) -> Node | None:
        """The child ``name`` of ``directory`` or None. The default scans ``_children``."""
        want = name.casefold() if self.case_insensitive else name
        for child_name, child in self._children(directory):
            have = child_name.casefold() if self.case_insensitive else child_name
            if have == want:
                return child
        return None

    def _children(self, directory: Node) -> Iterator[tuple[str, Node]]:
        raise NotImplementedError

    def _lstat(self, node: Node) -> FileStat:
        raise NotImplementedError

    def _read(self, node: Node, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def _close(self) -> None:
        """Release driver resources."""

    # ---- resolution ---------------------------------------------------------------------
    def _resolve(self, path: str, follow_last: bool = True) -> tuple[str, Node, FileStat]:
        """(canonical guest path, node, lstat of the node) of ``path``."""
        pending = _split(path)
        pending.reverse()  # a stack: the next component is at the end
        stack: list[tuple[str, Node]] = [("", self._root())]
        node_stat = self._lstat(stack[0][1])
        links = 0
        while pending:
            part = pending.pop()
            if part == "..":
                if len(stack) > 1:
                    stack.pop()
                node_stat = self._lstat(stack[-1][1])
                continue
            if not node_stat.is_dir:
                raise NotADirectory(f"{self._path(stack)}: not a directory (in {path})")
            child = self._lookup(stack[-1][1], part)
            if child is None:
                raise NotFound(f"{posixpath.join(self._path(stack), part)}: no such file "
                               f"or directory in {self.name}")
            child_stat = self._lstat(child)
            if child_stat.is_symlink and (pending or follow_last):
                links += 1
                if links > MAX_SYMLINKS:
                    raise SymlinkLoop(f"{path}: too many levels of symbolic links "
                                      f"(more than {MAX_SYMLINKS})")
                target = child_stat.target if child_stat.target is not None \
                    else self._readlink_node(child)
                if not target:
                    raise NotFound(f"{path}: empty symbolic link")
                new = _split(target)
                if target.startswith("/"):
                    del stack[1:]
                    node_stat = self._lstat(stack[0][1])
                pending.extend(reversed(new))
                if len(pending) > MAX_COMPONENTS:
                    raise BoundExceeded(f"{path}: more than {MAX_COMPONENTS} components")
                continue
            stack.append((part, child))
            node_stat = child_stat
        return self._path(stack), stack[-1][1], node_stat

    @staticmethod
    def _path(stack: list[tuple[str, Node]]) -> str:
        return "/" + "/".join(name for name, _ in stack[1:])

    def _readlink_node(self, node: Node) -> str:
        s = self._lstat(node)
        return s.target or ""

    # ---- the GuestFS API --------------------------------------------------------------
    def stat(self, path: str) -> FileStat:
        """Facts of ``path``, symlinks followed."""
        return self._resolve(path)[2]

    def lstat(self, path: str) -> FileStat:
        """Facts of ``path`` itself (a final symlink not followed)."""
        return self._resolve(path, follow_last=False)[2]

    def exists(self, path: str) -> bool:
        """True when ``path`` resolves."""
        try:
            self._resolve(path)
        except OSError:
            return False
        return True

    def realpath(self, path: str) -> str:
        """The canonical guest path of ``path``."""
        return self._resolve(path)[0]

    def _entries(self, node: Node, where: str) -> list[DirEntry]:
        out: list[DirEntry] = []
        for name, child in self._children(node):
            if name in (".", "..") or not name or "/" in name:
                continue
            if len(out) >= MAX_DIR_ENTRIES:
                raise BoundExceeded(f"{where}: more than {MAX_DIR_ENTRIES} directory entries")
            out.append(DirEntry(name, self._lstat(child)))
        out.sort(key=lambda e: e.name)
        return out

    def listdir(self, path: str) -> list[DirEntry]:
        """Entries of directory ``path``, sorted by name."""
        where, node, s = self._resolve(path)
        if not s.is_dir:
            raise NotADirectory(f"{where}: not a directory")
        return self._entries(node, where)

    def names(self, path: str) -> list[str]:
        """Names in directory ``path``, sorted."""
        return [e.name for e in self.listdir(path)]

    def _file(self, path: str) -> tuple[str, Node, FileStat]:
        where, node, s = self._resolve(path)
        if not s.is_file:
            raise NotAFile(f"{where}: not a regular file ({s.kind})")
        return where, node, s

    def read(self, path: str, limit: int = DEFAULT_READ_LIMIT, offset: int = 0) -> bytes:
        """Up to ``limit`` bytes of regular file ``path`` from ``offset``."""
        _where, node, s = self._file(path)
        if offset < 0 or limit < 0:
            raise ValueError("negative offset or limit")
        length = max(0, min(limit, s.size - offset))
        if length == 0:
            return b""
        return self._read(node, offset, length)

    def iter_read(self, path: str, offset: int = 0, limit: int | None = None,
                  chunk: int = 1 << 20) -> Iterator[bytes]:
        """Regular file ``path`` in chunks of at most ``chunk`` bytes."""
        _where, node, s = self._file(path)
        end = s.size if limit is None else min(s.size, offset + max(0, limit))
        pos = max(0, offset)
        while pos < end:
            n = min(chunk, end - pos)
            data = self._read(node, pos, n)
            if not data:
                return
            yield data
            pos += len(data)

    def readlink(self, path: str) -> str:
        """Target of symlink ``path`` as stored."""
        where, node, s = self._resolve(path, follow_last=False)
        if not s.is_symlink:
            raise NotASymlink(f"{where}: not a symbolic link")
        return s.target if s.target is not None else self._readlink_node(node)

    def walk(self, top: str = "/", *, max_depth: int = DEFAULT_WALK_DEPTH,
             max_entries: int = DEFAULT_WALK_ENTRIES) -> Iterator[tuple[str, list[DirEntry]]]:
        """(dirpath, entries) top-down; never follows symlinks; bounded."""
        where, node, s = self._resolve(top)
        if not s.is_dir:
            raise NotADirectory(f"{where}: not a directory")
        seen = 0
        todo: list[tuple[str, Node, int]] = [(where, node, 0)]
        while todo:
            dirpath, dnode, depth = todo.pop()
            entries = self._entries(dnode, dirpath)
            seen += len(entries)
            if seen > max_entries:
                raise BoundExceeded(f"{top}: more than {max_entries} entries below it")
            yield dirpath, entries
            if depth >= max_depth:
                continue
            subdirs = [e for e in entries if e.kind == "dir"]
            for e in reversed(subdirs):
                child = self._lookup(dnode, e.name)
                if child is not None:
                    todo.append((posixpath.join(dirpath, e.name), child, depth + 1))

    def find(self, top: str = "/", *, name: str | None = None, kind: str | None = None,
             max_depth: int = DEFAULT_WALK_DEPTH, max_results: int = 10_000,
             max_entries: int = DEFAULT_WALK_ENTRIES) -> Iterator[tuple[str, FileStat]]:
        """Paths below ``top`` matching the glob ``name`` and ``kind``; at most
        ``max_results``."""
        found = 0
        for dirpath, entries in self.walk(top, max_depth=max_depth, max_entries=max_entries):
            for e in entries:
                if kind is not None and e.kind != kind:
                    continue
                if name is not None and not fnmatch.fnmatchcase(e.name, name):
                    continue
                yield posixpath.join(dirpath, e.name), e.stat
                found += 1
                if found >= max_results:
                    return

    def close(self) -> None:
        """Release driver resources (never the reader)."""
        self._close()

    def __enter__(self) -> BaseFS:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
