"""Read an initramfs: concatenated cpio "newc" archives, each stored or compressed.

The Linux kernel unpacks an initramfs as a sequence of segments: an uncompressed cpio archive
(often early microcode, then "TRAILER!!!" and zero padding), then usually one compressed
archive (gzip, zstd, xz, lzma, bzip2 or lz4 legacy). This module walks those segments the
same way, streaming: it never holds a decompressed archive, only the entry names and the
sizes it needs. Bounds: ``MAX_INPUT`` bytes of the file, ``MAX_OUTPUT`` decompressed bytes in
all, ``MAX_ENTRIES`` entries, names of at most 4 KiB; past a bound the listing is marked
``truncated`` and ends there.
"""

from __future__ import annotations

import bz2
import lzma
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import zstandard

_inflateobj: Callable[[int], Any]
_INFLATE_ERRORS: tuple[type[Exception], ...]
try:  # ISA-L's inflate: zlib's API, 2-3x faster on initramfs-sized streams
    from isal import isal_zlib

    _inflateobj = isal_zlib.decompressobj
    _INFLATE_ERRORS = (zlib.error, cast("type[Exception]", isal_zlib.error))
except ImportError:  # pragma: no cover - isal is a dependency; zlib does the same, slower
    _inflateobj = zlib.decompressobj
    _INFLATE_ERRORS = (zlib.error,)
#: What a damaged compressed segment raises (it becomes the listing's ``problem``).
_SEGMENT_ERRORS: tuple[type[Exception], ...] = (
    ValueError, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, *_INFLATE_ERRORS)

MAX_INPUT = 512 << 20
MAX_OUTPUT = 4 << 30
MAX_ENTRIES = 200_000
_MAX_NAME = 4096
_CHUNK = 1 << 20

