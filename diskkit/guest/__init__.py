"""The guest: its filesystems (:mod:`diskkit.guest.fs`) and its operating system
(:func:`inspect_guest`), read from the bytes with no root and no mount.

Names are imported lazily so that ``import diskkit.guest.fs`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diskkit.guest.info import GuestInfo
    from diskkit.guest.inspect import OSRoot, inspect_root, inspect_tree
    from diskkit.layout.inspect import Layout
    from diskkit.readers.base import Reader

__all__ = ["GuestInfo", "OSRoot", "inspect_guest", "inspect_root", "inspect_tree"]


def inspect_guest(disk: Reader, layout: Layout, **options: Any) -> GuestInfo:
    """Every OS root on ``disk`` (:func:`diskkit.guest.inspect.inspect_guest`, same
    ``options``). A disk with no filesystem a root can be on gets its empty answer without
    loading the filesystem and OS readers (start-up of ``diskkit info``)."""
    from diskkit.guest.info import ROOT_TYPES, GuestInfo

    if not any(f.type in ROOT_TYPES for f in layout.filesystems):
        return GuestInfo(())
    from diskkit.guest.inspect import inspect_guest as inspect_roots

    return inspect_roots(disk, layout, **options)


def __getattr__(name: str) -> Any:
    if name == "GuestInfo":
        from diskkit.guest.info import GuestInfo

        return GuestInfo
    if name in __all__:
        from diskkit.guest import inspect

        return getattr(inspect, name)
    raise AttributeError(name)
