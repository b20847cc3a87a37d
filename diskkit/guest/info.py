"""What :func:`diskkit.guest.inspect_guest` returns, and which filesystems can hold a root:
a light module (no filesystem or OS reader is imported with it), so that a disk with no
such filesystem gets its empty answer without loading them (CLI start-up, docs/cli.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diskkit.guest.inspect import OSRoot

#: Filesystem types a root can be on.
ROOT_TYPES = ("ext2", "ext3", "ext4", "xfs", "btrfs", "ntfs", "jfs", "reiserfs", "f2fs")


@dataclass(frozen=True)
class GuestInfo:
    """Every OS root on a disk, and what could not be looked at."""

    roots: tuple[OSRoot, ...]
    #: Filesystems not read (no in-process reader, unreadable), one sentence each.
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"roots": [...], "notes": [...]}`` (docs/guest.md)."""
        return {"roots": [r.to_dict() for r in self.roots], "notes": list(self.notes)}

    @property
    def root(self) -> OSRoot | None:
        """The first root (most disks have one)."""
        return self.roots[0] if self.roots else None
