"""MountFS: a root filesystem with others mounted on it (/boot, /boot/efi, /var...), as fstab
assembles them, so that guest paths read the way they do in the running guest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from diskkit.guest.fs.api import DEFAULT_READ_LIMIT, DirEntry, FileStat, GuestFS


class MountFS:
    """Routes each path to the filesystem mounted on its longest matching mount point.
    Symbolic links are resolved inside the filesystem that holds them."""

    def __init__(self, root: GuestFS, mounts: dict[str, GuestFS] | None = None) -> None:
        self.root = root
        self.mounts = dict(sorted((mounts or {}).items(), key=lambda kv: -len(kv[0])))
        self.fstype = root.fstype
        self.label = root.label
        self.uuid = root.uuid
        self.driver = root.driver

    def _route(self, path: str) -> tuple[GuestFS, str]:
        p = "/" + "/".join(c for c in path.split("/") if c and c != ".")
        for mp, fs in self.mounts.items():
            if p == mp or p.startswith(mp + "/"):
                return fs, p[len(mp):] or "/"
        return self.root, p

    def stat(self, path: str) -> FileStat:
        """See GuestFS."""
        fs, p = self._route(path)
        return fs.stat(p)

    def lstat(self, path: str) -> FileStat:
        """See GuestFS."""
        fs, p = self._route(path)
        return fs.lstat(p)

    def exists(self, path: str) -> bool:
        """See GuestFS."""
        fs, p = self._route(path)
        return fs.exists(p)

    def realpath(self, path: str) -> str:
        """See GuestFS (the path inside the filesystem that holds it)."""
        fs, p = self._route(path)
        return fs.realpath(p)

    def listdir(self, path: str) -> list[DirEntry]:
        """See GuestFS."""
        fs, p = self._route(path)
        return fs.listdir(p)

    def names(self, path: str) -> list[str]:
        """Sorted names in directory ``path``."""
        return [e.name for e in self.listdir(path)]

    def read(self, path: str, limit: int = DEFAULT_READ_LIMIT, offset: int = 0) -> bytes:
        """See GuestFS."""
        fs, p = self._route(path)
        return fs.read(p, limit=limit, offset=offset)

    def iter_read(self, path: str, offset: int = 0, limit: int | None = None,
                  chunk: int = 1 << 20) -> Iterator[bytes]:
        """See GuestFS."""
        fs, p = self._route(path)
        return fs.iter_read(p, offset=offset, limit=limit, chunk=chunk)

    def readlink(self, path: str) -> str:
        """See GuestFS."""
        fs, p = self._route(path)
        return fs.readlink(p)

    def walk(self, top: str = "/", **kw: Any) -> Iterator[tuple[str, list[DirEntry]]]:
        """See GuestFS (does not cross into other mounts)."""
        fs, p = self._route(top)
        return fs.walk(p, **kw)

    def find(self, top: str = "/", **kw: Any) -> Iterator[tuple[str, FileStat]]:
        """See GuestFS (does not cross into other mounts)."""
        fs, p = self._route(top)
        return fs.find(p, **kw)
