"""A minimal read-only ext2/3/4 path lookup over a Reader (is /boot/grub/grub.cfg there?).

Structures from the kernel's Documentation/filesystems/ext4 (on-disk layout): the superblock at
byte 1024 (magic 0xEF53 at 0x38), group descriptors in the block after it, inodes with either
the classic block map (12 direct, 1 indirect, 1 double, 1 triple) or an extent tree (header
magic 0xF30A), and linear directory entries (hashed directories stay linearly readable).
Only what a path lookup needs; every count and offset is bounded.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from diskkit.errors import ImageError
from diskkit.readers.base import Reader

EXT_MAGIC = 0xEF53
_INCOMPAT_EXTENTS = 0x40
_INCOMPAT_64BIT = 0x80
_INCOMPAT_META_BG = 0x10
_INLINE_DATA_FL = 0x10000000
_EXTENTS_FL = 0x80000
_MAX_DIR_BYTES = 16 << 20
_MAX_DEPTH = 5
#: Extent tree nodes read for one file (a 64 MiB read needs a handful).
_MAX_EXTENT_NODES = 4096
ROOT_INODE = 2


@dataclass(frozen=True)
class ExtInode:
    """The bits of an inode a lookup needs."""

    number: int
    mode: int
    size: int
    flags: int
    block: bytes  # the 60-byte i_block area
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    #: The inode's bytes after the first 128 (i_extra_isize, in-inode extended attributes).
    extra: bytes = b""

    @property
    def is_dir(self) -> bool:
        """S_IFDIR."""
        return (self.mode & 0xF000) == 0x4000


class ExtFs:
    """An ext2/3/4 filesystem read through ``reader`` (a partition or an LV)."""

    def __init__(self, reader: Reader) -> None:
        self.r = reader
        sb = reader.read(1024, 1024)
        if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != EXT_MAGIC:
            raise ImageError(f"{reader.name}: no ext2/3/4 superblock", code="not-ext")
        log_block = struct.unpack_from("<I", sb, 0x18)[0]
        if log_block > 6:
            raise ImageError(f"{reader.name}: ext block size 2^{10 + log_block} is invalid")
        self.block_size = 1024 << log_block
        self.inodes_count = struct.unpack_from("<I", sb, 0x00)[0]
        self.first_data_block = struct.unpack_from("<I", sb, 0x14)[0]
        self.inodes_per_group = struct.unpack_from("<I", sb, 0x28)[0]
        rev = struct.unpack_from("<I", sb, 0x4C)[0]
        self.inode_size = struct.unpack_from("<H", sb, 0x58)[0] if rev >= 1 else 128
        self.incompat = struct.unpack_from("<I", sb, 0x60)[0]
        desc = struct.unpack_from("<H", sb, 0xFE)[0]
        self.desc_size = desc if (self.incompat & _INCOMPAT_64BIT) and desc >= 64 else 32
        self.blocks_per_group = struct.unpack_from("<I", sb, 0x20)[0]
        self.first_meta_bg = struct.unpack_from("<I", sb, 0x104)[0]
        self.sparse_super = bool(struct.unpack_from("<I", sb, 0x64)[0] & 0x1)
        if not (128 <= self.inode_size <= self.block_size) or self.inodes_per_group == 0:
            raise ImageError(f"{reader.name}: implausible ext inode geometry")

    def _has_super(self, group: int) -> bool:
        """Whether ``group`` holds a superblock backup (sparse_super: 0, 1, powers of 3, 5
        and 7; else every group)."""
        if not self.sparse_super or group <= 1:
            return True
        for base in (3, 5, 7):
            n = base
            while n < group:
                n *= base
            if n == group:
                return True
        return False

    def _desc_offset(self, group: int) -> int:
        """Byte offset of ``group``'s descriptor: after the superblock for the classic layout;
        with META_BG, in the first (or second, after a superblock backup) block of the first
        group of its meta group (kernel fs/ext4/super.c descriptor_loc())."""
        per_block = self.block_size // self.desc_size
        meta = group // per_block
        if not (self.incompat & _INCOMPAT_META_BG) or meta < self.first_meta_bg:
            return (self.first_data_block + 1) * self.block_size + group * self.desc_size
        first = meta * per_block
        block = self.first_data_block + first * self.blocks_per_group + \
            (1 if self._has_super(first) else 0)
        return block * self.block_size + (group % per_block) * self.desc_size

    def _block(self, n: int, count: int = 1) -> bytes:
        return self.r.read(n * self.block_size, count * self.block_size)

    def inode(self, number: int) -> ExtInode:
        """Read inode ``number`` (1-based)."""
        if not 1 <= number <= self.inodes_count:
            raise ImageError(f"{self.r.name}: inode {number} out of range")
        group, index = divmod(number - 1, self.inodes_per_group)
        gdt = self._desc_offset(group)
        desc = self.r.read(gdt, self.desc_size).ljust(64, b"\0")
        table = struct.unpack_from("<I", desc, 0x08)[0]
        if self.desc_size >= 64:
            table |= struct.unpack_from("<I", desc, 0x28)[0] << 32
        raw = self.r.read(table * self.block_size + index * self.inode_size,
                          max(160, self.inode_size)).ljust(160, b"\0")
        mode = struct.unpack_from("<H", raw, 0x00)[0]
        size_lo = struct.unpack_from("<I", raw, 0x04)[0]
        flags = struct.unpack_from("<I", raw, 0x20)[0]
        size_hi = struct.unpack_from("<I", raw, 0x6C)[0]
        uid = struct.unpack_from("<H", raw, 0x02)[0] | struct.unpack_from("<H", raw, 0x78)[0] << 16
        gid = struct.unpack_from("<H", raw, 0x18)[0] | struct.unpack_from("<H", raw, 0x7A)[0] << 16
        mtime = struct.unpack_from("<i", raw, 0x10)[0]
        return ExtInode(number, mode, size_lo | (size_hi << 32), flags, raw[0x28:0x28 + 60],
                        uid, gid, mtime, raw[128:] if self.inode_size > 128 else b"")

    def inline_data(self, ino: ExtInode) -> bytes:
        """An inline-data inode's bytes: i_block, then the in-inode "system.data" extended
        attribute (kernel fs/ext4/inline.c; the xattr layout of fs/ext4/xattr.h)."""
        data = ino.block
        extra = ino.extra
        if len(extra) >= 4:
            isize = struct.unpack_from("<H", extra, 0)[0]
            body = extra[isize:] if 4 <= isize <= len(extra) - 4 else b""
            if body[:4] == b"\x00\x00\x02\xea":  # EXT4_XATTR_MAGIC 0xEA020000, LE
                entries = body[4:]
                pos = 0
                while pos + 16 <= len(entries) and entries[pos:pos + 4] != b"\0\0\0\0":
                    nlen, nidx, voff = struct.unpack_from("<BBH", entries, pos)
                    vsize = struct.unpack_from("<I", entries, pos + 8)[0]
                    name = entries[pos + 16:pos + 16 + nlen]
                    if nidx == 7 and name == b"data" and voff + vsize <= len(entries):
                        data += entries[voff:voff + vsize]
                        break
                    pos += (16 + nlen + 3) & ~3
        return data[:ino.size] if not ino.is_dir else data

    def readlink(self, ino: ExtInode) -> str:
        """The target of a symlink inode: in i_block when shorter than 60 bytes ("fast"
        symlink), else its data (at most 4096 bytes)."""
        size = min(ino.size, 4096)
        # The kernel's ext4_inode_is_fast_symlink(): shorter than i_block means in i_block.
        if ino.flags & _INLINE_DATA_FL:
            data = self.inline_data(ino)[:size]
        else:
            data = ino.block[:size] if size < 60 else self.read_file(ino, size)
        return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    def _extent_blocks(self, node: bytes, depth_left: int, nblocks: int,
                       budget: list[int] | None = None, want_depth: int | None = None,
                       lo: int = 0) -> Iterator[tuple[int, int, int]]:
        """(logical block, physical block, length) of the extents below ``node`` that start
        before ``nblocks``, in logical order and without overlap.

        Bounded (issue 11: a tree whose every index entry points at the same wide node made
        the old walk read the same blocks millions of times): a node's depth must be its
        parent's minus one, its entry count within its own capacity, index and leaf entries
        must go up strictly in logical order; subtrees that start past ``nblocks`` are not
        read; at most :data:`_MAX_EXTENT_NODES` nodes per file.
        """
        if budget is None:
            budget = [_MAX_EXTENT_NODES]
        budget[0] -= 1
        if budget[0] < 0:
            raise ImageError(f"{self.r.name}: ext4 extent tree has more than "
                             f"{_MAX_EXTENT_NODES} nodes", code="ext-extent-bound")
        if len(node) < 12:
            raise ImageError(f"{self.r.name}: short ext4 extent node", code="ext-extent-bad")
        magic, entries, cap, depth = struct.unpack_from("<HHHH", node, 0)
        if magic != 0xF30A or depth > depth_left or \
                (want_depth is not None and depth != want_depth):
            raise ImageError(f"{self.r.name}: bad ext4 extent header", code="ext-extent-bad")
        if entries > cap or entries > (len(node) - 12) // 12:
            raise ImageError(f"{self.r.name}: ext4 extent node claims {entries} entries",
                             code="ext-extent-bad")
        last = lo - 1
        if depth == 0:
            for i in range(entries):
                lblock, length, hi, lo32 = struct.unpack_from("<IHHI", node, 12 + 12 * i)
                if lblock <= last:
                    raise ImageError(f"{self.r.name}: ext4 extents out of order",
                                     code="ext-extent-bad")
                if lblock >= nblocks:
                    return
                if length > 32768:  # an unwritten extent reads as zeros: skip it
                    length -= 32768
                    last = lblock + length - 1
                    continue
                last = lblock + max(length, 1) - 1
                yield lblock, (hi << 32) | lo32, length
            return
        index = [struct.unpack_from("<IIH", node, 12 + 12 * i) for i in range(entries)]
        for i, (lblock, leaf_lo, leaf_hi) in enumerate(index):
            if lblock <= last and i:
                raise ImageError(f"{self.r.name}: ext4 extent index out of order",
                                 code="ext-extent-bad")
            last = lblock
            if lblock >= nblocks:
                return
            child = self._block((leaf_hi << 32) | leaf_lo)
            yield from self._extent_blocks(child, depth - 1, nblocks, budget, depth - 1,
                                           lblock)

    def _map_blocks(self, ino: ExtInode, nblocks: int, first: int = 0
                    ) -> Iterator[tuple[int, int, int]]:
        """Runs (logical, physical, length) of a block-mapped inode between blocks ``first``
        and ``nblocks``: indirect subtrees wholly before ``first`` are not read, physically
        contiguous blocks are merged into one run."""
        return _merge_runs(self._map_singles(ino, nblocks, first))

    def _map_singles(self, ino: ExtInode, nblocks: int, first: int
                     ) -> Iterator[tuple[int, int, int]]:
        ptrs = struct.unpack_from("<15I", ino.block)
        for i in range(min(12, nblocks)):
            if ptrs[i] and i >= first:
                yield i, ptrs[i], 1
        per = self.block_size // 4
        logical = 12
        for level, ptr in ((1, ptrs[12]), (2, ptrs[13]), (3, ptrs[14])):
            span = per ** level
            if logical >= nblocks:
                return
            if ptr and logical + span > first:
                yield from self._indirect(ptr, level, logical, nblocks, first)
            logical += span

    def _indirect(self, ptr: int, level: int, logical: int, nblocks: int, first: int = 0
                  ) -> Iterator[tuple[int, int, int]]:
        per = self.block_size // 4
        table = struct.unpack(f"<{per}I", self._block(ptr).ljust(self.block_size, b"\0"))
        span = per ** (level - 1)
        for i, child in enumerate(table):
            here = logical + i * span
            if here >= nblocks:
                return
            if not child or here + span <= first:
                continue
            if level == 1:
                yield here, child, 1
            else:
                yield from self._indirect(child, level - 1, here, nblocks, first)

    def read_file(self, ino: ExtInode, limit: int = _MAX_DIR_BYTES) -> bytes:
        """The contents of ``ino`` (up to ``limit`` bytes); holes read as zeros."""
        return self.read_range(ino, 0, min(ino.size, limit))

    def read_range(self, ino: ExtInode, offset: int, length: int) -> bytes:
        """``length`` bytes of ``ino`` from ``offset`` (clipped to its size); holes read as
        zeros. Each block is read at most once, whatever the extent tree claims."""
        end = min(ino.size, offset + length)
        if offset >= end:
            return b""
        if ino.flags & _INLINE_DATA_FL:
            return self.inline_data(ino)[offset:end]
        bs = self.block_size
        first, nblocks = offset // bs, -(-end // bs)
        buf = bytearray((nblocks - first) * bs)
        if ino.flags & _EXTENTS_FL:
            runs = self._extent_blocks(ino.block, _MAX_DEPTH, nblocks)
        else:
            runs = self._map_blocks(ino, nblocks, first)
        covered = first  # logical blocks below this are done: each is read at most once
        for lblock, pblock, length_ in runs:
            stop = min(lblock + length_, nblocks)
            start = max(lblock, covered)
            if start >= stop:
                continue
            data = self._block(pblock + (start - lblock), stop - start)
            at = (start - first) * bs
            buf[at:at + len(data)] = data
            covered = stop
        skip = offset - first * bs
        return bytes(buf[skip:skip + end - offset])

    def listdir(self, ino: ExtInode) -> dict[str, int]:
        """Names -> inode numbers of a directory."""
        if ino.flags & _INLINE_DATA_FL:
            # Inline directory: the parent's inode number, then entries, in i_block (and on
            # in system.data, a second run of entries).
            inline = self.inline_data(ino)
            out = self._entries(inline[4:60])
            out.update(self._entries(inline[60:]))
            return out
        return self._entries(self.read_file(ino))

    @staticmethod
    def _entries(data: bytes) -> dict[str, int]:
        out: dict[str, int] = {}
        pos = 0
        while pos + 8 <= len(data):
            inum, rec_len, name_len = struct.unpack_from("<IHB", data, pos)
            if rec_len < 8 or pos + rec_len > len(data):
                break
            if inum and name_len and 8 + name_len <= rec_len:
                out[data[pos + 8:pos + 8 + name_len].decode("utf-8", "replace")] = inum
            pos += rec_len
        return out

    def lookup(self, path: str) -> ExtInode | None:
        """The inode at ``path`` ("/boot/grub/grub.cfg"), or None when it does not exist."""
        ino = self.inode(ROOT_INODE)
        for part in [p for p in path.split("/") if p]:
            if not ino.is_dir:
                return None
            num = self.listdir(ino).get(part)
            if num is None:
                return None
            ino = self.inode(num)
        return ino


def _merge_runs(runs: Iterator[tuple[int, int, int]]) -> Iterator[tuple[int, int, int]]:
    """Adjacent runs that are contiguous both logically and physically, as one (at most
    32768 blocks, so one read stays bounded)."""
    cur: tuple[int, int, int] | None = None
    for lb, pb, n in runs:
        if cur is not None and cur[0] + cur[2] == lb and cur[1] + cur[2] == pb \
                and cur[2] + n <= 32768:
            cur = (cur[0], cur[1], cur[2] + n)
            continue
        if cur is not None:
            yield cur
        cur = (lb, pb, n)
    if cur is not None:
        yield cur


def is_ext(reader: Reader) -> bool:
    """True when ``reader`` starts with an ext2/3/4 superblock."""
    sb = reader.read(1024 + 0x38, 2)
    return len(sb) == 2 and struct.unpack("<H", sb)[0] == EXT_MAGIC
