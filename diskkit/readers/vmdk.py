"""The guest-visible disk of a hosted sparse VMDK extent, read in pure Python (read-only):
monolithicSparse and streamOptimized, the single-file kinds whose file starts with ``KDMV``.

Facts from VMware's "Virtual Disk Format 5.0" (hosted sparse extents) and QEMU's
``block/vmdk.c``: the SparseExtentHeader (:class:`diskkit.formats.vmdk.VmdkHeader`, sizes and
offsets in 512-byte sectors) gives the capacity, the grain size, the number of entries per
grain table (``numGTEsPerGT``, at most 512) and the grain directory offset (``gdOffset``;
``GD_AT_END`` in a streamOptimized file means the real header is the footer, 1024 bytes
before the end, which then wins as in qemu). The grain directory holds
``ceil(capacity / (grainSize * numGTEsPerGT))`` little-endian u32 entries, each the sector of
a grain table (0: none); a grain table entry is the sector of a grain: 0 unallocated (reads
as zeros: a backing file is never read), 1 a zeroed grain when header flag bit 2 is set.
When ``compressAlgorithm`` is 1 (deflate; qemu decides on this field, not on flag bit 16)
a grain is zlib (RFC 1950) data; with flag bit 17 (markers) it is preceded by a marker
``{u64 lba, u32 size}`` and ``size`` bytes of it follow (without markers it starts at the
grain's sector, and qemu inflates at most one grain of input: so do we). A grain inflates to exactly
``grainSize * 512`` bytes; qemu writes the last grain of a capacity that is not a grain
multiple shorter (only the bytes up to the capacity), which is accepted, as is a full grain.

Safety: what the format probe (:func:`diskkit.formats.vmdk.probe`) calls an error is refused
with that finding's code (createTypes whose data lives in other files, extent files, delta
links, bad descriptors, a missing footer...); this reader never opens a file. Every table and
grain offset is checked against the file size; the grain directory is bounded by its 32 MiB
limit and the file size, the grain tables read by a budget of what the file can hold, the
grain tables kept by :data:`MAX_MAP_BYTES`; a compressed grain is inflated with a cap of one
grain (a zip bomb cannot grow past it) and its size checked exactly. Errors are
:class:`ImageError` with the codes listed in docs/readers.md.

Speed and threads: the grain map (the directory and the non-empty grain tables, as flat
arrays) is read once, under a lock, then only read. A read issues one ``preadv`` per run of
grains contiguous in the file (uncompressed) or one per compressed grain, and inflates each
grain with its own ``zlib.decompressobj`` (zlib releases the GIL): concurrent reads from
several threads are safe and decompress in parallel.
"""

from __future__ import annotations

import struct
import sys
import threading
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Iterator

from diskkit.errors import ImageError, InternalError
from diskkit.findings import Severity
from diskkit.formats import vmdk as vmdk_format
from diskkit.formats.base import Source
from diskkit.formats.vmdk import MAGIC, MAX_GD_BYTES, VmdkHeader, VmdkMarker
from diskkit.readers.base import Extent, Reader
from diskkit.readers.qcow2_clusters import LruCache

_FLAG_NEWLINE_TEST = 1 << 0
_NEWLINE_TEST = b"\n \r\n"  # the spec's singleEndLineChar, nonEndLineChar, doubleEndLineChar
_FLAG_ZERO_GRAIN = 1 << 2
_FLAG_MARKER = 1 << 17
_DEFLATE = 1
_MARKER_FOOTER = 3
_MARKER_EOS = 0
_GRAIN_MARKER = struct.Struct("<QI")  # lba, size: the data follows at byte 12
#: The first bytes of a COWD (VMware 3 / ESX vmfsSparse) extent and of a seSparse extent.
_COWD = b"COWD"
_SESPARSE = (0xCAFEBABE).to_bytes(8, "little")
#: Largest grain accepted: 1 MiB (VMware and qemu write 64 KiB; qemu accepts up to 1 GiB,
#: which would make every read of one byte inflate a gigabyte).
MAX_GRAIN_SECTORS = 2048
#: Most bytes of non-empty grain tables kept in memory (16 M grains: 1 TiB of 64 KiB grains).
MAX_MAP_BYTES = 64 << 20
#: Whole-disk extent lists longer than this are not kept (they are listed again per call).
MAX_CACHED_RUNS = 1 << 20
#: Decompressed grains kept for reads that take part of a grain.
GRAIN_CACHE_BYTES = 4 << 20
#: Grain tables read in one pread when they are consecutive in the file.
_BATCH_BYTES = 1 << 20
_SWAP = sys.byteorder != "little"  # VMDK is little-endian
_ZERO_CHUNK = bytes(4096)


