"""The read-only guest filesystem interface: :class:`GuestFS`, :class:`FileStat`,
:class:`DirEntry`, the bounds, and the errors.

A :class:`GuestFS` reads one filesystem (a partition, an LV, a whole disk) through a diskkit
Reader, with no root and no mount. Every path is resolved inside the guest's own root:
absolute symlinks restart at the guest root, ``..`` stops at it, at most
:data:`MAX_SYMLINKS` links are followed per lookup. Nothing is ever looked up on the host.
Every size and count taken from the image is bounded (entries per directory, bytes per read,
depth and results of a walk).

The path errors are both diskkit errors (one line and an exit code in the CLI) and OSErrors
(``NotFound`` is a ``FileNotFoundError``), so callers that treat "unreadable" as "absent" can
catch ``OSError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from diskkit.errors import ImageError, UserError

#: Symlinks followed while resolving one path (Linux's limit, MAXSYMLINKS).
MAX_SYMLINKS = 40
#: Entries one directory may have before listing it is refused (ImageError "fs-bound").
MAX_DIR_ENTRIES = 200_000
#: Default byte limit of :meth:`GuestFS.read` (a larger file is cut, not an error).
DEFAULT_READ_LIMIT = 64 << 20
#: Path components in one path (after symlink expansion).
MAX_COMPONENTS = 4096
#: Longest symlink target read.
MAX_LINK_TARGET = 4096
#: Default bounds of :meth:`GuestFS.walk` / :meth:`GuestFS.find`.
DEFAULT_WALK_DEPTH = 64
DEFAULT_WALK_ENTRIES = 1_000_000

#: ``FileStat.kind`` values.
KINDS = ("file", "dir", "symlink", "other")


class NotFound(UserError, FileNotFoundError):
    """The path does not exist in the guest filesystem."""

    default_code = "not-found"


class NotADirectory(UserError, NotADirectoryError):
    """A directory was needed (listdir, a middle path component)."""

    default_code = "not-a-directory"


class NotAFile(UserError, OSError):
    """A regular file was needed (read): a directory, a device, a FIFO..."""

    default_code = "not-a-file"


class NotASymlink(UserError, OSError):
    """readlink on something that is not a symbolic link."""

    default_code = "not-a-symlink"


class SymlinkLoop(ImageError, OSError):
    """More than :data:`MAX_SYMLINKS` links while resolving one path (ELOOP)."""

    default_code = "symlink-loop"


class BoundExceeded(ImageError, OSError):
    """A count or size read from the image is beyond diskkit's work bound."""

    default_code = "fs-bound"


@dataclass(frozen=True)
class FileStat:
    """What a filesystem says about one file.

    ``kind`` is "file", "dir", "symlink" or "other" (devices, FIFOs, sockets); ``mode`` is the
    full st_mode (type bits included) where the filesystem has one, else made up from the
    kind (FAT, ISO without Rock Ridge: 0o100644 / 0o040755); ``uid``/``gid`` are None where
    the filesystem has no owners; ``mtime`` is seconds since the epoch (UTC) or None;
    ``target`` is the link target of a symlink, as stored; ``inode`` the filesystem's own
    number (inode, MFT entry, ...) where it has one.
    """

    kind: str
    size: int
    mode: int
    uid: int | None = None
    gid: int | None = None
    mtime: float | None = None
    target: str | None = None
    inode: int | None = None

    @property
    def is_dir(self) -> bool:
        """kind == "dir"."""
        return self.kind == "dir"

    @property
    def is_file(self) -> bool:
        """kind == "file" (a regular file)."""
        return self.kind == "file"

    @property
    def is_symlink(self) -> bool:
        """kind == "symlink"."""
        return self.kind == "symlink"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, ``stat --json``)."""
        return {"kind": self.kind, "size": self.size, "mode": f"{self.mode:o}",
                "uid": self.uid, "gid": self.gid, "mtime": self.mtime,
                "link_target": self.target, "inode": self.inode}


@dataclass(frozen=True)
class DirEntry:
    """One entry of a directory (never "." or ".."), with the entry's own (lstat) facts."""

    name: str
    stat: FileStat

    @property
    def kind(self) -> str:
        """The entry's kind (a symlink is "symlink", not its target's kind)."""
        return self.stat.kind

    @property
    def size(self) -> int:
        """The entry's size in bytes."""
        return self.stat.size

    def to_dict(self) -> dict[str, Any]:
        """JSON form: name plus the stat fields."""
        return {"name": self.name, **self.stat.to_dict()}


@runtime_checkable
class GuestFS(Protocol):
    """A read-only guest filesystem (see the module docstring). Paths are guest paths
    ("/etc/os-release"); a relative path is taken from the root."""

    #: blkid's TYPE: "ext4", "xfs", "vfat", "ntfs", "iso9660", "udf", "btrfs", ...
    fstype: str
    #: The label as ``blkid -p`` reports it, or None.
    label: str | None
    #: The UUID as ``blkid -p`` reports it, or None.
    uuid: str | None
    #: Which implementation reads it ("libfsxfs", "ext (diskkit)", "pycdlib", "libguestfs"...).
    driver: str

    def stat(self, path: str) -> FileStat:
        """Facts of ``path`` with every symlink followed (the last one too)."""
        ...

    def lstat(self, path: str) -> FileStat:
        """Facts of ``path`` itself (a final symlink is not followed)."""
        ...

    def exists(self, path: str) -> bool:
        """True when ``path`` resolves (symlinks followed) to something."""
        ...

    def realpath(self, path: str) -> str:
        """The canonical guest path ``path`` resolves to (all symlinks followed)."""
        ...

    def listdir(self, path: str) -> list[DirEntry]:
        """Entries of the directory ``path`` (symlinks followed), sorted by name;
        BoundExceeded beyond :data:`MAX_DIR_ENTRIES`."""
        ...

    def read(self, path: str, limit: int = DEFAULT_READ_LIMIT, offset: int = 0) -> bytes:
        """Up to ``limit`` bytes of the regular file ``path`` from ``offset`` (symlinks
        followed); NotAFile for anything else."""
        ...

    def iter_read(self, path: str, offset: int = 0, limit: int | None = None,
                  chunk: int = 1 << 20) -> Iterator[bytes]:
        """The regular file ``path`` in chunks (for large files: kernels, initramfs)."""
        ...

    def readlink(self, path: str) -> str:
        """The target of the symlink ``path`` as stored (not resolved)."""
        ...

    def walk(self, top: str = "/", *, max_depth: int = DEFAULT_WALK_DEPTH,
             max_entries: int = DEFAULT_WALK_ENTRIES) -> Iterator[tuple[str, list[DirEntry]]]:
        """(directory path, its entries) for ``top`` and every directory below it, top-down;
        symlinks are never followed into; stops (BoundExceeded) past ``max_entries``."""
        ...

    def find(self, top: str = "/", *, name: str | None = None, kind: str | None = None,
             max_depth: int = DEFAULT_WALK_DEPTH, max_results: int = 10_000,
             max_entries: int = DEFAULT_WALK_ENTRIES) -> Iterator[tuple[str, FileStat]]:
        """Paths below ``top`` whose name matches the glob ``name`` (fnmatch) and whose kind
        is ``kind``; at most ``max_results``."""
        ...

    def close(self) -> None:
        """Release what the filesystem holds (library handles; never the reader)."""
        ...
