"""The guest-visible disk of a VHDX image, read in pure Python (read-only, dynamic and fixed).

Facts from [MS-VHDX] and QEMU ``block/vhdx.c``/``vhdx.h``: the file identifier
(``vhdxfile``) at 0; two 4 KiB headers at 64 KiB and 128 KiB, the current one being the
valid one (signature ``head``, version 1, CRC-32C over its 4 KiB with the checksum field
zeroed) with the higher sequence number; a non-zero LogGuid in it means a log must be replayed
before the file is consistent. The 64 KiB region table at 192 KiB (CRC-32C too) locates the
BAT and the metadata region; the metadata gives the block size (a power of two, 1-256 MiB),
the logical sector size (512 or 4096), the virtual size and the HasParent flag.

The BAT holds one 64-bit entry per payload block (state in bits 0-2, file offset in MiB in
bits 20-63), with a sector bitmap entry after every ``chunk_ratio = 2**23 * logical sector
size / block size`` payload entries: payload block ``b`` is entry ``b + b // chunk_ratio``.
A dynamic or fixed disk has ``blocks + (blocks - 1) // chunk_ratio`` entries. Payload states:
0 NOT_PRESENT, 1 UNDEFINED, 2 ZERO, 3 UNMAPPED (5 in the 0.95 draft) read as zeros;
6 FULLY_PRESENT is read from the file; 7 PARTIALLY_PRESENT (differencing disks only) and 4
are refused.

What is refused (:class:`~diskkit.errors.ImageError`, one line, a stable code):
``vhdx-bad-header`` (no ``vhdxfile`` signature, no valid header, two different headers with
one sequence number), ``vhdx-log-pending`` (a log to replay: diskkit does not replay it),
``vhdx-bad-region-table``, ``vhdx-bad-metadata``, ``vhdx-differencing`` (HasParent: the data
lives partly in a parent file), ``vhdx-bad-bat`` (a BAT smaller than the virtual size needs,
an invalid block state, a block over the headers, log, BAT or metadata, more present blocks
than the file can hold), ``vhdx-truncated`` (a header, table or payload block past the end of
the file).

Speed and bounds: the BAT is read once, at open, in pieces of :data:`BAT_PIECE` bytes; the
state of every entry comes from one slice and one ``translate`` of the piece, present entries
are found with one regex scan, and a stretch of entries mapping consecutive file blocks is
recognised with a few comparisons (doubling, bisection, one array comparison). The map keeps
one run per stretch of guest blocks contiguous in the file, at most one per present block, and
present blocks are bounded by what the file can hold (``file size // block size + 1``). Reads
issue one ``readinto`` (``preadv``) per run straight into the caller's buffer; the map is never
changed after open, so reads from several threads are safe when the container's are.
"""

from __future__ import annotations

import re
import sys
import uuid
from array import array
from bisect import bisect_right
from collections.abc import Iterator

from diskkit.errors import ImageError, InternalError
from diskkit.formats.vhdx import (
    BAT_REGION,
    FILE_PARAMETERS,
    HEADER_OFFSETS,
    HEADER_SIZE,
    LOGICAL_SECTOR_SIZE,
    MAX_ENTRIES,
    METADATA_REGION,
    PAGE83_DATA,
    PARENT_LOCATOR,
    PHYSICAL_SECTOR_SIZE,
    REGION_TABLE,
    REGION_TABLE_SIZE,
    SIGNATURE,
    VIRTUAL_DISK_SIZE,
    FileParameters,
    MetadataEntry,
    MetadataTableHeader,
    RegionEntry,
    RegionTableHeader,
    VhdxHeader,
    checksum_ok,
)
from diskkit.readers.base import Extent, Reader, merge_extents
from diskkit.readers.qcow2_clusters import same_step

