"""Typed on-disk headers: a packed field layout declared once, and the frozen dataclass it
fills.

A :class:`Layout` lists a header's fields in order as ``(name, struct code)``; the offset of
each field is computed from the ones before it (the headers of vmdk, vhd, vhdx, vdi,
parallels, bochs, cloop and qcow v1 are packed). A header class is a frozen dataclass that
derives from :class:`Header`, sets ``LAYOUT`` and declares one typed attribute per field of
the same name: :meth:`Header.parse` fills it, and :meth:`Header.evidence` gives a finding's
``(note, file offset, bytes)`` for any field from the layout, so no offset is ever typed twice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

from diskkit.errors import ImageError


class Layout:
    """A packed sequence of named fields in one byte order (``"<"`` or ``">"``)."""

    def __init__(self, endian: str, *items: tuple[str, str]) -> None:
        self.endian = endian
        self.names = tuple(name for name, _code in items)
        offsets: dict[str, tuple[int, int]] = {}
        pos = 0
        for name, code in items:
            size = struct.calcsize(endian + code)
            offsets[name] = (pos, size)
            pos += size
        #: name -> (offset from the header's start, length in bytes).
        self.spans = offsets
        #: Total length of the header in bytes.
        self.size = pos
        self._struct = struct.Struct(endian + "".join(code for _n, code in items))

    def offset(self, name: str) -> int:
        """Offset of ``name`` from the header's start."""
        return self.spans[name][0]

    def length(self, name: str) -> int:
        """Length of ``name`` in bytes."""
        return self.spans[name][1]

    def end(self, name: str) -> int:
        """Offset just past ``name``."""
        off, size = self.spans[name]
        return off + size

    def values(self, data: bytes, at: int, what: str) -> dict[str, Any]:
        """Every field of the header at ``data[at:]`` by name.

        Raises :class:`ImageError` (``truncated-header``) when ``data`` is too short.
        """
        if at < 0 or at + self.size > len(data):
            raise ImageError(f"{what}: truncated (needs {self.size} bytes at offset {at}, "
                             f"has {max(0, len(data) - at)})", code="truncated-header")
        return dict(zip(self.names, self._struct.unpack_from(data, at), strict=True))


@dataclass(frozen=True, kw_only=True)
class Header:
    """Base of every typed header: where it was read and its bytes (for evidence)."""

    LAYOUT: ClassVar[Layout]
    #: Offset of the header in the file.
    file_offset: int = field(default=0)
    #: The header's bytes as read (``LAYOUT.size`` of them).
    raw: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def parse(cls, data: bytes, at: int = 0, *, file_offset: int | None = None,
              what: str | None = None) -> Self:
        """The header at ``data[at:]``; ``file_offset`` is where ``data[at]`` lies in the
        file (default ``at``). Raises :class:`ImageError` when ``data`` is too short."""
        lay = cls.LAYOUT
        vals = lay.values(data, at, what or cls.__name__)
        return cls(file_offset=at if file_offset is None else file_offset,
                   raw=bytes(data[at:at + lay.size]), **vals)

    @classmethod
    def field_offset(cls, name: str) -> int:
        """Offset of field ``name`` from the header's start (the layout's, never retyped)."""
        return cls.LAYOUT.offset(name)

    def offset(self, name: str) -> int:
        """File offset of field ``name``."""
        return self.file_offset + self.LAYOUT.offset(name)

    def bytes_of(self, first: str, last: str | None = None) -> bytes:
        """The stored bytes of fields ``first`` to ``last`` (inclusive)."""
        lay = self.LAYOUT
        return self.raw[lay.offset(first):lay.end(last or first)]

    def evidence(self, note: str, first: str,
                 last: str | None = None) -> tuple[str, int, bytes]:
        """``(note, file offset, bytes)`` of fields ``first`` to ``last``: a finding's
        evidence."""
        return (note, self.offset(first), self.bytes_of(first, last))


def check_layout(cls: type[Header]) -> None:
    """Raise AssertionError when ``cls``'s attributes are not exactly its layout's fields
    (run by the tests for every header class)."""
    declared = tuple(f.name for f in fields(cls) if f.name not in ("file_offset", "raw"))
    if declared != cls.LAYOUT.names:
        raise AssertionError(f"{cls.__name__}: fields {declared} != layout {cls.LAYOUT.names}")
