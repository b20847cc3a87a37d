"""A :class:`~diskkit.guest.fs.api.GuestFS` over a launched libguestfs handle, for what no
in-process reader reads (btrfs, pure UDF, ...).

The handle is passed in (launched by :func:`diskkit.backends.guestfs.open_appliance`, which
owns the TCG choice and the launch deadline): this module never launches anything. Paths are
resolved by :class:`~diskkit.guest.fs.base.BaseFS` component by component with ``lstatns``
and ``readlink`` inside the appliance, so a guest symlink is still followed inside the guest
root. ``device`` is mounted read-only at the appliance's "/" unless ``mounted`` says the
caller did it (several filesystems at their mountpoints).
"""

from __future__ import annotations

import posixpath
import stat as st
from collections.abc import Iterator
from typing import Any

from diskkit.errors import ImageError
from diskkit.guest.fs.api import MAX_DIR_ENTRIES, MAX_LINK_TARGET, BoundExceeded, FileStat
from diskkit.guest.fs.base import BaseFS, kind_of_mode

#: Bytes per pread call (libguestfs' message limit is 4 MiB).
_CHUNK = 2 << 20


class ApplianceFS(BaseFS):
    """A filesystem inside a libguestfs appliance (``g`` is a launched GuestFS handle)."""

    driver = "libguestfs"

    def __init__(self, g: Any, device: str | None = None, *, fstype: str | None = None,
                 label: str | None = None, uuid: str | None = None,
                 name: str = "appliance") -> None:
        self.g = g
        self.name = name
        self.label, self.uuid = label, uuid
        try:
            self.fstype = fstype or (g.vfs_type(device) if device else "unknown")
            if device is not None:
                g.mount_ro(device, "/")
        except RuntimeError as exc:
            raise ImageError(f"{name}: the appliance cannot mount {device}: {exc}",
                             code="bad-filesystem") from None

    def _root(self) -> str:
        return "/"

    def _lookup(self, directory: str, name: str) -> str | None:
        path = posixpath.join(directory, name)
        try:
            self.g.lstatns(path)
        except RuntimeError:
            return None
        return path

    def _children(self, directory: str) -> Iterator[tuple[str, str]]:
        try:
            names = self.g.ls(directory)
        except RuntimeError as exc:
            raise ImageError(f"{self.name}: {directory}: {exc}", code="bad-filesystem") \
                from None
        if len(names) > MAX_DIR_ENTRIES:
            raise BoundExceeded(f"{directory}: more than {MAX_DIR_ENTRIES} entries")
        for n in names:
            yield n, posixpath.join(directory, n)

    def _lstat(self, node: str) -> FileStat:
        try:
            s = self.g.lstatns(node)
            mode = int(s["st_mode"])
            kind = kind_of_mode(mode)
            target = self.g.readlink(node)[:MAX_LINK_TARGET] if kind == "symlink" else None
        except RuntimeError as exc:
            raise ImageError(f"{self.name}: {node}: {exc}", code="bad-filesystem") from None
        return FileStat(kind, int(s["st_size"]), st.S_IFMT(mode) | st.S_IMODE(mode),
                        int(s["st_uid"]), int(s["st_gid"]), float(s["st_mtime_sec"]), target,
                        int(s["st_ino"]))

    def _read(self, node: str, offset: int, length: int) -> bytes:
        out: list[bytes] = []
        while length > 0:
            try:
                data = bytes(self.g.pread(node, min(length, _CHUNK), offset))
            except RuntimeError as exc:
                raise ImageError(f"{self.name}: {node}: {exc}", code="bad-filesystem") \
                    from None
            if not data:
                break
            out.append(data)
            offset += len(data)
            length -= len(data)
        return b"".join(out)

    def _close(self) -> None:
        """The handle belongs to the caller (its ``with open_appliance`` shuts it down)."""