#: Magic -> compression name (as the kernel's decompress.c and initramfs-tools name them).
MAGICS = (
    (b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ\x00", "xz"),
    (b"\x02\x21\x4c\x18", "lz4"), (b"\x5d\x00\x00", "lzma"), (b"BZh", "bzip2"),
)

#: Modules that matter for booting a cloud guest, by role.
STORAGE = ("virtio_blk", "virtio_scsi", "virtio_pci", "nvme", "ahci", "ata_piix", "sd_mod",
           "scsi_mod", "libata", "xen_blkfront", "hv_storvsc", "vmw_pvscsi", "mptspi")
FILESYSTEMS = ("ext4", "xfs", "btrfs", "vfat", "jbd2")
MAPPER = ("dm_mod", "dm_crypt", "raid1", "md_mod")
INTERESTING = STORAGE + FILESYSTEMS + MAPPER

_NONZERO = re.compile(rb"[^\0]")
_HEX_FIELDS = re.compile(rb"[0-9A-Fa-f]{104}")
_MODULE_RE = re.compile(r"(?:^|/)lib/modules/([^/]+)/.*?([^/]+)\.ko(?:\.(?:xz|zst|gz))?$")


@dataclass(frozen=True)
class Entry:
    """One cpio entry: its name (no leading "./"), mode and data size."""

    name: str
    mode: int
    size: int


@dataclass(frozen=True)
class Segment:
    """One stretch of the file: where it starts, its compression (None: stored) and the number
    of entries it held."""

    offset: int
    compression: str | None
    entries: int


@dataclass(frozen=True)
class Listing:
    """What an initramfs holds."""

    segments: tuple[Segment, ...]
    entries: tuple[Entry, ...]
    truncated: bool = False
    #: Why the walk stopped early ("" when it read everything).
    problem: str = ""

    def names(self) -> set[str]:
        """All entry names."""
        return {e.name for e in self.entries}


@dataclass(frozen=True)
class InitramfsFacts:
    """The boot-relevant summary of one initramfs."""

    compression: tuple[str, ...]
    entries: int
    #: Kernel module names (dashes as underscores) found under lib/modules/VERSION/.
    modules: tuple[str, ...]
    module_versions: tuple[str, ...]
    #: INTERESTING module -> present.
    drivers: dict[str, bool] = field(hash=False, compare=False)
    lvm: bool = False
    crypt: bool = False
    mdadm: bool = False
    growroot: bool = False
    #: "initramfs-tools", "dracut" or None.
    generator: str | None = None
    truncated: bool = False
    problem: str = ""


def _newc_header(buf: bytes, pos: int) -> tuple[int, int, int] | str:
    """(mode, file size, name size) of the newc header at ``pos``, or why it is not one."""
    magic = bytes(buf[pos:pos + 6])
    if magic not in (b"070701", b"070702"):
        return f"not a cpio newc header: {magic!r}"
    if not _HEX_FIELDS.fullmatch(buf, pos + 6, pos + 110):
        return "cpio header with non-hex fields"
    fields = [int(buf[pos + 6 + 8 * k: pos + 14 + 8 * k], 16) for k in range(13)]
    namesize = fields[11]
    if namesize == 0 or namesize > _MAX_NAME:
        return f"cpio name size {namesize} out of bounds"
    return fields[1], fields[6], namesize


class _Cpio:
    """A streaming newc parser: feed() bytes, it appends entries and counts its bytes."""

    def __init__(self, sink: list[Entry], budget: list[int]) -> None:
        self.buf = bytearray()
        self.skip = 0
        self.sink = sink
        self.budget = budget  # [entries left]
        self.count = 0
        self.error = ""

    def feed(self, data: bytes) -> bool:
        """Consume ``data``; False once the stream is unusable (bad header, bound reached).
        Work is linear in the bytes fed: data is skipped by count, never copied."""
        if self.error:
            return False
        if self.skip:
            n = min(self.skip, len(data))
            self.skip -= n
            data = data[n:]
            if not data:
                return True
        # only a partial header is ever carried over, so this copies little
        buf: bytes = bytes(self.buf) + data if self.buf else data
        pos = 0
        try:
            while True:
                if self.skip:
                    n = min(self.skip, len(buf) - pos)
                    pos += n
                    self.skip -= n
                    if self.skip:
                        return True
                # zero padding between (and after) archives, skipped at C speed
                if pos < len(buf) and buf[pos] == 0:
                    m = _NONZERO.search(buf, pos)
                    pos = m.start() if m else len(buf)
                if len(buf) - pos < 110:
                    return True
                header = _newc_header(buf, pos)
                if isinstance(header, str):
                    self.error = header
                    return False
                mode, filesize, namesize = header
                head = (110 + namesize + 3) & ~3
                if len(buf) - pos < head:
                    return True
                name = bytes(buf[pos + 110:pos + 110 + namesize - 1]).decode("utf-8", "replace")
                pos += head
                self.skip = (filesize + 3) & ~3
                if name == "TRAILER!!!":
                    continue
                if self.budget[0] <= 0:
                    self.error = f"more than {MAX_ENTRIES} entries"
                    return False
                self.budget[0] -= 1
                self.count += 1
                while name.startswith("./"):
                    name = name[2:]
                self.sink.append(Entry(name.lstrip("/"), mode, filesize))
        finally:
            self.buf = bytearray(buf[pos:])

    def finished(self) -> bool:
        """True when the stream ended between entries."""
        return not self.skip and not any(self.buf)


def _decompressor(kind: str) -> Callable[[bytes], tuple[bytes, bool, bytes]]:
    """A function chunk -> (output, finished, unused input) for one compressed stream.
    Output per call is bounded by the chunk sizes the caller feeds."""
    if kind == "gzip":
        z = _inflateobj(16 + zlib.MAX_WBITS)
        def step(b: bytes) -> tuple[bytes, bool, bytes]:
            out = z.decompress(b, _CHUNK * 8)
            while z.unconsumed_tail and len(out) < _CHUNK * 64:
                out += z.decompress(z.unconsumed_tail, _CHUNK * 8)
            if z.unconsumed_tail:
                raise ValueError("gzip ratio too high")
            return out, z.eof, z.unused_data
        return step
    if kind in ("xz", "lzma"):
        lz = lzma.LZMADecompressor(lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)
        def step(b: bytes) -> tuple[bytes, bool, bytes]:
            out = lz.decompress(b, _CHUNK * 64)
            if not lz.eof and not lz.needs_input:
                raise ValueError(f"{kind} ratio too high")
            return out, lz.eof, lz.unused_data if lz.eof else b""
        return step
    if kind == "bzip2":
        bz = bz2.BZ2Decompressor()
        def step(b: bytes) -> tuple[bytes, bool, bytes]:
            out = bz.decompress(b, _CHUNK * 64)
            if not bz.eof and not bz.needs_input:
                raise ValueError("bzip2 ratio too high")
            return out, bz.eof, bz.unused_data if bz.eof else b""
        return step
    raise ValueError(kind)


def zstd_frame_end(data: bytes, pos: int) -> int | None:
    """Where the zstd frame at ``pos`` ends (RFC 8878: frame header, then blocks up to the
    last one, then the optional checksum), walking block headers only; None if the file
    ends first or a block is reserved."""
    if data[pos:pos + 4] != b"\x28\xb5\x2f\xfd" or pos + 5 > len(data):
        return None
    fhd = data[pos + 4]
    single = bool(fhd & 0x20)
    fcs = (0 if not single else 1, 2, 4, 8)[fhd >> 6]
    did = (0, 1, 2, 4)[fhd & 3]
    p = pos + 5 + (0 if single else 1) + did + fcs
    while p + 3 <= len(data):
        bh = int.from_bytes(data[p:p + 3], "little")
        last, btype, size = bh & 1, (bh >> 1) & 3, bh >> 3
        if btype == 3:
            return None
        p += 3 + (1 if btype == 1 else size)
        if last:
            p += 4 if fhd & 0x04 else 0
            return p if p <= len(data) else None
    return None


def _lz4_legacy(data: bytes, pos: int) -> Iterator[bytes | int]:
    """Blocks of an lz4 legacy stream at ``pos`` (after its magic); yields each block's output
    and last the offset where the stream ended."""
    import lz4.block

    limit = 8 << 20
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "little")
        if size == 0x184C2102 or size == 0 or size > limit + limit // 255 + 16:
            break
        block = data[pos + 4: pos + 4 + size]
        if len(block) < size:
            raise ValueError("lz4 block truncated")
        yield lz4.block.decompress(block, uncompressed_size=limit)
        pos += 4 + size
    yield pos