def _u32(raw: bytes) -> array:
    """Little-endian u32 entries as a native array."""
    table = array("I", raw)
    if _SWAP:
        table.byteswap()
    return table


def _nonzero_indices(raw: bytes, table: array) -> Iterator[int]:
    """Indices of the non-zero entries of ``table`` (whose bytes are ``raw``), all-zero
    4 KiB stretches skipped in one comparison each."""
    step = len(_ZERO_CHUNK)
    for base in range(0, len(raw), step):
        if raw.startswith(_ZERO_CHUNK, base):
            continue
        first = base >> 2
        for k, value in enumerate(table[first : first + (step >> 2)]):
            if value:
                yield first + k


class VmdkReader(Reader):
    """Read-only guest-visible disk of a monolithicSparse or streamOptimized VMDK.

    ``container`` is the VMDK file (a :class:`~diskkit.readers.raw.FileReader`); the reader
    owns it (:meth:`close` closes it). Raises :class:`ImageError` at construction when the
    file is not a hosted sparse extent this reader supports or is unsafe; grain tables are
    read (and checked) on the first read or extent listing.
    """

    def __init__(self, container: Reader, *, name: str | None = None) -> None:
        self.container = container
        self.name = name or f"{container.name} (vmdk)"
        #: Reads may run in several threads at once when the container's may (pread).
        self.concurrent_reads = bool(getattr(container, "concurrent_reads", False))
        head = container.read(0, 512)
        self._refuse_other_kinds(head)
        match = vmdk_format.probe(Source(container))
        if match is None:
            raise self._error("is not a VMDK file (no KDMV sparse header)", "vmdk-unsupported")
        for found in match.findings:
            if found.severity >= Severity.ERROR:
                raise ImageError(f"{self.name}: {found.message}", code=found.code,
                                 hint=found.fix)
        if match.details.get("descriptor_file") or head[:4] != MAGIC:
            raise self._descriptor_file()
        #: createType of the embedded descriptor ("monolithicSparse" without one).
        self.create_type: str = match.details.get("create_type") or "monolithicSparse"
        first = VmdkHeader.parse(head, 0, what=f"{self.name}: VMDK sparse header")
        h = self._footer() if first.gd_at_end else first
        #: The header in force (the footer's, for a streamOptimized file with one).
        self.header: VmdkHeader = h
        self._check(h)
        self.size = h.capacity * 512
        self._gs = h.grain_size * 512  # grain bytes
        self._gtes = h.num_gtes_per_gt
        self._grains = -(-h.capacity // h.grain_size)
        self._l1 = -(-self._grains // self._gtes)
        #: True when grains are zlib-compressed (compressAlgorithm 1: streamOptimized).
        self.compressed = h.compress_algorithm == _DEFLATE
        self._markers = bool(h.flags & _FLAG_MARKER)
        self._zero_flag = bool(h.flags & _FLAG_ZERO_GRAIN)
        self._lock = threading.Lock()
        # (grain directory index -> table slot or -1, the non-empty grain tables end to end)
        self._grain_map: tuple[array, array] | None = None
        self._all: list[Extent] | None = None
        self._all_starts: list[int] = []
        self._zeros = memoryview(bytes(self._gs))
        self._cache = LruCache(GRAIN_CACHE_BYTES)
        self._cache_lock = threading.Lock()

    # -- header -------------------------------------------------------------------------

    def _error(self, msg: str, code: str) -> ImageError:
        return ImageError(f"{self.name}: {msg}", code=code)

    def _refuse_other_kinds(self, head: bytes) -> None:
        if head[:4] == _COWD:
            raise self._error("is a COWD (VMware 3 / ESX vmfsSparse) extent; only hosted "
                              "sparse extents (monolithicSparse, streamOptimized) are read",
                              "vmdk-unsupported")
        if head[:8] == _SESPARSE:
            raise self._error("is an ESXi seSparse extent; only hosted sparse extents "
                              "(monolithicSparse, streamOptimized) are read", "vmdk-unsupported")
        if head[:4] != MAGIC and vmdk_format.vmdk_descriptor.looks_like_descriptor(head):
            raise self._descriptor_file()

    def _descriptor_file(self) -> ImageError:
        return ImageError(
            f"{self.name}: is a VMDK descriptor file: its data lives in the extent files it "
            "names, which diskkit never opens (CVE-2022-47951)", code="vmdk-create-type",
            hint="ask for a monolithicSparse or streamOptimized VMDK (one file)")

    def _footer(self) -> VmdkHeader:
        """The footer header of a streamOptimized file (the probe checked that it is one)."""
        start = self.container.size - 1536
        raw = self.container.read(start, 1536) if start >= 0 else b""
        if len(raw) != 1536:
            raise self._error("file too short for its streamOptimized footer",
                              "vmdk-header-footer-mismatch")
        marker = VmdkMarker.parse(raw, 0, what="VMDK footer marker")
        eos = VmdkMarker.parse(raw, 1024, what="VMDK end-of-stream marker")
        foot = VmdkHeader.parse(raw, 512, file_offset=start + 512, what="VMDK footer")
        if not marker.is_marker(_MARKER_FOOTER) or not eos.is_marker(_MARKER_EOS) or \
                foot.magic != MAGIC or foot.gd_at_end:
            raise self._error("gdOffset says 'at the footer' but there is no valid footer",
                              "vmdk-header-footer-mismatch")
        return foot

    def _check(self, h: VmdkHeader) -> None:
        """Refuse what cannot be read safely or correctly (beyond the probe's checks)."""
        if h.compress_algorithm not in (0, _DEFLATE):
            raise self._error(f"uses unknown compression algorithm {h.compress_algorithm}",
                              "vmdk-unsupported")
        if h.capacity == 0 and h.descriptor_offset:
            raise ImageError(
                f"{self.name}: capacity 0 with an embedded descriptor: qemu reads such a file "
                "as a descriptor file naming extent files (CVE-2022-47951)",
                code="vmdk-create-type")
        if h.flags & _FLAG_NEWLINE_TEST and h.newline_test != _NEWLINE_TEST:
            raise self._error(f"its newline test bytes read {h.newline_test!r}, not "
                              f"{_NEWLINE_TEST!r}: the file was corrupted by a text-mode "
                              "transfer", "vmdk-bad-header")
        grain = h.grain_size
        if grain < 8 or grain & (grain - 1):
            raise self._error(f"grain size {grain} sectors is not a power of two of at least 8",
                              "vmdk-bad-header")
        if grain > MAX_GRAIN_SECTORS:
            raise self._error(f"grain size {grain * 512} bytes is over the "
                              f"{MAX_GRAIN_SECTORS * 512}-byte limit", "absurd-table-size")
        size = self.container.size
        if h.overhead * 512 > size:
            raise self._error(f"is truncated: its header says the grains start at byte "
                              f"{h.overhead * 512}, the file has {size} bytes",
                              "header-field-out-of-bounds")
        grains = -(-h.capacity // grain)
        l1 = -(-grains // h.num_gtes_per_gt)
        if l1 * 4 > MAX_GD_BYTES:
            raise self._error(f"grain directory of {l1} entries is over {MAX_GD_BYTES >> 20} MiB",
                              "absurd-table-size")
        if l1 and h.gd_offset * 512 + l1 * 4 > size:
            raise self._error(f"grain directory at sector {h.gd_offset} ({l1} entries) runs "
                              f"past the end of the {size}-byte file",
                              "header-field-out-of-bounds")

    # -- grain map ----------------------------------------------------------------------

    def _map(self) -> tuple[array, array]:
        """(grain directory index -> slot or -1, the kept grain tables), read once."""
        got = self._grain_map
        if got is None:
            with self._lock:
                if self._grain_map is None:
                    self._grain_map = self._load_map()
                got = self._grain_map
        return got

    def _load_map(self) -> tuple[array, array]:
        h, gtes, fsize = self.header, self._gtes, self.container.size
        slots = array("i", [-1]) * self._l1
        gts = array("I")
        if not self._l1:
            return slots, gts
        raw = self.container.read(h.gd_offset * 512, self._l1 * 4)
        gd = _u32(raw)
        gt_bytes = gtes * 4
        step = gt_bytes // 512 if gt_bytes % 512 == 0 else 0
        budget = fsize // 4 + (1 << 20)  # entries a file of this size can hold, and slack
        last_entries = self._grains - (self._l1 - 1) * gtes  # entries of the last table in use
        batch: list[int] = []

        def flush() -> None:
            first = gd[batch[0]]
            nbytes = len(batch) * gt_bytes
            if first * 512 + nbytes > fsize:
                bad = next(i for i in batch if gd[i] * 512 + gt_bytes > fsize)
                raise self._error(f"grain table {bad} at sector {gd[bad]} runs past the end "
                                  f"of the {fsize}-byte file", "header-field-out-of-bounds")
            data = self.container.read(first * 512, nbytes)
            for k, index in enumerate(batch):
                at = k * gt_bytes
                if data.startswith(bytes(gt_bytes), at):
                    continue
                table = _u32(data[at : at + gt_bytes])
                if index == self._l1 - 1 and last_entries < gtes:
                    table[last_entries:] = array("I", bytes(4 * (gtes - last_entries)))
                top = max(table)
                if top * 512 >= fsize:
                    g = index * gtes + table.index(top)
                    raise self._error(f"grain {g} (guest byte {g * self._gs}) is at sector "
                                      f"{top}, past the end of the {fsize}-byte file",
                                      "header-field-out-of-bounds")
                if not top:
                    continue
                slots[index] = len(gts) // gtes
                gts.extend(table)
                if len(gts) * 4 > MAX_MAP_BYTES:
                    raise self._error(f"its grain tables hold more than {MAX_MAP_BYTES >> 20} "
                                      "MiB of entries", "absurd-table-size")
            batch.clear()

        for index in _nonzero_indices(raw, gd):
            if index >= self._l1:
                break
            budget -= gtes
            if budget < 0:
                raise self._error(f"its grain directory names more grain tables than a "
                                  f"{fsize}-byte file can hold (tables shared by several "
                                  "entries?)", "absurd-table-size")
            if batch and not (step and gd[index] == gd[batch[-1]] + step and
                              index == batch[-1] + 1 and
                              len(batch) * gt_bytes < _BATCH_BYTES):
                flush()
            batch.append(index)
        if batch:
            flush()
        return slots, gts

    # -- extents ------------------------------------------------------------------------

    def _data_runs(self, g0: int, g1: int) -> Iterator[tuple[int, int]]:
        """(first grain, end grain) of the runs of allocated, non-zeroed grains in
        ``[g0, g1)``, adjacent ones merged."""
        slots, gts = self._map()
        gtes, zf = self._gtes, self._zero_flag
        start = end = -1
        for t in range(g0 // gtes, -(-g1 // gtes)):
            slot = slots[t]
            if slot < 0:
                continue
            lo, hi = max(g0, t * gtes), min(g1, (t + 1) * gtes)
            base = (slot - t) * gtes  # gts index of grain g is base + g
            seg = gts[base + lo : base + hi]
            if 0 not in seg and not (zf and 1 in seg):
                if lo != end:
                    if end > start:
                        yield start, end
                    start = lo
                end = hi
                continue
            for k, e in enumerate(seg):
                if e == 0 or (zf and e == 1):
                    continue
                g = lo + k
                if g != end:
                    if end > start:
                        yield start, end
                    start = g
                end = g + 1
        if end > start:
            yield start, end

    def _extents(self, offset: int, end: int) -> Iterator[Extent]:
        gs = self._gs
        pos = offset
        for a, b in self._data_runs(offset // gs, -(-end // gs)):
            lo, hi = max(offset, a * gs), min(end, b * gs)
            if lo > pos:
                yield Extent(pos, lo - pos, False)
            if hi > lo:
                yield Extent(lo, hi - lo, True)
                pos = hi
        if end > pos:
            yield Extent(pos, end - pos, False)

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        """Data / zero extents from the grain tables: allocated grains are data, unallocated
        and zeroed grains are not. The whole disk's list is kept once asked for (up to
        :data:`MAX_CACHED_RUNS` extents); later calls bisect into it."""
        end = self.size if length is None else min(self.size, offset + length)
        if offset >= end:
            return iter(())
        if self._all is None and offset == 0 and end == self.size:
            whole = list(self._extents(0, self.size))
            if len(whole) <= MAX_CACHED_RUNS:
                self._all_starts = [e.offset for e in whole]
                self._all = whole
            return iter(whole)
        if self._all is not None:
            return self._cached(offset, end)
        return self._extents(offset, end)

    def _cached(self, offset: int, end: int) -> Iterator[Extent]:
        whole = self._all
        assert whole is not None
        k = max(0, bisect_right(self._all_starts, offset) - 1)
        for e in whole[k:]:
            if e.offset >= end:
                return
            lo, hi = max(e.offset, offset), min(e.end, end)
            if hi > lo:
                yield e if (lo, hi) == (e.offset, e.end) else Extent(lo, hi - lo, e.data)

    # -- reading ------------------------------------------------------------------------

    def _read(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        self._fill(offset, memoryview(buf))
        return bytes(buf)

    def readinto(self, offset: int, buf: memoryview) -> int:
        """Read ``len(buf)`` bytes at ``offset`` straight into ``buf`` (fewer only at the
        end of the disk)."""
        if offset < 0:
            raise InternalError(f"read at a negative offset ({offset})")
        n = max(0, min(len(buf), self.size - offset))
        if n:
            self._fill(offset, memoryview(buf)[:n])
        return n

    def _fill(self, offset: int, view: memoryview) -> None:
        """Fill ``view`` with the disk's bytes from ``offset`` (within the size)."""
        slots, gts = self._map()
        gs, gtes, zf, compressed = self._gs, self._gtes, self._zero_flag, self.compressed
        end = offset + len(view)
        pos, at = offset, 0
        run_host = run_at = run_len = 0  # pending read of grains contiguous in the file
        while pos < end:
            grain = pos // gs
            within = pos - grain * gs
            n = min(gs - within, end - pos)
            slot = slots[grain // gtes]
            e = gts[slot * gtes + grain % gtes] if slot >= 0 else 0
            if e == 0 or (zf and e == 1):
                view[at : at + n] = self._zeros[:n]
            elif compressed:
                view[at : at + n] = self._grain(grain, e, within, n)
            else:
                host = e * 512 + within
                if run_len and run_host + run_len == host and run_at + run_len == at:
                    run_len += n
                else:
                    if run_len:
                        self._pread(run_host, view[run_at : run_at + run_len])
                    run_host, run_at, run_len = host, at, n
            pos += n
            at += n
        if run_len:
            self._pread(run_host, view[run_at : run_at + run_len])

    def _pread(self, host: int, view: memoryview) -> None:
        got = self.container.readinto(host, view)
        if got < len(view):  # a grain running past the end of the file: zeros, as qemu
            view[got:] = self._zeros[: len(view) - got]

    def _grain(self, grain: int, entry: int, within: int, n: int) -> memoryview:
        """Bytes ``[within, within+n)`` of compressed grain ``grain`` stored at sector
        ``entry``."""
        partial = within or n < self._gs
        if partial:
            with self._cache_lock:
                hit = self._cache.get(("G", entry))
            if isinstance(hit, bytes):
                return memoryview(hit)[within : within + n]
        data = self._inflate(grain, entry)
        if partial:
            with self._cache_lock:
                self._cache.put(("G", entry), data, len(data))
        return memoryview(data)[within : within + n]

    def _inflate(self, grain: int, entry: int) -> bytes:
        gs, fsize = self._gs, self.container.size
        at = entry * 512
        where = f"compressed grain {grain} (guest byte {grain * gs}) at byte {at}"
        # one pread covers the marker and the grain's data unless it does not compress
        buf = bytearray(max(0, min(gs + 512, fsize - at)))
        got = self.container.readinto(at, memoryview(buf))
        if self._markers:
            if got < _GRAIN_MARKER.size:
                raise self._error(f"{where}: its marker is past the end of the file",
                                  "header-field-out-of-bounds")
            _lba, csize = _GRAIN_MARKER.unpack_from(buf)
            if csize == 0 or csize > 2 * gs:
                raise self._error(f"{where}: its marker gives {csize} bytes of compressed data "
                                  f"(a grain is {gs} bytes)", "vmdk-bad-grain")
            stop = _GRAIN_MARKER.size + csize
            if at + stop > fsize:
                raise self._error(f"{where}: its {csize} bytes of compressed data run past the "
                                  f"end of the {fsize}-byte file", "header-field-out-of-bounds")
            if stop > got:
                more = bytearray(stop - got)
                self.container.readinto(at + got, memoryview(more))
                buf[got:] = more
            data = memoryview(buf)[_GRAIN_MARKER.size : stop]
        else:
            data = memoryview(buf)[: min(got, gs)]  # qemu inflates at most a grain of input
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, gs)
            if not d.eof and d.decompress(d.unconsumed_tail, 1):
                raise self._error(f"{where}: inflates to more than the {gs}-byte grain",
                                  "vmdk-bad-grain")
        except zlib.error as exc:
            raise self._error(f"{where}: bad zlib data ({exc})", "vmdk-bad-grain") from None
        if not d.eof:
            raise self._error(f"{where}: its zlib stream is truncated", "vmdk-bad-grain")
        tail = min(gs, self.size - grain * gs)
        if len(out) != gs and len(out) != tail:
            raise self._error(f"{where}: inflates to {len(out)} bytes, not {tail}",
                              "vmdk-bad-grain")
        if len(out) < gs:  # the last grain, written short: the rest lies past the size
            out += bytes(gs - len(out))
        return out

    def close(self) -> None:
        """Close the container."""
        self.container.close()
