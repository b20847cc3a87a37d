"""A small read-only FAT12/16/32 reader over a Reader: BPB, FAT chains, directories with long
file names, path lookup. Enough to list an EFI system partition's loaders.

Layout from Microsoft's "FAT: General Overview of On-Disk Format" (fatgen103): the BPB in
sector 0, the FAT type decided by the count of data clusters (< 4085 FAT12, < 65525 FAT16,
else FAT32), 32-byte directory entries, VFAT long-name entries (attribute 0x0F) before their
short entry. Chains and directories are bounded, so a looping FAT cannot hang us.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from diskkit.errors import ImageError
from diskkit.readers.base import Reader

_ATTR_LFN = 0x0F
_ATTR_DIR = 0x10
_ATTR_VOLUME = 0x08
_MAX_DIR_ENTRIES = 65536
#: FAT bytes read at a time, and pages kept.
_FAT_PAGE = 64 << 10
_FAT_PAGES_CACHED = 64
#: Longest chain :meth:`FatFs.chain` returns (2^28 clusters is FAT32's most).
_MAX_CHAIN = 1 << 20


@dataclass(frozen=True)
class FatEntry:
    """A directory entry: long name (or the short one), attributes, first cluster, size."""

    name: str
    short_name: str
    is_dir: bool
    cluster: int
    size: int
    #: Last write date and time as stored: date << 16 | time (fatgen103), 0 when unknown.
    mtime: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "short_name": self.short_name, "is_dir": self.is_dir,
                "cluster": self.cluster, "size": self.size}


class FatFs:
    """A FAT filesystem read through ``reader`` (the partition's bytes)."""

    def __init__(self, reader: Reader) -> None:
        self.r = reader
        bs = reader.read(0, 512).ljust(512, b"\0")
        bps, spc, reserved, nfats, root_entries, total16 = struct.unpack_from("<HBHBHH", bs, 0x0B)
        fatsz16 = struct.unpack_from("<H", bs, 0x16)[0]
        total32, fatsz32 = struct.unpack_from("<II", bs, 0x20)
        if bps not in (512, 1024, 2048, 4096) or spc == 0 or spc & (spc - 1) or nfats == 0 \
                or reserved == 0:
            raise ImageError(f"{reader.name}: no valid FAT boot sector (BPB)", code="not-fat")
        self.bytes_per_sector = bps
        self.cluster_size = bps * spc
        self.fat_size = (fatsz16 or fatsz32) * bps
        total = (total16 or total32) * bps
        self.fat_offset = reserved * bps
        root_bytes = root_entries * 32
        self.root_offset = self.fat_offset + nfats * self.fat_size
        self.data_offset = self.root_offset + -(-root_bytes // bps) * bps
        if self.fat_size == 0 or total <= self.data_offset:
            raise ImageError(f"{reader.name}: FAT geometry does not fit its size", code="not-fat")
        self.clusters = (total - self.data_offset) // self.cluster_size
        self.bits = 12 if self.clusters < 4085 else 16 if self.clusters < 65525 else 32
        self.root_bytes = root_bytes
        self.root_cluster = struct.unpack_from("<I", bs, 0x2C)[0] if self.bits == 32 else 0
        self._pages: dict[int, bytes] = {}
        self._cursor: tuple[int, int, int] | None = None

    def _fat_bytes(self, at: int, n: int) -> bytes:
        """``n`` bytes of the first FAT at byte ``at``, read a page at a time (never the whole
        FAT: a hostile BPB can claim a 16 GiB one, issue 11)."""
        out = b""
        while n > 0:
            page, inner = divmod(at, _FAT_PAGE)
            data = self._pages.get(page)
            if data is None:
                if len(self._pages) >= _FAT_PAGES_CACHED:
                    self._pages.clear()
                start = page * _FAT_PAGE
                data = self.r.read(self.fat_offset + start,
                                   max(0, min(_FAT_PAGE, self.fat_size - start)))
                self._pages[page] = data
            piece = data[inner:inner + n]
            if not piece:
                break
            out += piece
            at += len(piece)
            n -= len(piece)
        return out

    def _next(self, cluster: int) -> int | None:
        if self.bits == 12:
            raw = self._fat_bytes(cluster + cluster // 2, 2)
            if len(raw) < 2:
                return None
            v = struct.unpack("<H", raw)[0]
            v = v >> 4 if cluster & 1 else v & 0xFFF
            return None if v >= 0xFF8 or v < 2 else v
        if self.bits == 16:
            raw = self._fat_bytes(cluster * 2, 2)
            if len(raw) < 2:
                return None
            v = struct.unpack("<H", raw)[0]
            return None if v >= 0xFFF8 or v < 2 else v
        raw = self._fat_bytes(cluster * 4, 4)
        if len(raw) < 4:
            return None
        v = struct.unpack("<I", raw)[0] & 0x0FFFFFFF
        return None if v >= 0x0FFFFFF8 or v < 2 else v

    def iter_chain(self, first: int, max_clusters: int) -> Iterator[int]:
        """The clusters of a chain from ``first``, lazily, at most ``max_clusters`` of them
        (so the memory of the loop check is bounded by the caller's need, not by a chain of
        30 million clusters, issue 11); stops at an out-of-range link or a loop."""
        seen: set[int] = set()
        cur: int | None = first
        while cur is not None and 2 <= cur < self.clusters + 2 and cur not in seen \
                and len(seen) < max_clusters:
            seen.add(cur)
            yield cur
            cur = self._next(cur)

    def chain(self, first: int, max_clusters: int = _MAX_CHAIN) -> list[int]:
        """The clusters of a chain from ``first`` (at most ``max_clusters``); stops at a loop
        or an out-of-range link."""
        return list(self.iter_chain(first, max_clusters))

    def read_chain(self, first: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of the cluster chain starting at ``first``."""
        parts: list[bytes] = []
        need = -(-max(0, limit) // self.cluster_size)
        for c in self.iter_chain(first, need):
            off = self.data_offset + (c - 2) * self.cluster_size
            parts.append(self.r.read(off, self.cluster_size))
        return b"".join(parts)[:limit]

    def read_range(self, entry: FatEntry, offset: int, length: int) -> bytes:
        """``length`` bytes of a file from ``offset`` (clipped to its size). Reading on from
        where the last call stopped resumes the chain there (no walk from the start)."""
        end = min(entry.size, offset + length)
        if offset >= end or not entry.cluster:
            return b""
        cs = self.cluster_size
        first_index, last_index = offset // cs, -(-end // cs)
        index, cur = 0, entry.cluster
        if self._cursor and self._cursor[0] == entry.cluster and \
                self._cursor[1] <= first_index:
            index, cur = self._cursor[1], self._cursor[2]
        parts: list[bytes] = []
        for c in self.iter_chain(cur, last_index - index):
            if index >= first_index:
                parts.append(self.r.read(self.data_offset + (c - 2) * cs, cs))
            self._cursor = (entry.cluster, index, c)
            index += 1
        data = b"".join(parts)
        skip = offset - first_index * cs
        return data[skip:skip + end - offset]

    def read_file(self, entry: FatEntry, limit: int = 64 << 20) -> bytes:
        """The first ``limit`` bytes of a file."""
        return self.read_chain(entry.cluster, min(entry.size, limit)) if entry.cluster else b""

    def _dir_bytes(self, cluster: int) -> bytes:
        if cluster == 0 and self.bits != 32:
            return self.r.read(self.root_offset, self.root_bytes)
        start = cluster or self.root_cluster
        return self.read_chain(start, _MAX_DIR_ENTRIES * 32)

    def listdir(self, cluster: int = 0) -> list[FatEntry]:
        """Entries of the directory at ``cluster`` (0: the root), without "." and ".."."""
        data = self._dir_bytes(cluster)
        out: list[FatEntry] = []
        lfn: dict[int, str] = {}
        for pos in range(0, len(data) - 31, 32):
            e = data[pos:pos + 32]
            if e[0] == 0:
                break
            if e[0] == 0xE5:
                lfn = {}
                continue
            attr = e[11]
            if attr == _ATTR_LFN:
                seq = e[0] & 0x1F
                chars = e[1:11] + e[14:26] + e[28:32]
                lfn[seq] = chars.decode("utf-16-le", "replace").split("\0", 1)[0]
                continue
            if attr & _ATTR_VOLUME:
                lfn = {}
                continue
            base = e[0:8].rstrip(b" ")
            ext = e[8:11].rstrip(b" ")
            if base[:1] == b"\x05":
                base = b"\xe5" + base[1:]
            # Windows NT case flags (byte 12): 0x08 lower-case base, 0x10 lower-case extension.
            sbase = base.decode("cp437")
            sext = ext.decode("cp437")
            short = sbase + ("." + sext if sext else "")
            shown = (sbase.lower() if e[12] & 0x08 else sbase) + (
                "." + (sext.lower() if e[12] & 0x10 else sext) if sext else "")
            name = "".join(lfn[k] for k in sorted(lfn)) if lfn else shown
            lfn = {}
            if short in (".", ".."):
                continue
            hi, lo = struct.unpack_from("<H", e, 20)[0], struct.unpack_from("<H", e, 26)[0]
            first = (hi << 16 | lo) if self.bits == 32 else lo
            size = struct.unpack_from("<I", e, 28)[0]
            mtime = struct.unpack_from("<H", e, 24)[0] << 16 | struct.unpack_from("<H", e, 22)[0]
            out.append(FatEntry(name, short, bool(attr & _ATTR_DIR), first, size, mtime))
        return out

    def lookup(self, path: str) -> FatEntry | None:
        """The entry at ``path`` ("/EFI/BOOT/BOOTX64.EFI", "\\" also accepted), matching names
        case-insensitively as FAT does; None when absent."""
        parts = [p for p in path.replace("\\", "/").split("/") if p]
        cluster = 0
        found: FatEntry | None = None
        for i, part in enumerate(parts):
            want = part.lower()
            found = next((e for e in self.listdir(cluster)
                          if want in (e.name.lower(), e.short_name.lower())), None)
            if found is None or (i < len(parts) - 1 and not found.is_dir):
                return None
            cluster = found.cluster
        return found


def is_fat(reader: Reader) -> bool:
    """True when ``reader`` starts with a plausible FAT boot sector."""
    try:
        FatFs(reader)
    except ImageError:
        return False
    bs = reader.read(0, 512)
    return len(bs) == 512 and bs[510:512] == b"\x55\xaa"