class _Walk:
    """The segment-by-segment walk of :func:`list_initramfs`."""

    def __init__(self, data: bytes, max_output: int, max_entries: int) -> None:
        self.data = data
        self.max_output = max_output
        self.out_left = max_output
        self.entries: list[Entry] = []
        self.segments: list[Segment] = []
        self.budget = [max_entries]
        self.problem = ""
        self.truncated = len(data) >= MAX_INPUT

    def emit(self, cp: _Cpio, out: bytes) -> bool:
        """Decompressed ``out`` to the cpio parser, counted against the output bound."""
        self.out_left -= len(out)
        if self.out_left < 0:
            raise ValueError(f"more than {self.max_output} bytes decompressed")
        return not out or cp.feed(out)

    def stored(self, pos: int) -> int:
        """A stored archive at ``pos``: parsed up to its trailer; returns where it ends."""
        data = self.data
        cp = _Cpio(self.entries, self.budget)
        end = pos
        while end < len(data):
            nxt = data.find(b"TRAILER!!!", end)
            stop = len(data) if nxt < 0 else min(len(data), (nxt + 11 + 3) & ~3)
            cp.feed(data[end:stop])
            end = stop
            if cp.error or (cp.finished() and not cp.skip):
                break
        self.problem = cp.error
        self.segments.append(Segment(pos, None, cp.count))
        return end

    def lz4(self, pos: int, cp: _Cpio) -> int:
        """An lz4 legacy stream (magic already checked); returns where it ends."""
        end = len(self.data)
        for piece in _lz4_legacy(self.data, pos + 4):
            if isinstance(piece, int):
                end = piece
                break
            if not self.emit(cp, piece):
                break
        return end

    def zstd(self, pos: int, cp: _Cpio) -> int:
        """One zstd frame, read 8 MiB at a time; returns where it ends."""
        frame_end = zstd_frame_end(self.data, pos)
        if frame_end is None:
            self.truncated = True
            raise ValueError("the zstd frame does not end in the file")
        reader = zstandard.ZstdDecompressor().stream_reader(
            memoryview(self.data)[pos:frame_end], read_across_frames=False)
        while out := reader.read(_CHUNK * 8):
            if not self.emit(cp, out):
                break
        return frame_end

    def stream(self, kind: str, pos: int, cp: _Cpio) -> int:
        """A gzip, xz, lzma or bzip2 stream fed 64 KiB at a time; returns where it ends."""
        step = _decompressor(kind)
        chunk = 64 << 10
        p = pos
        done = False
        while p < len(self.data) and not done:
            out, done, unused = step(self.data[p:p + chunk])
            p += min(chunk, len(self.data) - p) - (len(unused) if done else 0)
            if not self.emit(cp, out):
                break
        if not done and not cp.error:
            self.truncated = True
            self.problem = self.problem or f"{kind} stream at {pos} does not end"
        return p

    def compressed(self, kind: str, pos: int) -> int:
        """A compressed segment at ``pos``; returns where it ends."""
        cp = _Cpio(self.entries, self.budget)
        end = len(self.data)
        try:
            if kind == "lz4":
                end = self.lz4(pos, cp)
            elif kind == "zstd":
                end = self.zstd(pos, cp)
            else:
                end = self.stream(kind, pos, cp)
        except _SEGMENT_ERRORS as exc:
            self.problem = f"{kind} segment at {pos}: {exc}"
        self.problem = self.problem or cp.error
        self.segments.append(Segment(pos, kind, cp.count))
        return end

    def run(self) -> Listing:
        """Every segment until the data ends or one cannot be read."""
        data = self.data
        pos = 0
        while pos < len(data) and not self.problem:
            m = _NONZERO.search(data, pos)  # zero padding between segments
            if m is None:
                break
            pos = m.start()
            if data[pos:pos + 6] in (b"070701", b"070702"):
                pos = self.stored(pos)
                continue
            kind = next((k for magic, k in MAGICS if data.startswith(magic, pos)), None)
            if kind is None:
                self.problem = f"unknown data at offset {pos}: {data[pos:pos + 8].hex()}"
                break
            pos = self.compressed(kind, pos)
        if any(w in self.problem for w in ("entries", "decompressed", "ratio")):
            self.truncated = True
        return Listing(tuple(self.segments), tuple(self.entries), self.truncated, self.problem)


