"""The guest: its filesystems (:mod:`diskkit.guest.fs`) and its operating system
(:func:`inspect_guest`), read from the bytes with no root and no mount.

Names are imported lazily so that ``import diskkit.guest.fs`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diskkit.guest.inspect import GuestInfo, OSRoot, inspect_guest, inspect_root, inspect_tree

__all__ = ["GuestInfo", "OSRoot", "inspect_guest", "inspect_root", "inspect_tree"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from diskkit.guest import inspect

        return getattr(inspect, name)
    raise AttributeError(name)
