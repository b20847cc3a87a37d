"""A :class:`~diskkit.guest.fs.api.GuestFS` over a guest tree mounted on the host (the
fallback of ``stat``/``find`` when a filesystem is read only through a kernel mount).

Resolution is :class:`~diskkit.guest.fs.base.BaseFS`'s: every node handed to the host is a
real directory reached by lstat'ing one plain name at a time below the mountpoint (symlinks
are expanded by the resolver against the guest root, never followed by the host), and a file
is opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked to be a regular file before reading.
"""

from __future__ import annotations

import os
import stat as st
from collections.abc import Iterator

from diskkit.guest.fs.api import MAX_DIR_ENTRIES, MAX_LINK_TARGET, BoundExceeded, FileStat
from diskkit.guest.fs.api import NotAFile as _NotAFile
from diskkit.guest.fs.base import BaseFS, kind_of_mode


class MountedFS(BaseFS):
    """The guest tree mounted at host directory ``root``."""

    driver = "kernel mount"

    def __init__(self, root: str, *, fstype: str = "mounted", label: str | None = None,
                 uuid: str | None = None) -> None:
        self.root = os.path.abspath(root)
        self.fstype, self.label, self.uuid, self.name = fstype, label, uuid, root

    def _root(self) -> str:
        return self.root

    def _lookup(self, directory: str, name: str) -> str | None:
        path = os.path.join(directory, name)
        try:
            os.lstat(path)
        except OSError:
            return None
        return path

    def _children(self, directory: str) -> Iterator[tuple[str, str]]:
        with os.scandir(directory) as it:
            for n, e in enumerate(it):
                if n >= MAX_DIR_ENTRIES:
                    raise BoundExceeded(f"{directory}: more than {MAX_DIR_ENTRIES} entries")
                yield e.name, e.path

    def _lstat(self, node: str) -> FileStat:
        s = os.lstat(node)
        kind = kind_of_mode(s.st_mode)
        target = os.readlink(node)[:MAX_LINK_TARGET] if kind == "symlink" else None
        return FileStat(kind, s.st_size, s.st_mode, s.st_uid, s.st_gid, s.st_mtime, target,
                        s.st_ino)

    def _read(self, node: str, offset: int, length: int) -> bytes:
        fd = os.open(node, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not st.S_ISREG(os.fstat(fd).st_mode):
                raise _NotAFile(f"{node}: not a regular file")
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)