MiB = 1 << 20
#: The header section (identifier, headers, region tables) is the first MiB of the file.
HEADER_SECTION = MiB
MIN_BLOCK_SIZE = MiB
MAX_BLOCK_SIZE = 256 * MiB
#: [MS-VHDX]: a virtual disk of at most 64 TiB.
MAX_VIRTUAL_SIZE = 64 << 40
#: The metadata table is the first 64 KiB of the metadata region.
METADATA_TABLE_SIZE = 64 * 1024
#: Bytes of the BAT read and scanned at once (rounded to whole chunks).
BAT_PIECE = 1 << 20

NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED, UNMAPPED_V095 = 0, 1, 2, 3, 5
FULLY_PRESENT, PARTIALLY_PRESENT = 6, 7
_STATE_NAMES = {4: "4 (undefined by the specification)",
                PARTIALLY_PRESENT: "7 (PARTIALLY_PRESENT, valid only in a differencing disk)"}

_OFFSET_MASK = 0xFFFFFFFFFFF00000  # bits 20-63: file offset in MiB
_STATES = bytes(b & 7 for b in range(256))  # low byte of an entry -> its state
_PRESENT = re.compile(rb"\x06+")
_INVALID = re.compile(rb"[\x04\x07]")
_SWAP = sys.byteorder != "little"  # VHDX is little-endian
_ZEROS = memoryview(bytes(1 << 20))
_NO_GUID = bytes(16)


def _zero(view: memoryview) -> None:
    """Fill ``view`` with zeros (no allocation)."""
    pos, n = 0, len(view)
    while pos < n:
        k = min(n - pos, len(_ZEROS))
        view[pos : pos + k] = _ZEROS[:k]
        pos += k


