"""TreeFS: a host directory read as a guest root (an unpacked image, a mounted filesystem).

It is a :class:`~diskkit.guest.fs.api.GuestFS`: path resolution (symlinks, "..", bounds) is
:class:`~diskkit.guest.fs.base.BaseFS`'s, so an absolute symbolic link restarts at the tree's
root and ".." stops at it. A node is the tuple of real directory names leading to it; every
host access opens those names one by one, relative to the directory already reached, with
``O_NOFOLLOW``: no host path outside the tree is ever opened, even if the tree changes
underneath (a component replaced by a symlink makes the open fail instead).
"""

from __future__ import annotations

import os
import stat as st
from collections.abc import Iterator

from diskkit.guest.fs.api import FileStat, NotAFile
from diskkit.guest.fs.base import BaseFS, kind_of_mode

_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Node = tuple[str, ...]


class TreeFS(BaseFS):
    """A host directory as a GuestFS, confined to that directory."""

    driver = "host directory"

    def __init__(self, root: str | os.PathLike[str], *, fstype: str = "tree",
                 label: str | None = None, uuid: str | None = None) -> None:
        self.root_path = os.fspath(root)
        self.name = self.root_path
        self.fstype = fstype
        self.label = label
        self.uuid = uuid
        self._root_fd = os.open(self.root_path, _DIR & ~os.O_NOFOLLOW)

    def _close(self) -> None:
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def _dirfd(self, node: Node) -> int:
        """An O_PATH descriptor of directory ``node`` (the caller closes it)."""
        fd = os.dup(self._root_fd)
        try:
            for name in node:
                nfd = os.open(name, _DIR, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _root(self) -> Node:
        return ()

    def _lookup(self, directory: Node, name: str) -> Node | None:
        fd = self._dirfd(directory)
        try:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)
        return (*directory, name)

    def _children(self, directory: Node) -> Iterator[tuple[str, Node]]:
        pfd = self._dirfd(directory)
        try:
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        finally:
            os.close(pfd)
        try:
            names = os.listdir(fd)
        finally:
            os.close(fd)
        for name in names:
            yield name, (*directory, name)

    def _lstat(self, node: Node) -> FileStat:
        if not node:
            s = os.stat(self._root_fd)
            return FileStat("dir", s.st_size, s.st_mode, s.st_uid, s.st_gid, s.st_mtime,
                            None, s.st_ino)
        fd = self._dirfd(node[:-1])
        try:
            s = os.stat(node[-1], dir_fd=fd, follow_symlinks=False)
            target = os.readlink(node[-1], dir_fd=fd) if st.S_ISLNK(s.st_mode) else None
        finally:
            os.close(fd)
        return FileStat(kind_of_mode(s.st_mode), s.st_size, s.st_mode, s.st_uid, s.st_gid,
                        s.st_mtime, target, s.st_ino)

    def _read(self, node: Node, offset: int, length: int) -> bytes:
        pfd = self._dirfd(node[:-1])
        try:
            fd = os.open(node[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=pfd)
        finally:
            os.close(pfd)
        try:
            if not st.S_ISREG(os.fstat(fd).st_mode):
                raise NotAFile(f"/{'/'.join(node)}: not a regular file")
            chunks = []
            while length > 0:
                b = os.pread(fd, min(length, 1 << 20), offset)
                if not b:
                    break
                chunks.append(b)
                offset += len(b)
                length -= len(b)
            return b"".join(chunks)
        finally:
            os.close(fd)
