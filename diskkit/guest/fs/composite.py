"""Several filesystems as one guest tree: the root and its fstab mounts (/boot, /var ...).

A node is (filesystem, its own node, guest path); looking a name up in a directory whose
guest path plus the name is a mountpoint gives that filesystem's root instead, so resolution
(symlinks, "..") runs over the whole tree exactly as the guest's kernel would see it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

from diskkit.errors import HostError
from diskkit.guest.fs.api import FileStat
from diskkit.guest.fs.base import BaseFS

Node = tuple[BaseFS, Any, str]


class CompositeFS(BaseFS):
    """``mounts``: (guest mountpoint, filesystem) pairs, "/" among them; ``blocked``:
    mountpoints of filesystems that cannot be read in-process (their type): entering one
    raises HostError ``fs-unsupported``, so the caller can fall back to mounting instead of
    showing the directory underneath."""

    def __init__(self, mounts: list[tuple[str, BaseFS]],
                 blocked: dict[str, str] | None = None) -> None:
        self.mounts = {"/" + posixpath.normpath(mp).strip("/"): fs for mp, fs in mounts}
        self.blocked = {"/" + posixpath.normpath(mp).strip("/"): t
                        for mp, t in (blocked or {}).items()}
        root = self.mounts["/"]
        self.fstype, self.label, self.uuid = root.fstype, root.label, root.uuid
        self.driver, self.name = root.driver, root.name
        self.case_insensitive = root.case_insensitive

    def _root(self) -> Node:
        fs = self.mounts["/"]
        return (fs, fs._root(), "/")

    def _enter(self, fs: BaseFS, inner: Any, path: str) -> Node:
        sub = self.mounts.get(path)
        if sub is not None and path != "/":
            return (sub, sub._root(), path)
        return (fs, inner, path)

    def _lookup(self, directory: Node, name: str) -> Node | None:
        fs, node, path = directory
        child = posixpath.join(path, name)
        if child in self.blocked:
            raise HostError(f"{child} is a {self.blocked[child]} filesystem, not read "
                            "in-process", code="fs-unsupported")
        if child in self.mounts:
            return self._enter(fs, None, child)
        inner = fs._lookup(node, name)
        return None if inner is None else (fs, inner, child)

    def _children(self, directory: Node) -> Iterator[tuple[str, Node]]:
        fs, node, path = directory
        for name, inner in fs._children(node):
            yield name, self._enter(fs, inner, posixpath.join(path, name))

    def _lstat(self, node: Node) -> FileStat:
        return node[0]._lstat(node[1])

    def _read(self, node: Node, offset: int, length: int) -> bytes:
        return node[0]._read(node[1], offset, length)

    def filesystem_at(self, path: str) -> BaseFS:
        """The filesystem holding the canonical guest ``path``."""
        best = "/"
        for mp in self.mounts:
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best = mp
        return self.mounts[best]

    def _close(self) -> None:
        for fs in self.mounts.values():
            fs.close()
