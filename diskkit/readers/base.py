"""The Reader interface every backend implements, and two readers built on others.

A Reader is a read-only, random-access view of a sequence of bytes of known ``size``. Reads
past the end are short (never an error), reads before 0 are a bug. ``extents`` lists the
ranges that may hold data: a range it does not list reads as zeros, which lets callers judge a
blank terabyte volume without reading a terabyte.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from diskkit.errors import InternalError


@dataclass(frozen=True)
class Extent:
    """A range ``[offset, offset + length)``; ``data`` is False when it is known to read as
    zeros (a hole, an unallocated or zero cluster)."""

    offset: int
    length: int
    data: bool = True

    @property
    def end(self) -> int:
        """First byte after the extent."""
        return self.offset + self.length


def merge_extents(extents: Iterable[Extent]) -> Iterator[Extent]:
    """``extents`` (in order) with adjacent ones of the same kind merged into one."""
    pending: Extent | None = None
    for ext in extents:
        if pending is not None and pending.data == ext.data and pending.end == ext.offset:
            pending = Extent(pending.offset, pending.length + ext.length, ext.data)
            continue
        if pending is not None:
            yield pending
        pending = ext
    if pending is not None:
        yield pending


class Reader(ABC):
    """Read-only random access to ``size`` bytes."""

    #: Size in bytes of what this reader exposes.
    size: int
    #: A short description for messages ("disk.qcow2 (qcow2)", "rbd:volumes/v1").
    name: str = "reader"
    #: True when ``read``/``readinto`` may be called from several threads at once (pread on
    #: one descriptor, librbd); readers with caches filled while reading say False.
    concurrent_reads: bool = False

    @abstractmethod
    def _read(self, offset: int, length: int) -> bytes:
        """Read exactly ``length`` bytes at ``offset`` (already clipped to the size)."""

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``: short only where the reader ends."""
        if offset < 0 or length < 0:
            raise InternalError(f"read at a negative offset or length ({offset}, {length})")
        if offset >= self.size or length == 0:
            return b""
        length = min(length, self.size - offset)
        data = self._read(offset, length)
        if len(data) != length:
            raise InternalError(
                f"{self.name}: short read at {offset}: wanted {length}, got {len(data)}"
            )
        return data

    def readinto(self, offset: int, buf: memoryview) -> int:
        """Read ``len(buf)`` bytes at ``offset`` into ``buf``; return how many were read
        (fewer only where the reader ends). Readers over files override it to read straight
        into the buffer (no intermediate bytes object)."""
        data = self.read(offset, len(buf))
        buf[: len(data)] = data
        return len(data)

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        """The ranges in ``[offset, offset+length)``, marked with whether they hold data.

        The default says "all data"; readers that know better override it.
        """
        end = self.size if length is None else min(self.size, offset + length)
        if offset < end:
            yield Extent(offset, end - offset, True)

    def data_extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        """Only the extents that may hold data, adjacent ones merged."""
        return merge_extents(e for e in self.extents(offset, length) if e.data and e.length)

    def is_zero(self, offset: int, length: int, chunk: int = 1 << 20) -> bool:
        """True when ``[offset, offset+length)`` reads as zeros, reading only data extents."""
        for ext in self.data_extents(offset, length):
            pos = ext.offset
            while pos < ext.end:
                n = min(chunk, ext.end - pos)
                if self.read(pos, n).count(0) != n:
                    return False
                pos += n
        return True

    def close(self) -> None:  # noqa: B027 - readers without resources need not override
        """Release what the reader holds (file descriptors, servers, connections)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BytesReader(Reader):
    """A reader over bytes in memory (small images, tests, parsed regions)."""

    def __init__(self, data: bytes, name: str = "bytes") -> None:
        self._data = bytes(data)
        self.size = len(self._data)
        self.name = name

    def _read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


class SliceReader(Reader):
    """A window ``[start, start+length)`` of another reader: a partition, an LV segment.

    The window is clipped to the parent's size, so a partition table that claims more than
    the disk holds gives a shorter slice, never a read past the disk.
    """

    def __init__(self, parent: Reader, start: int, length: int, name: str | None = None,
                 *, owns_parent: bool = False) -> None:
        if start < 0 or length < 0:
            raise InternalError(f"slice with negative bounds ({start}, {length})")
        self.parent = parent
        self.start = min(start, parent.size)
        self.size = max(0, min(length, parent.size - self.start))
        self.name = name or f"{parent.name}[{start}:+{length}]"
        #: When True, closing the slice closes the parent (a fixed VHD's disk owns its file).
        self.owns_parent = owns_parent

    def _read(self, offset: int, length: int) -> bytes:
        return self.parent.read(self.start + offset, length)

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        end = self.size if length is None else min(self.size, offset + length)
        for ext in self.parent.extents(self.start + offset, end - offset):
            yield Extent(ext.offset - self.start, ext.length, ext.data)

    def close(self) -> None:
        if self.owns_parent:
            self.parent.close()