class VhdxReader(Reader):
    """Read-only guest-visible disk of a dynamic or fixed VHDX image in ``container``.

    Everything is checked and the BAT mapped at construction (``ImageError`` there, never
    later). The reader owns ``container``: :meth:`close` closes it.
    """

    def __init__(self, container: Reader, *, name: str | None = None) -> None:
        self.container = container
        self.name = name or f"{container.name} (vhdx)"
        #: Reads are thread-safe when the container's are (pread on one descriptor).
        self.concurrent_reads = bool(getattr(container, "concurrent_reads", False))
        self._file_size = container.size
        self.header: VhdxHeader = self._current_header()
        if self.header.log_guid != _NO_GUID:
            raise ImageError(
                f"{self.name}: has a log to replay (LogGuid "
                f"{uuid.UUID(bytes_le=self.header.log_guid)}): its last writer did not finish "
                "cleanly; diskkit does not replay VHDX logs", code="vhdx-log-pending",
                hint="replay it on a trusted host (qemu-img check -r all, or attach it once "
                     "in Hyper-V), then retry")
        self._bat_region, self._meta_region = self._regions()
        self._metadata()
        bs, lss = self.block_size, self.logical_sector_size
        #: Payload blocks per sector bitmap entry in the BAT.
        self.chunk_ratio = (1 << 23) * lss // bs
        self.blocks = -(-self.size // bs)
        #: Entries the BAT has for this virtual size (payload and sector bitmap entries).
        self.bat_entries = self.blocks + (self.blocks - 1) // self.chunk_ratio \
            if self.blocks else 0
        # the map: runs of guest bytes [start, end) read from the file at host
        self._starts = array("Q")
        self._ends = array("Q")
        self._hosts = array("Q")
        self._map_bat()
        # data extents: runs adjacent in the guest merged (whatever their place in the file)
        self._dstarts = array("Q")
        self._dends = array("Q")
        for s, e in zip(self._starts, self._ends, strict=True):
            if self._dends and self._dends[-1] == s:
                self._dends[-1] = e
            else:
                self._dstarts.append(s)
                self._dends.append(e)

    # -- structure ---------------------------------------------------------------------

    def _error(self, code: str, msg: str) -> ImageError:
        return ImageError(f"{self.name}: {msg}", code=code)

    def _exact(self, offset: int, length: int, what: str) -> bytes:
        """``length`` bytes at ``offset``, or ``vhdx-truncated`` when they are not all in
        the file."""
        if offset < 0 or offset + length > self._file_size:
            raise self._error("vhdx-truncated",
                              f"{what} at {offset} (+{length} bytes) runs past the end of the "
                              f"{self._file_size}-byte file")
        data = self.container.read(offset, length)
        if len(data) != length:
            raise self._error("vhdx-truncated", f"{what} at {offset}: short read")
        return data

    def _current_header(self) -> VhdxHeader:
        if self._exact(0, len(SIGNATURE), "file identifier") != SIGNATURE:
            raise self._error("vhdx-bad-header", "not a VHDX file (no 'vhdxfile' signature)")
        valid = []
        for i, off in enumerate(HEADER_OFFSETS):
            raw = self._exact(off, HEADER_SIZE, f"header {i + 1}")
            h = VhdxHeader.parse(raw, 0, file_offset=off, what=f"VHDX header {i + 1}")
            if h.signature == b"head" and h.version == 1 and checksum_ok(raw):
                valid.append(h)
        if not valid:
            raise self._error("vhdx-bad-header", "neither header (64 KiB, 128 KiB) is valid "
                              "(signature 'head', version 1, CRC-32C checksum)")
        if len(valid) == 1:
            return valid[0]
        first, second = valid
        if first.sequence_number == second.sequence_number and first.raw != second.raw:
            raise self._error("vhdx-bad-header", "both headers carry sequence number "
                              f"{first.sequence_number} but differ: no current header")
        return second if second.sequence_number > first.sequence_number else first

    def _regions(self) -> tuple[RegionEntry, RegionEntry]:
        """The BAT and metadata region entries of the region table at 192 KiB."""
        raw = self._exact(REGION_TABLE, REGION_TABLE_SIZE, "region table")
        head = RegionTableHeader.parse(raw, 0, file_offset=REGION_TABLE,
                                       what="VHDX region table")
        if head.signature != b"regi" or not checksum_ok(raw):
            raise self._error("vhdx-bad-region-table", "the region table at 192 KiB is "
                              "invalid (signature 'regi', CRC-32C checksum)")
        if head.entry_count > MAX_ENTRIES:
            raise self._error("vhdx-bad-region-table", f"the region table claims "
                              f"{head.entry_count} entries (at most {MAX_ENTRIES})")
        found: dict[uuid.UUID, RegionEntry] = {}
        esize, start = RegionEntry.LAYOUT.size, RegionTableHeader.LAYOUT.size
        for i in range(head.entry_count):
            entry = RegionEntry.parse(raw, start + i * esize,
                                      file_offset=REGION_TABLE + start + i * esize,
                                      what="VHDX region entry")
            guid = uuid.UUID(bytes_le=entry.guid)
            if guid in (BAT_REGION, METADATA_REGION):
                if guid in found:
                    raise self._error("vhdx-bad-region-table",
                                      f"the region table lists region {guid} twice")
                found[guid] = entry
            elif entry.required & 1:
                raise self._error("vhdx-bad-region-table",
                                  f"requires region {guid}, which diskkit does not know")
        for guid, what in ((BAT_REGION, "BAT"), (METADATA_REGION, "metadata")):
            if guid not in found:
                raise self._error("vhdx-bad-region-table",
                                  f"the region table has no {what} region")
            entry = found[guid]
            if entry.region_offset < HEADER_SECTION:
                raise self._error("vhdx-bad-region-table", f"the {what} region at "
                                  f"{entry.region_offset} lies inside the header section")
            if entry.region_offset + entry.length > self._file_size:
                raise self._error("vhdx-truncated", f"the {what} region at "
                                  f"{entry.region_offset} (+{entry.length} bytes) runs past "
                                  f"the end of the {self._file_size}-byte file")
        bat, meta = found[BAT_REGION], found[METADATA_REGION]
        if bat.region_offset < meta.region_offset + meta.length and \
                meta.region_offset < bat.region_offset + bat.length:
            raise self._error("vhdx-bad-region-table",
                              "the BAT and metadata regions overlap")
        return bat, meta

    def _metadata(self) -> None:
        """Block size, logical sector size, virtual size (and refuse a differencing disk)."""
        region = self._meta_region
        table_size = min(region.length, METADATA_TABLE_SIZE)
        hsize, esize = MetadataTableHeader.LAYOUT.size, MetadataEntry.LAYOUT.size
        if table_size < hsize:
            raise self._error("vhdx-bad-metadata",
                              f"the metadata region is {region.length} bytes long")
        raw = self._exact(region.region_offset, table_size, "metadata table")
        head = MetadataTableHeader.parse(raw, 0, file_offset=region.region_offset,
                                         what="VHDX metadata table")
        if head.signature != b"metadata":
            raise self._error("vhdx-bad-metadata", "the metadata table has no 'metadata' "
                              "signature")
        if head.entry_count > MAX_ENTRIES or hsize + head.entry_count * esize > table_size:
            raise self._error("vhdx-bad-metadata", f"the metadata table claims "
                              f"{head.entry_count} entries (at most {MAX_ENTRIES})")
        known = {FILE_PARAMETERS, VIRTUAL_DISK_SIZE, LOGICAL_SECTOR_SIZE, PAGE83_DATA,
                 PHYSICAL_SECTOR_SIZE, PARENT_LOCATOR}
        items: dict[uuid.UUID, MetadataEntry] = {}
        for i in range(head.entry_count):
            at = hsize + i * esize
            entry = MetadataEntry.parse(raw, at, file_offset=region.region_offset + at,
                                        what="VHDX metadata entry")
            guid = uuid.UUID(bytes_le=entry.item_id)
            if guid in known:
                if guid in items:
                    raise self._error("vhdx-bad-metadata",
                                      f"the metadata table lists item {guid} twice")
                items[guid] = entry
            elif entry.flags & 4:  # IsRequired
                raise self._error("vhdx-bad-metadata",
                                  f"requires metadata item {guid}, which diskkit does not know")

        def item(guid: uuid.UUID, size: int, what: str) -> bytes:
            if guid not in items:
                raise self._error("vhdx-bad-metadata", f"the metadata has no {what} item")
            entry = items[guid]
            if entry.length < size or entry.item_offset + size > region.length:
                raise self._error("vhdx-bad-metadata", f"the {what} item (offset "
                                  f"{entry.item_offset}, {entry.length} bytes) does not fit "
                                  f"the {region.length}-byte metadata region")
            return self._exact(region.region_offset + entry.item_offset, size,
                               f"metadata item {what}")

        psize = FileParameters.LAYOUT.size
        at = region.region_offset + items[FILE_PARAMETERS].item_offset \
            if FILE_PARAMETERS in items else 0
        #: The File Parameters item (block size, LeaveBlocksAllocated, HasParent).
        self.params = FileParameters.parse(item(FILE_PARAMETERS, psize, "file parameters"), 0,
                                           file_offset=at, what="VHDX file parameters")
        if self.params.has_parent:
            raise ImageError(
                f"{self.name}: is a differencing disk (HasParent): part of its data lives "
                "in a parent file, which diskkit does not open", code="vhdx-differencing",
                hint="merge it into its parent on a trusted host, then use the result")
        size = int.from_bytes(item(VIRTUAL_DISK_SIZE, 8, "virtual disk size"), "little")
        lss = int.from_bytes(item(LOGICAL_SECTOR_SIZE, 4, "logical sector size"), "little")
        bs = self.params.block_size
        if bs < MIN_BLOCK_SIZE or bs > MAX_BLOCK_SIZE or bs & (bs - 1):
            raise self._error("vhdx-bad-metadata", f"block size {bs} is not a power of two "
                              "from 1 MiB to 256 MiB")
        if lss not in (512, 4096):
            raise self._error("vhdx-bad-metadata", f"logical sector size {lss} is neither "
                              "512 nor 4096")
        if size % lss or size > MAX_VIRTUAL_SIZE:
            raise self._error("vhdx-bad-metadata", f"virtual size {size} is not a multiple "
                              f"of the {lss}-byte sector or is over 64 TiB")
        #: Payload block size in bytes.
        self.block_size = bs
        #: Logical sector size (512 or 4096).
        self.logical_sector_size = lss
        self.size = size

    # -- the BAT -----------------------------------------------------------------------

    def _map_bat(self) -> None:
        """Read the BAT in pieces and build the runs of fully present blocks."""
        bat, entries = self._bat_region, self.bat_entries
        if entries * 8 > bat.length:
            raise self._error("vhdx-bad-bat", f"virtual size {self.size} with "
                              f"{self.block_size}-byte blocks needs {entries} BAT entries "
                              f"({entries * 8} bytes); the BAT region holds {bat.length}")
        per = self.chunk_ratio + 1
        piece = max(1, BAT_PIECE // 8 // per) * per  # whole chunks: bitmaps at cr::per
        limit = self._file_size // self.block_size + 1  # most blocks the file can hold
        present = 0
        for base in range(0, entries, piece):
            n = min(piece, entries - base)
            raw = self._exact(bat.region_offset + base * 8, n * 8, "BAT")
            table = array("Q", raw)
            if _SWAP:
                table.byteswap()
            states = bytearray(raw[0::8].translate(_STATES))  # little-endian: low byte first
            cr = self.chunk_ratio
            if n > cr:  # sector bitmap entries: not payload
                states[cr::per] = bytes(len(range(cr, n, per)))
            bad = _INVALID.search(states)
            if bad is not None:
                block = self._block_of(base + bad.start())
                raise self._error("vhdx-bad-bat", f"payload block {block} has state "
                                  f"{_STATE_NAMES[states[bad.start()]]}")
            for m in _PRESENT.finditer(states):
                i, j = m.start(), m.end()
                present += j - i
                if present > limit:
                    raise self._error("vhdx-bad-bat", f"the BAT marks more than {limit} "
                                      f"blocks present; a {self._file_size}-byte file cannot "
                                      "hold them (blocks shared by several entries?)")
                while i < j:
                    value = table[i]
                    k = same_step(table, i, value, self.block_size, j - i)
                    self._add(self._block_of(base + i), k, value & _OFFSET_MASK)
                    i += k

    def _block_of(self, entry: int) -> int:
        """The payload block of BAT entry ``entry``."""
        return entry - entry // (self.chunk_ratio + 1)

    def _add(self, block: int, count: int, host: int) -> None:
        """Map ``count`` blocks from ``block`` to the file from ``host`` (checked first)."""
        bs = self.block_size
        g = block * bs
        g_end = min((block + count) * bs, self.size)  # the last block may be partial
        end = host + (g_end - g)
        h = self.header
        for start, length, what in ((0, HEADER_SECTION, "header section"),
                                    (h.log_offset, h.log_length, "log"),
                                    (self._bat_region.region_offset, self._bat_region.length,
                                     "BAT"),
                                    (self._meta_region.region_offset, self._meta_region.length,
                                     "metadata region")):
            if length and host < start + length and start < end:
                first = block + max(0, start - host) // bs
                raise self._error("vhdx-bad-bat", f"payload block {first} at file offset "
                                  f"{host + (first - block) * bs} overlaps the {what}")
        if end > self._file_size:
            first = block + max(0, self._file_size - host) // bs
            raise self._error("vhdx-truncated", f"payload block {first} at file offset "
                              f"{host + (first - block) * bs} runs past the end of the "
                              f"{self._file_size}-byte file")
        if self._ends and self._ends[-1] == g and \
                self._hosts[-1] + (g - self._starts[-1]) == host:
            self._ends[-1] = g_end
            return
        self._starts.append(g)
        self._ends.append(g_end)
        self._hosts.append(host)

    # -- layout ------------------------------------------------------------------------

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        """Data extents and the zero ranges between them, clipped to the virtual size.

        Data is what fully present blocks hold where the file itself holds data: qemu
        allocates a whole block (32 MiB by default) for the first byte written into it and
        leaves the rest a hole in the host file, so the container's own map (SEEK_DATA /
        SEEK_HOLE for a file) is asked about each present run, and its holes read as zeros
        (measured: a 2 GiB disk with 512 MiB of data in 4 MiB runs has 2 GiB of present
        blocks). Not present, zero and unmapped blocks are zero ranges."""
        return merge_extents(self._extents(offset, length))

    def _extents(self, offset: int, length: int | None) -> Iterator[Extent]:
        end = self.size if length is None else min(self.size, offset + length)
        pos = max(0, offset)
        starts, ends, hosts = self._starts, self._ends, self._hosts
        k = bisect_right(ends, pos)
        while pos < end:
            if k >= len(starts) or starts[k] >= end:
                yield Extent(pos, end - pos, False)
                return
            s = max(starts[k], pos)
            if s > pos:
                yield Extent(pos, s - pos, False)
            e = min(ends[k], end)
            shift = hosts[k] - starts[k]
            for ce in self.container.extents(s + shift, e - s):
                yield Extent(ce.offset - shift, ce.length, ce.data)
            pos = e
            k += 1

    def runs(self) -> list[tuple[int, int, int]]:
        """(guest offset, length, file offset) of every stretch of fully present blocks
        contiguous in the file, in guest order."""
        return [(s, e - s, h) for s, e, h in zip(self._starts, self._ends, self._hosts,
                                                  strict=True)]

    # -- reading -----------------------------------------------------------------------

    def _fill(self, offset: int, view: memoryview, zeroed: bool) -> None:
        """Read the guest bytes at ``offset`` into ``view`` (within the virtual size);
        ``zeroed`` says ``view`` holds zeros already."""
        end = offset + len(view)
        starts, ends, hosts = self._starts, self._ends, self._hosts
        nruns = len(starts)
        pos = offset
        k = bisect_right(ends, offset)  # the first run that ends after offset
        while pos < end:
            if k >= nruns or starts[k] >= end:
                if not zeroed:
                    _zero(view[pos - offset :])
                return
            s = starts[k]
            if s > pos:
                if not zeroed:
                    _zero(view[pos - offset : s - offset])
                pos = s
            e = min(ends[k], end)
            part = view[pos - offset : e - offset]
            got = self.container.readinto(hosts[k] + (pos - s), part)
            if got < len(part) and not zeroed:  # the file shrank under us: zeros
                _zero(part[got:])
            pos = e
            k += 1

    def _read(self, offset: int, length: int) -> bytes:
        k = bisect_right(self._ends, offset)
        if k >= len(self._starts) or self._starts[k] >= offset + length:
            return bytes(length)  # no data in the range
        if self._starts[k] <= offset and self._ends[k] >= offset + length:  # one run
            got = self.container.read(self._hosts[k] + (offset - self._starts[k]), length)
            return got + bytes(length - len(got))
        buf = bytearray(length)
        self._fill(offset, memoryview(buf), True)
        return bytes(buf)

    def readinto(self, offset: int, buf: memoryview) -> int:
        """Read ``len(buf)`` bytes at ``offset`` straight into ``buf``: one ``readinto`` of
        the container per run, zeros written between them; fewer only at the end."""
        if offset < 0:
            raise InternalError(f"read at a negative offset ({offset})")
        view = memoryview(buf).cast("B")
        n = min(len(view), max(0, self.size - offset))
        if n:
            self._fill(offset, view[:n], False)
        return n

    def close(self) -> None:
        """Close the container."""
        self.container.close()
