"""The guest-visible disk of a qcow2 image, read in pure Python (read-only, v2 and v3).

Facts from QEMU ``docs/interop/qcow2.txt`` ("Cluster mapping", "Extended L2 Entries"):
a guest offset maps through the L1 table to an L2 table (one cluster) to a cluster descriptor.
An L2 entry is 64 bits (128 with extended L2: the second half is the subcluster allocation
bitmap, bits 0-31 "allocated", bits 32-63 "reads as zeros", 32 subclusters per cluster).
Bit 62 marks a compressed cluster (offset and extra 512-byte sector count packed below it,
``x = 62 - (cluster_bits - 8)``); bit 0 of a standard descriptor is the zero flag (not with
extended L2); bits 9-55 are the host offset. Unallocated clusters read from the backing file,
or as zeros without one.

Speed: the allocation map is built one L2 table at a time, the first time a table's range is
asked for, and kept (:class:`Qcow2Reader` ``_runs``). A table is scanned at C speed: all-zero
4 KiB stretches are skipped with one ``memcmp`` each, zero bytes inside the others with one
regex match, so only non-zero entries cost Python work; a stretch of entries mapping
consecutive host clusters is recognised in one comparison of arrays (doubling, then bisection),
so a table of contiguous data costs a handful of operations, not 8192. Adjacent clusters of
the same kind (contiguous on the host for data) become one run, and a read issues one
``preadv`` per run straight into the caller's buffer.

Safety: this reader never opens a file by a name found in the image. A backing file is read
only through the caller's ``backing_opener``; an external data file only through the
``data_file`` reader the caller gives. Every table is bounded by the file size before it is
read; the map holds at most one run per non-zero L2 entry found in the file, and the number of
entries scanned is bounded by what the file can hold (a table referenced twice is not a way to
make the map grow without bound).
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator

from diskkit.errors import ImageError
from diskkit.formats.qcow2 import KNOWN_INCOMPATIBLE, PREFIX_SIZE, Qcow2Header, parse_header
from diskkit.readers.base import Extent, Reader, merge_extents
from diskkit.readers.qcow2_clusters import LruCache, inflate, same_step, unzstd

#: qemu's QCOW_MAX_L1_SIZE: an L1 table of more than 32 MiB is refused.
MAX_L1_BYTES = 32 << 20
#: Total bytes of decompressed clusters kept in memory.
CLUSTER_CACHE_BYTES = 4 << 20
#: Runs kept in the per-table map cache (about 100 bytes each); beyond it the tables used
#: least recently are dropped (and scanned again if asked for).
MAP_CACHE_RUNS = 2_000_000

_OFFSET_MASK = 0x00FFFFFFFFFFFE00  # bits 9-55 (L1E/L2E offset masks in qemu)
_COMPRESSED = 1 << 62
_COPIED = 1 << 63
_ZERO_FLAG = 1

DATA, COMPRESSED, ZERO, UNALLOCATED = "data", "compressed", "zero", "unallocated"

_ZEROS = re.compile(rb"\x00*")
_CHUNK = 4096  # bytes of a table compared with zeros at once
_ZERO_CHUNK = bytes(_CHUNK)
_SWAP = sys.byteorder == "little"  # qcow2 is big-endian

#: One run of the map: (guest start, guest end, kind, host). ``host`` is the host offset of
#: the run's first byte for DATA, the L2 entry for COMPRESSED (one cluster per run), else 0.
Run = tuple[int, int, str, int]

#: ``backing_opener(backing_file_name, backing_format) -> Reader`` (the caller decides).
BackingOpener = Callable[[str, "str | None"], Reader]


def _next_nonzero(raw: bytes, pos: int, limit: int) -> int:
    """Position of the first non-zero byte of ``raw[pos:limit]``, or ``limit``."""
    while pos < limit:
        end = min(limit, (pos // _CHUNK + 1) * _CHUNK)
        if end - pos == _CHUNK and raw.startswith(_ZERO_CHUNK, pos):
            pos = end
            continue
        m = _ZEROS.match(raw, pos, end)
        found = m.end() if m is not None else end
        if found < end:
            return found
        pos = end
    return limit


_ENTRY = struct.Struct(">QQ")  # an L2 entry and the next one
_ONE = struct.Struct(">Q")


def _table(raw: bytes) -> array:
    """A table's big-endian 64-bit entries as native integers."""
    table = array("Q", raw)
    if _SWAP:
        table.byteswap()
    return table


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
        self._clusters = LruCache(CLUSTER_CACHE_BYTES)
        self._data_file = data_file
        self._l1: array | None = None
        self._l1_used: list[int] = []  # indices of the L1 entries that name an L2 table
        # l1 index -> (run starts, runs) of that table's clusters, unallocated left out
        self._runs: OrderedDict[int, tuple[list[int], list[Run]]] = OrderedDict()
        self._cached_runs = 0
        self._scanned: set[int] = set()
        self._all: list[Extent] | None = None  # the whole disk's extents, once listed
        self._all_starts: list[int] = []
        self._charging = True
        # Entries scanned so far; a file holds at most size/8 of them (plus slack).
        self._budget = container.size // 8 + (1 << 20)
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

    def _table_bytes(self, kind: str, offset: int, nbytes: int) -> bytes:
        raw = self.container.read(offset, nbytes)
        if len(raw) != nbytes:
            raise ImageError(f"{self.name}: {kind} table at {offset} runs past the end of "
                             f"the file", code="header-field-out-of-bounds")
        return raw

    def _load_l1(self) -> array:
        """The L1 table (entries that map the virtual size only), read once."""
        if self._l1 is None:
            used = -(-self.size // self._per_l2) if self.size else 0
            raw = self._table_bytes("L1", self.header.l1_table_offset, used * 8)
            table = array("Q", raw)
            if _SWAP:
                table.byteswap()
            found, pos, limit = [], 0, len(raw)
            while (pos := _next_nonzero(raw, pos, limit)) < limit:
                i = pos >> 3
                if table[i] & _OFFSET_MASK:
                    found.append(i)
                pos = (i + 1) << 3
            self._l1_used = found
            self._l1 = table
        return self._l1

    def _table_runs(self, l1_index: int) -> tuple[list[int], list[Run]]:
        """The runs of L2 table ``l1_index`` (cached)."""
        got = self._runs.get(l1_index)
        if got is not None:
            self._runs.move_to_end(l1_index)
            return got
        l2_offset = self._load_l1()[l1_index] & _OFFSET_MASK
        if l2_offset % self._cs:
            raise ImageError(f"{self.name}: L2 table offset {l2_offset} is not cluster-aligned",
                             code="qcow2-unreadable")
        raw = self._table_bytes("L2", l2_offset, self._cs)
        # a table scanned before (dropped from the cache) is not charged again
        self._charging = l1_index not in self._scanned
        self._scanned.add(l1_index)
        runs = self._scan(l1_index * self._per_l2, raw)
        got = ([r[0] for r in runs], runs)
        self._runs[l1_index] = got
        self._cached_runs += len(runs) + 1
        while self._cached_runs > MAP_CACHE_RUNS and len(self._runs) > 1:
            _, (_s, old) = self._runs.popitem(last=False)
            self._cached_runs -= len(old) + 1
        return got

    def _scan(self, base: int, raw: bytes) -> list[Run]:  # noqa: C901 (hot loop, inlined)
        """The runs of one L2 table mapping guest bytes from ``base``."""
        cb, cs = self._cb, self._cs
        entries = min(self.header.l2_entries, -(-(self.size - base) // cs))
        runs: list[Run] = []
        size = self.size

        def add(g: int, n: int, kind: str, host: int) -> None:
            end = min(g + n, size)
            if runs:
                lg, le, lk, lh = runs[-1]
                if lk == kind and le == g and kind != COMPRESSED and (
                        kind != DATA or lh + (le - lg) == host):
                    runs[-1] = (lg, end, kind, lh)
                    return
            runs.append((g, end, kind, host))

        if self._ext:
            self._scan_extended(base, raw, _table(raw), entries, add)
            return runs
        # Standard entries, the hot loop: inlined (no per-entry calls on the common path);
        # entries are decoded one by one, the whole table only when a run may follow.
        match, zero_at = _ZEROS.match, raw.startswith
        unpack = _ENTRY.unpack_from
        table: array | None = None
        data_file = self.header.has_data_file
        append = runs.append
        last_kind, last_end, last_host_end = "", -1, -1
        spent = 0
        pos, limit = 0, entries * 8
        while pos < limit:
            chunk_end = min(limit, (pos // _CHUNK + 1) * _CHUNK)
            if chunk_end - pos == _CHUNK and zero_at(_ZERO_CHUNK, pos):
                pos = chunk_end
                continue
            m = match(raw, pos, chunk_end)
            found = m.end() if m is not None else chunk_end
            if found >= chunk_end:
                pos = chunk_end
                continue
            i = found >> 3
            if i + 1 < entries:
                v, after = unpack(raw, i << 3)
            else:
                v, after = _ONE.unpack_from(raw, i << 3)[0], -1
            g = base + (i << cb)
            k = 1
            if v & _COMPRESSED:
                kind, host = COMPRESSED, v
            elif v & _ZERO_FLAG:
                # a zero cluster (with or without a preallocated host cluster)
                step = cs if v & _OFFSET_MASK else 0
                if after == v + step:
                    if table is None:
                        table = _table(raw)
                    k = same_step(table, i, v, step, entries - i)
                kind, host = ZERO, 0
            else:
                host = v & _OFFSET_MASK
                if not host and not (data_file and v & _COPIED):
                    pos = (i + 1) << 3  # flags only: unallocated
                    spent += 1
                    continue
                if host % cs:
                    raise ImageError(f"{self.name}: data cluster offset {host} is not "
                                     "cluster-aligned", code="qcow2-unreadable")
                if after == v + cs:
                    if table is None:
                        table = _table(raw)
                    k = same_step(table, i, v, cs, entries - i)
                kind = DATA
            spent += k
            end = g + (k << cb)
            if end > size:
                end = size
            if kind is last_kind and g == last_end and kind is not COMPRESSED and (
                    kind is not DATA or host == last_host_end):
                runs[-1] = (runs[-1][0], end, kind, runs[-1][3])
            else:
                append((g, end, kind, host))
            last_kind, last_end, last_host_end = kind, end, host + (end - g)
            pos = (i + k) << 3
        self._spend(spent)
        return runs

    def _scan_extended(self, base: int, raw: bytes, table: array, entries: int,
                       add: Callable[[int, int, str, int], None]) -> None:
        cb, cs = self._cb, self._cs
        sc_bits = cb - 5
        pos, limit = 0, entries * 16
        while (pos := _next_nonzero(raw, pos, limit)) < limit:
            i = pos >> 4
            pos = (i + 1) << 4
            self._spend(1)
            entry, bitmap = table[2 * i], table[2 * i + 1]
            g = base + (i << cb)
            if entry & _COMPRESSED:
                add(g, cs, COMPRESSED, entry)
                continue
            alloc, zero = bitmap & 0xFFFFFFFF, bitmap >> 32
            if alloc & zero:
                raise ImageError(f"{self.name}: subclusters both allocated and zero at guest "
                                 f"offset {g}", code="qcow2-unreadable")
            if not alloc and not zero:
                continue
            host = self._host(entry) if alloc else 0
            if alloc and host is None:
                raise ImageError(f"{self.name}: allocated subclusters without a host cluster "
                                 f"at guest offset {g}", code="qcow2-unreadable")
            if alloc == 0xFFFFFFFF:
                add(g, cs, DATA, host or 0)
                continue
            if zero == 0xFFFFFFFF:
                add(g, cs, ZERO, 0)
                continue
            sc = 0
            while sc < 32:
                kind = DATA if alloc >> sc & 1 else ZERO if zero >> sc & 1 else UNALLOCATED
                j = sc + 1
                while j < 32 and (DATA if alloc >> j & 1 else ZERO if zero >> j & 1
                                  else UNALLOCATED) == kind:
                    j += 1
                if kind != UNALLOCATED:
                    add(g + (sc << sc_bits), (j - sc) << sc_bits, kind,
                        (host or 0) + (sc << sc_bits) if kind == DATA else 0)
                sc = j

    def _spend(self, n: int) -> None:
        if not self._charging:
            return
        self._budget -= n
        if self._budget < 0:
            raise ImageError(f"{self.name}: its L2 tables map more clusters than a "
                             f"{self.container.size}-byte file can describe (tables shared "
                             "by several L1 entries?)", code="qcow2-unreadable")

    def _host(self, entry: int) -> int | None:
        """Host cluster offset of a standard entry, or None when it is unallocated."""
        host = entry & _OFFSET_MASK
        if not host and not (self.header.has_data_file and entry & _COPIED):
            return None
        if host % self._cs:
            raise ImageError(f"{self.name}: data cluster offset {host} is not cluster-aligned",
                             code="qcow2-unreadable")
        return host

    # -- mapping ------------------------------------------------------------------------

    def _pieces(self, offset: int, end: int) -> Iterator[tuple[int, int, str, int]]:
        """(guest offset, length, kind, host) for consecutive pieces of ``[offset, end)``,
        covering it whole. ``host`` is the host offset of the piece for DATA, the L2 entry
        for COMPRESSED (one piece per cluster), else 0."""
        if offset >= end:
            return
        self._load_l1()
        used, per_l2 = self._l1_used, self._per_l2
        pos = offset
        j = bisect_left(used, offset // per_l2)
        last = (end - 1) // per_l2
        while pos < end:
            if j >= len(used) or used[j] > last:
                yield pos, end - pos, UNALLOCATED, 0
                return
            index = used[j]
            j += 1
            t_start = index * per_l2
            if t_start > pos:
                yield pos, t_start - pos, UNALLOCATED, 0
                pos = t_start
            t_end = min(end, t_start + per_l2)
            starts, runs = self._table_runs(index)
            k = max(0, bisect_right(starts, pos) - 1)
            while k < len(runs) and pos < t_end:
                g, g_end, kind, host = runs[k]
                k += 1
                if g_end <= pos:
                    continue
                if g >= t_end:
                    break
                if g > pos:
                    yield pos, g - pos, UNALLOCATED, 0
                    pos = g
                stop = min(g_end, t_end)
                yield pos, stop - pos, kind, host + (pos - g) if kind == DATA else host
                pos = stop
            if pos < t_end:
                yield pos, t_end - pos, UNALLOCATED, 0
                pos = t_end

    def mapping(self, offset: int = 0, length: int | None = None) -> Iterator[tuple[int, int, str]]:
        """(offset, length, kind) of ``[offset, offset+length)``, adjacent equal kinds merged;
        kind is "data", "compressed", "zero" or "unallocated" (in this image, not its backing)."""
        end = self.size if length is None else min(self.size, offset + length)
        cur_g = cur_n = 0
        cur_kind = ""
        for g, n, kind, _host in self._pieces(offset, end):
            if cur_kind == kind and cur_g + cur_n == g:
                cur_n += n
                continue
            if cur_kind:
                yield cur_g, cur_n, cur_kind
            cur_g, cur_n, cur_kind = g, n, kind
        if cur_kind:
            yield cur_g, cur_n, cur_kind

    def host_runs(self) -> Iterator[tuple[int, int, int | None]]:
        """(guest offset, length, host offset or None) over the whole disk: where in the
        file each guest byte is read from, None where it reads as zeros. Only for an image
        read from this file alone (no backing or data file; a compressed cluster has no
        host range of its own): otherwise an :class:`ImageError`."""
        if self.backing is not None or self.header.has_backing_file or \
                self.header.has_data_file:
            raise ImageError(f"{self.name}: reads through another file", code="qcow2-chain")
        for g, n, kind, host in self._pieces(0, self.size):
            if kind == COMPRESSED:
                raise ImageError(f"{self.name}: holds compressed clusters",
                                 code="qcow2-compressed")
            yield g, n, host if kind == DATA else None

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        """Data / zero extents from the L1 and L2 tables (and the backing reader's extents
        for unallocated ranges when a backing file is open).

        The whole disk's list is kept once asked for (up to :data:`MAP_CACHE_RUNS` extents):
        every later call, whatever its window, is a bisection into it."""
        end = self.size if length is None else min(self.size, offset + length)
        if self.backing is not None:
            return merge_extents(self._raw_extents(offset, length))
        if self._all is None and offset == 0 and end == self.size:
            whole = self._whole_disk()
            if len(whole) <= MAP_CACHE_RUNS:
                self._all = whole
                self._all_starts = [e.offset for e in whole]
            return iter(whole)
        if self._all is not None:
            return self._cached_extents(offset, end)
        return (Extent(a, b - a, d) for a, b, d in self._data_runs(offset, end))

    def _whole_disk(self) -> list[Extent]:
        """The whole disk's extents straight from the table runs (the fast path of
        :meth:`extents`: no per-piece generator)."""
        self._load_l1()
        out: list[Extent] = []
        append = out.append
        cur_s = cur_e = 0
        cur_d = False
        for index in self._l1_used:
            for g, e, kind, _host in self._table_runs(index)[1]:
                d = kind is DATA or kind is COMPRESSED
                if g > cur_e:  # unallocated before this run
                    if cur_d:
                        append(Extent(cur_s, cur_e - cur_s, True))
                        cur_s, cur_d = cur_e, False
                    cur_e = g
                if d is cur_d:
                    cur_e = e
                    continue
                if cur_e > cur_s:
                    append(Extent(cur_s, cur_e - cur_s, cur_d))
                cur_s, cur_e, cur_d = g, e, d
        if self.size > cur_e:
            if cur_d:
                append(Extent(cur_s, cur_e - cur_s, True))
                cur_s, cur_d = cur_e, False
            cur_e = self.size
        if cur_e > cur_s:
            append(Extent(cur_s, cur_e - cur_s, cur_d))
        return out

    def _cached_extents(self, offset: int, end: int) -> Iterator[Extent]:
        assert self._all is not None
        k = max(0, bisect_right(self._all_starts, offset) - 1)
        for e in self._all[k:]:
            if e.offset >= end:
                return
            lo, hi = max(e.offset, offset), min(e.end, end)
            if hi > lo:
                yield e if (lo, hi) == (e.offset, e.end) else Extent(lo, hi - lo, e.data)

    def _data_runs(self, offset: int, end: int) -> Iterator[tuple[int, int, bool]]:
        """(start, end, holds data) of ``[offset, end)``, adjacent equal ones merged."""
        cur_s = cur_e = offset
        cur_d = False
        for g, n, kind, _host in self._pieces(offset, end):
            d = kind is DATA or kind is COMPRESSED
            if d is cur_d and g == cur_e:
                cur_e = g + n
                continue
            if cur_e > cur_s:
                yield cur_s, cur_e, cur_d
            cur_s, cur_e, cur_d = g, g + n, d
        if cur_e > cur_s:
            yield cur_s, cur_e, cur_d

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
        pieces = self._pieces(offset, offset + length)
        first = next(pieces)
        if first[1] == length:  # one piece: no assembly buffer
            g, n, kind, host = first
            if kind == DATA:
                return self._data(host, n)
            if kind == COMPRESSED:
                within = g & (self._cs - 1)
                return self._compressed(host)[within : within + n]
            if kind == ZERO or self.backing is None:
                return bytes(n)
            return self._backing(g, n)
        buf = bytearray(length)
        view = memoryview(buf)
        for g, n, kind, host in (first, *pieces):
            at = g - offset
            if kind == DATA:
                self._data_into(host, view[at : at + n])
            elif kind == COMPRESSED:
                within = g & (self._cs - 1)
                view[at : at + n] = self._compressed(host)[within : within + n]
            elif kind == UNALLOCATED and self.backing is not None:
                self.backing.readinto(g, view[at : at + n])
        return bytes(buf)

    def _backing(self, g: int, n: int) -> bytes:
        assert self.backing is not None
        got = self.backing.read(g, n)
        return got + bytes(n - len(got))

    def _source(self) -> Reader:
        if not self.header.has_data_file:
            return self.container
        if self._data_file is None:
            raise ImageError(
                f"{self.name}: needs its external data file "
                f"{self.header.data_file!r} to read data; opening files an image names is "
                "refused", code="qcow2-data-file",
                hint="pass the data file explicitly if you trust this image")
        return self._data_file

    def _data(self, host: int, n: int) -> bytes:
        got = self._source().read(host, n)
        return got + bytes(n - len(got))  # past the end of the file reads as zeros (as qemu)

    def _data_into(self, host: int, view: memoryview) -> None:
        # past the end of the file reads as zeros (as qemu): the buffer is zeroed already
        self._source().readinto(host, view)

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