def list_initramfs(data: bytes, *, max_output: int = MAX_OUTPUT,
                   max_entries: int = MAX_ENTRIES) -> Listing:
    """Every entry of the initramfs ``data``, segment by segment."""
    return _Walk(data, max_output, max_entries).run()


def summarize(listing: Listing) -> InitramfsFacts:
    """Modules, drivers and the tools an initramfs carries."""
    mods: set[str] = set()
    versions: set[str] = set()
    names = listing.names()
    for e in listing.entries:
        m = _MODULE_RE.search(e.name)
        if m:
            versions.add(m.group(1))
            mods.add(m.group(2).replace("-", "_"))
    base = {n.rsplit("/", 1)[-1] for n in names}
    lvm = "lvm" in base and any(n.endswith(("bin/lvm", "sbin/lvm")) for n in names)
    crypt = "cryptsetup" in base or "dm_crypt" in mods
    generator = None
    if any(n.startswith(("scripts/", "conf/initramfs.conf")) for n in names):
        generator = "initramfs-tools"
    elif any("dracut" in n for n in names):
        generator = "dracut"
    growroot = any(n.endswith("/growroot") or n.endswith("growroot.sh") for n in names)
    return InitramfsFacts(
        tuple(s.compression or "none" for s in listing.segments), len(listing.entries),
        tuple(sorted(mods)), tuple(sorted(versions)), {d: d in mods for d in INTERESTING},
        lvm, crypt, "mdadm" in base, growroot, generator, listing.truncated, listing.problem)
