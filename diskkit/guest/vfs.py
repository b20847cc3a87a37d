"""Bounded helpers over a :class:`~diskkit.guest.fs.api.GuestFS`, and :class:`Source`, the
evidence every guest fact carries.

Every helper treats an unreadable path (any ``OSError``: absent, not a file, a loop, a bound)
as absent, so one damaged file never stops an inspection.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from diskkit.guest.fs.api import GuestFS

__all__ = ["GuestFS", "Source", "exists", "is_dir", "is_file", "iter_bytes", "join", "kind",
           "listdir", "read_bytes", "read_text", "readlink"]


@dataclass(frozen=True)
class Source:
    """Where a fact was read: a guest file and, when it comes from one line, that line
    (1-based) and its text."""

    path: str
    line: int | None = None
    text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"path", "line", "text"}`` (line and text may be null)."""
        return {"path": self.path, "line": self.line, "text": self.text}

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


def kind(fs: GuestFS, path: str) -> str | None:
    """The kind of ``path`` ("file", "dir", ...), links followed; None when absent/unreadable."""
    try:
        return str(fs.stat(path).kind)
    except (OSError, ValueError):
        return None


def exists(fs: GuestFS, path: str) -> bool:
    """True when ``path`` exists (links followed)."""
    return kind(fs, path) is not None


def is_file(fs: GuestFS, path: str) -> bool:
    """True when ``path`` is a regular file (links followed)."""
    return kind(fs, path) == "file"


def is_dir(fs: GuestFS, path: str) -> bool:
    """True when ``path`` is a directory (links followed)."""
    return kind(fs, path) == "dir"


def listdir(fs: GuestFS, path: str, limit: int = 4096) -> list[str]:
    """Sorted names in ``path``, at most ``limit`` of them; [] when it is not a directory."""
    try:
        names = fs.names(path) if hasattr(fs, "names") else [e.name for e in fs.listdir(path)]
    except (OSError, ValueError):
        return []
    return sorted(n for n in names if n not in (".", ".."))[:limit]


def read_bytes(fs: GuestFS, path: str, limit: int) -> bytes | None:
    """At most ``limit`` bytes of file ``path``; None when absent or not a regular file."""
    try:
        return bytes(fs.read(path, limit=limit, offset=0))[:limit]
    except (OSError, ValueError):
        return None


def iter_bytes(fs: GuestFS, path: str, limit: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """File ``path`` in chunks, at most ``limit`` bytes in all; nothing when unreadable."""
    try:
        yield from fs.iter_read(path, offset=0, limit=limit, chunk=chunk)
    except (OSError, ValueError):
        return


def read_text(fs: GuestFS, path: str, limit: int = 1 << 20) -> str | None:
    """File ``path`` decoded as UTF-8 (bad bytes replaced), at most ``limit`` bytes."""
    data = read_bytes(fs, path, limit)
    return None if data is None else data.decode("utf-8", errors="replace")


def readlink(fs: GuestFS, path: str) -> str | None:
    """The target of symbolic link ``path``; None when it is not a link."""
    try:
        return str(fs.readlink(path))
    except (OSError, ValueError):
        return None


def join(*parts: str) -> str:
    """Join guest path components into one absolute path."""
    out = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return "/" + out
