"""What every format probe shares: the bounded input it reads, the match it returns, and
helpers to read fixed-width fields without ever raising IndexError or struct.error.

A probe is a pure function ``probe(src: Source) -> Match | None``. It looks at ``src.head``
(the first :data:`HEAD_SIZE` bytes), ``src.tail`` (the last :data:`TAIL_SIZE` bytes) and, only
where its format demands it (VHDX region and metadata tables, a VMDK embedded descriptor or
footer), asks :meth:`Source.read` for a few more bytes; those reads are counted against a
fixed budget so a hostile header can never make detection read or allocate much.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from diskkit.errors import ImageError
from diskkit.findings import Evidence, Finding, Severity
from diskkit.readers.base import Reader

#: Bytes read from the start of every image (one read).
HEAD_SIZE = 64 * 1024
#: Bytes read from the end of every image (fixed VHD footer).
TAIL_SIZE = 512
#: The most bytes, beyond head and tail, that all probes together may read.
EXTRA_BUDGET = 512 * 1024


@dataclass(frozen=True)
class Match:
    """One format a probe recognised in the file."""

    #: OpenStack disk_format name where one exists, plain lowercase otherwise.
    format: str
    #: Guest-visible size in bytes, exactly as ``qemu-img info -f FORMAT`` gives it (None for
    #: compressed files and archives, whose content size is unknown without unpacking).
    virtual_size: int | None
    #: Format-specific facts (subformat, version, cluster size, backing file...).
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    #: What the format's safety checks found.
    findings: tuple[Finding, ...] = ()
    #: Byte offset of the signature that matched (0, or size-512 for a fixed VHD...).
    offset: int = 0


class Source:
    """The bounded input of detection: head, tail and a budget of extra reads."""

    def __init__(self, reader: Reader, *, head_size: int = HEAD_SIZE,
                 budget: int = EXTRA_BUDGET) -> None:
        self.reader = reader
        self.size = size = reader.size
        self.head = head = reader.read(0, head_size)
        self.tail_offset = max(0, size - TAIL_SIZE)
        if size <= len(head):  # the head holds the whole file: its tail is a slice of it
            self.tail = head[self.tail_offset:]
            #: Bytes of head and tail read from the reader (the tail is not re-read when
            #: the head holds the whole file).
            self.base_read = len(head)
        else:
            self.tail = reader.read(self.tail_offset, TAIL_SIZE)
            self.base_read = len(head) + len(self.tail)
        self.budget = budget
        #: Extra bytes read so far (head and tail not counted).
        self.extra_read = 0

    @property
    def bytes_read(self) -> int:
        """Every byte read from the reader: head, tail (when read apart) and extra reads."""
        return self.base_read + self.extra_read

    @classmethod
    def from_bytes(cls, data: bytes) -> Source:
        """A source over bytes in memory (tests, fuzzing)."""
        from diskkit.readers.base import BytesReader

        return cls(BytesReader(data))

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; served from head/tail when they hold them.

        Raises :class:`ImageError` when the image would make detection exceed its budget.
        """
        if offset < 0 or length < 0:
            raise ImageError(f"negative offset or length in a header ({offset}, {length})",
                             code="header-field-out-of-bounds")
        end = offset + length
        if end <= len(self.head) or self.size <= len(self.head):  # (the head is the file)
            return self.head[offset:end]
        if offset >= self.tail_offset and self.size and end <= self.size:
            return self.tail[offset - self.tail_offset : end - self.tail_offset]
        if length > self.budget - self.extra_read:
            raise ImageError(
                f"a header asks detection to read {length} bytes at {offset}: over the "
                f"{self.budget}-byte budget", code="absurd-table-size")
        data = self.reader.read(offset, length)
        self.extra_read += len(data)
        return data


#: Compiled struct formats, so a detection never re-parses a format string.
_STRUCTS: dict[str, struct.Struct] = {}


def unpack(fmt: str, data: bytes, offset: int, what: str) -> tuple[Any, ...]:
    """``struct.unpack_from`` that raises :class:`ImageError` (truncated-header) when
    ``data`` is too short, instead of struct.error."""
    st = _STRUCTS.get(fmt)
    if st is None:
        st = _STRUCTS[fmt] = struct.Struct(fmt)
    need = st.size
    if offset < 0 or offset + need > len(data):
        raise ImageError(f"{what}: truncated (needs {need} bytes at offset {offset}, "
                         f"has {max(0, len(data) - offset)})", code="truncated-header")
    return st.unpack_from(data, offset)


def one(fmt: str, data: bytes, offset: int, what: str) -> Any:
    """The single value of :func:`unpack`."""
    return unpack(fmt, data, offset, what)[0]


def finding(code: str, severity: Severity, message: str, fix: str | None = None,
            evidence: Sequence[tuple[str, int | None, bytes | None]] | None = None,
            **details: Any) -> Finding:
    """Shorthand for a :class:`Finding` with file-space evidence ``(note, offset, bytes)``."""
    ev = tuple([Evidence(note, off, data) for note, off, data in evidence]) if evidence else ()
    return Finding(code, severity, message, ev, fix, details)


def ascii_field(data: bytes) -> str:
    """A fixed-width text field: up to the first NUL, undecodable bytes escaped."""
    return data.split(b"\0", 1)[0].decode("ascii", errors="backslashreplace").strip()
