"""The guest-visible disk of a qcow2 image, read in pure Python (read-only, v2 and v3).

Facts from QEMU ``docs/interop/qcow2.txt`` ("Cluster mapping", "Extended L2 Entries"):
a guest offset maps through the L1 table to an L2 table (one cluster) to a cluster descriptor.
An L2 entry is 64 bits (128 with extended L2: the second half is the subcluster allocation
bitmap, bits 0-31 "allocated", bits 32-63 "reads as zeros", 32 subclusters per cluster).
Bit 62 marks a compressed cluster (offset and extra 512-byte sector count packed below it,
``x = 62 - (cluster_bits - 8)``); bit 0 of a standard descriptor is the zero flag (not with
extended L2); bits 9-55 are the host offset. Unallocated clusters read from the backing file,
or as zeros without one.

Safety: this reader never opens a file by a name found in the image. A backing file is read
only through the caller's ``backing_opener``; an external data file only through the
``data_file`` reader the caller gives. Every table is bounded by the file size before it is
read, and tables are cached in a bounded LRU cache.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterator

from diskkit.errors import ImageError
from diskkit.formats.qcow2 import KNOWN_INCOMPATIBLE, PREFIX_SIZE, Qcow2Header, parse_header
from diskkit.readers.base import Extent, Reader, merge_extents
from diskkit.readers.qcow2_clusters import LruCache, inflate, unzstd

#: qemu's QCOW_MAX_L1_SIZE: an L1 table of more than 32 MiB is refused.
MAX_L1_BYTES = 32 << 20
#: Total bytes of L1 pieces and L2 tables kept in memory.
TABLE_CACHE_BYTES = 8 << 20
#: Total bytes of decompressed clusters kept in memory.
CLUSTER_CACHE_BYTES = 4 << 20

_OFFSET_MASK = 0x00FFFFFFFFFFFE00  # bits 9-55 (L1E/L2E offset masks in qemu)
_COMPRESSED = 1 << 62
_COPIED = 1 << 63
_ZERO_FLAG = 1

DATA, COMPRESSED, ZERO, UNALLOCATED = "data", "compressed", "zero", "unallocated"

#: ``backing_opener(backing_file_name, backing_format) -> Reader`` (the caller decides).
BackingOpener = Callable[[str, "str | None"], Reader]


class Qcow2Reader(Reader):
    """Read-only guest-visible disk of a qcow2 image in ``container``.

    The reader owns what it is given: :meth:`close` closes ``container``, ``data_file`` and
    the backing reader ``backing_opener`` returned.
    """

    def __init__(
        self,
        container: Reader,
        *,
        name: str | None = None,
        backing_opener: BackingOpener | None = None,
        data_file: Reader | None = None,
    ) -> None:
        self.container = container
        self.name = name or f"{container.name} (qcow2)"
        head = container.read(0, min(container.size, PREFIX_SIZE))
        h = parse_header(head, container.size)
        self.header: Qcow2Header = h
        self._check(h)
        self.size = h.size
        self._cb = h.cluster_bits
        self._cs = h.cluster_size
        self._ext = h.extended_l2
        self._per_l2 = self._cs * h.l2_entries  # guest bytes one L2 table maps
        self._tables = LruCache(TABLE_CACHE_BYTES)
        self._clusters = LruCache(CLUSTER_CACHE_BYTES)
        self._data_file = data_file
        self.backing: Reader | None = None
        if h.has_backing_file and backing_opener is not None:
            if h.backing_file is None:
                raise ImageError(f"{self.name}: the backing file name at "
                                 f"{h.backing_file_offset} cannot be read", code="qcow2-bad-header")
            self.backing = backing_opener(h.backing_file, h.backing_format)

    def _check(self, h: Qcow2Header) -> None:
        """Refuse what cannot be read safely or correctly."""
        def bad(msg: str, code: str = "qcow2-unreadable") -> ImageError:
            return ImageError(f"{self.name}: {msg}", code=code)

        if h.crypt_method:
            raise bad(f"is encrypted (crypt_method {h.crypt_method}); diskkit does not decrypt",
                      "encrypted")
        if h.incompatible_features & ~KNOWN_INCOMPATIBLE:
            raise bad(f"sets unknown incompatible feature bits "
                      f"{h.incompatible_features & ~KNOWN_INCOMPATIBLE:#x}")
        if h.compression_type not in (0, 1):
            raise bad(f"uses unknown compression type {h.compression_type}")
        if h.l1_size * 8 > MAX_L1_BYTES:
            raise bad(f"L1 table of {h.l1_size} entries is over qemu's 32 MiB limit",
                      "absurd-table-size")
        if h.l1_table_offset % h.cluster_size:
            raise bad(f"L1 table offset {h.l1_table_offset} is not cluster-aligned")
        if h.l1_size and h.l1_table_offset + h.l1_size * 8 > self.container.size:
            raise bad(f"L1 table at {h.l1_table_offset} ({h.l1_size} entries) runs past the "
                      f"end of the {self.container.size}-byte file", "header-field-out-of-bounds")
        per_l2 = h.cluster_size * h.l2_entries
        if -(-h.size // per_l2) > h.l1_size:
            raise bad(f"L1 table of {h.l1_size} entries is too small for the virtual size "
                      f"{h.size}")

    # -- tables -------------------------------------------------------------------------

    def _table(self, kind: str, offset: int, nbytes: int) -> array:
        key = (kind, offset)
        table = self._tables.get(key)
        if table is None:
            raw = self.container.read(offset, nbytes)
            if len(raw) != nbytes:
                raise ImageError(f"{self.name}: {kind} table at {offset} runs past the end of "
                                 f"the file", code="header-field-out-of-bounds")
            table = array("Q", raw)
            if sys.byteorder == "little":
                table.byteswap()  # qcow2 is big-endian
            self._tables.put(key, table, nbytes)
        return table  # type: ignore[return-value]

    def _l1_entry(self, index: int) -> int:
        per_piece = self._cs // 8
        piece = index // per_piece
        n = min(per_piece, self.header.l1_size - piece * per_piece)
        table = self._table("L1", self.header.l1_table_offset + piece * self._cs, n * 8)
        return table[index - piece * per_piece]

    def _l2_table(self, offset: int) -> array:
        if offset % self._cs:
            raise ImageError(f"{self.name}: L2 table offset {offset} is not cluster-aligned",
                             code="qcow2-unreadable")
        return self._table("L2", offset, self._cs)

    # -- mapping ------------------------------------------------------------------------

    def _pieces(self, offset: int, end: int) -> Iterator[tuple[int, int, str, int]]:
        """(guest offset, length, kind, host) for consecutive pieces of ``[offset, end)``.

        ``host`` is the host offset of the piece for DATA, the L2 entry for COMPRESSED.
        """
        cs, mask = self._cs, self._cs - 1
        pos = offset
        while pos < end:
            l1_index = pos // self._per_l2
            l2_base = l1_index * self._per_l2
            l2_end = min(end, l2_base + self._per_l2)
            l2_offset = self._l1_entry(l1_index) & _OFFSET_MASK
            if not l2_offset:
                yield pos, l2_end - pos, UNALLOCATED, 0
                pos = l2_end
                continue
            table = self._l2_table(l2_offset)
            while pos < l2_end:
                ci = (pos - l2_base) >> self._cb
                c_start = l2_base + (ci << self._cb)
                c_end = min(l2_end, c_start + cs)
                if self._ext:
                    entry, bitmap = table[2 * ci], table[2 * ci + 1]
                else:
                    entry, bitmap = table[ci], None
                if entry & _COMPRESSED:
                    yield pos, c_end - pos, COMPRESSED, entry
                elif bitmap is None:
                    yield pos, c_end - pos, *self._standard(entry, pos & mask)
                else:
                    yield from self._subclusters(entry, bitmap, pos, c_start, c_end)
                pos = c_end

    def _host(self, entry: int) -> int | None:
        """Host cluster offset of a standard entry, or None when it is unallocated."""
        host = entry & _OFFSET_MASK
        if not host and not (self.header.has_data_file and entry & _COPIED):
            return None
        if host % self._cs:
            raise ImageError(f"{self.name}: data cluster offset {host} is not cluster-aligned",
                             code="qcow2-unreadable")
        return host

    def _standard(self, entry: int, within: int) -> tuple[str, int]:
        if entry & _ZERO_FLAG:
            return ZERO, 0
        host = self._host(entry)
        return (UNALLOCATED, 0) if host is None else (DATA, host + within)

    def _subclusters(self, entry: int, bitmap: int, pos: int, c_start: int,
                     c_end: int) -> Iterator[tuple[int, int, str, int]]:
        alloc, zero = bitmap & 0xFFFFFFFF, bitmap >> 32
        if alloc & zero:
            raise ImageError(f"{self.name}: subclusters both allocated and zero at guest "
                             f"offset {c_start}", code="qcow2-unreadable")
        if not alloc and not zero:
            yield pos, c_end - pos, UNALLOCATED, 0
            return
        host = self._host(entry) if alloc else 0
        if alloc and host is None:
            raise ImageError(f"{self.name}: allocated subclusters without a host cluster at "
                             f"guest offset {c_start}", code="qcow2-unreadable")
        sc_bits = self._cb - 5
        while pos < c_end:
            i = (pos - c_start) >> sc_bits
            kind = DATA if alloc >> i & 1 else ZERO if zero >> i & 1 else UNALLOCATED
            j = i + 1
            while j < 32 and (DATA if alloc >> j & 1 else ZERO if zero >> j & 1
                              else UNALLOCATED) == kind:
                j += 1
            run_end = min(c_end, c_start + (j << sc_bits))
            yield pos, run_end - pos, kind, (host or 0) + (pos - c_start) if kind == DATA else 0
            pos = run_end

    def mapping(self, offset: int = 0, length: int | None = None) -> Iterator[tuple[int, int, str]]:
        """(offset, length, kind) of ``[offset, offset+length)``, adjacent equal kinds merged;
        kind is "data", "compressed", "zero" or "unallocated" (in this image, not its backing)."""
        end = self.size if length is None else min(self.size, offset + length)
        cur: list = []
        for g, n, kind, _host in self._pieces(offset, end):
            if cur and cur[2] == kind and cur[0] + cur[1] == g:
                cur[1] += n
                continue
            if cur:
                yield cur[0], cur[1], cur[2]
            cur = [g, n, kind]
        if cur:
            yield cur[0], cur[1], cur[2]

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        """Data / zero extents from the L1 and L2 tables (and the backing reader's extents
        for unallocated ranges when a backing file is open)."""
        return merge_extents(self._raw_extents(offset, length))

    def _raw_extents(self, offset: int, length: int | None) -> Iterator[Extent]:
        for g, n, kind in self.mapping(offset, length):
            if kind != UNALLOCATED or self.backing is None:
                yield Extent(g, n, kind in (DATA, COMPRESSED))
                continue
            covered = max(0, min(g + n, self.backing.size) - g)
            if covered:
                yield from self.backing.extents(g, covered)
            if covered < n:
                yield Extent(g + covered, n - covered, False)

    # -- reading ------------------------------------------------------------------------

    def _read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        run_host, run_len = 0, 0  # contiguous host data, read in one go
        for g, n, kind, host in self._pieces(offset, offset + length):
            if kind == DATA and run_len and run_host + run_len == host:
                run_len += n
                continue
            if run_len:
                out += self._data(run_host, run_len)
                run_len = 0
            if kind == DATA:
                run_host, run_len = host, n
            elif kind == COMPRESSED:
                within = g & (self._cs - 1)
                out += self._compressed(host)[within : within + n]
            elif kind == ZERO or self.backing is None:
                out += bytes(n)
            else:
                got = self.backing.read(g, n)
                out += got + bytes(n - len(got))
        if run_len:
            out += self._data(run_host, run_len)
        return bytes(out)

    def _data(self, host: int, n: int) -> bytes:
        source = self.container
        if self.header.has_data_file:
            if self._data_file is None:
                raise ImageError(
                    f"{self.name}: needs its external data file "
                    f"{self.header.data_file!r} to read data; opening files an image names is "
                    "refused", code="qcow2-data-file",
                    hint="pass the data file explicitly if you trust this image")
            source = self._data_file
        got = source.read(host, n)
        return got + bytes(n - len(got))  # past the end of the file reads as zeros (as qemu)

    def _compressed(self, entry: int) -> bytes:
        cached = self._clusters.get(("C", entry))
        if cached is not None:
            return cached  # type: ignore[return-value]
        if self.header.has_data_file:
            raise ImageError(f"{self.name}: compressed cluster in an image with an external "
                             "data file", code="qcow2-unreadable")
        shift = 62 - (self._cb - 8)
        host = entry & ((1 << shift) - 1)
        sectors = ((entry >> shift) & ((1 << (self._cb - 8)) - 1)) + 1
        csize = sectors * 512 - (host & 511)
        raw = self.container.read(host, csize)
        raw += bytes(csize - len(raw))
        data = inflate(raw, self._cs) if self.header.compression_type == 0 else \
            unzstd(raw, self._cs)
        if len(data) != self._cs:
            raise ImageError(f"{self.name}: compressed cluster at {host} gives {len(data)} "
                             f"bytes, not {self._cs}", code="qcow2-unreadable")
        self._clusters.put(("C", entry), data, self._cs)
        return data

    def close(self) -> None:
        """Close the backing reader, the data file reader and the container."""
        for reader in (self.backing, self._data_file, self.container):
            if reader is not None:
                reader.close()
        self.backing = None
