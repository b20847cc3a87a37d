"""Builders of the crafted filesystems of issue 11 (used by tests/guest/test_fs_hostile.py).

Each builds a real filesystem with the real mkfs tool, then changes the few bytes the attack
needs, so the rest of the image is what a reader expects.
"""

from __future__ import annotations

import pathlib
import re
import struct

from diskkit.runner import run

BS = 4096


def ext_fanout(tmp: pathlib.Path, depth: int, ordered: bool = True) -> pathlib.Path:
    """An ext4 image whose /victim has an extent tree of ``depth`` index levels, each node
    full (340 entries of 4 KiB nodes) and every index entry pointing at the same next-level
    node (logical numbers going up along every path, so only a work bound stops it); i_size
    says 128 MiB. With ``ordered`` False, every entry starts at logical block 0 and every
    leaf extent is 32768 blocks long (the shape of the issue's attack). The old walk read
    the same blocks millions of times (25 s at depth 1, ~35 min at depth 2)."""
    root = tmp / "root"
    root.mkdir()
    (root / "victim").write_bytes(b"v" * 65536)
    img = tmp / f"fanout{depth}.img"
    run(["mkfs.ext4", "-q", "-F", "-b", str(BS), "-O", "^metadata_csum,^has_journal",
         "-d", str(root), str(img), "64M"], timeout=60)
    out = run(["debugfs", "-R", "imap /victim", str(img)], timeout=30).stdout
    m = re.search(r"located at block (\d+), offset 0x([0-9a-f]+)", out)
    assert m, out
    inode_at = int(m.group(1)) * BS + int(m.group(2), 16)
    per = (BS - 12) // 12  # 340
    first_node = 12000  # free blocks near the end of the 16384-block filesystem
    with open(img, "r+b") as f:
        # Node of level k (1..depth) at block first_node + k - 1; level `depth` is the leaf.
        # Logical block numbers go up along every path (so the tree is well ordered): the
        # root's entries are 0..3, a level-k node's entries start at the last one of its
        # parent's, the leaf's extents (one block each) after the last index entry.
        base = 3
        for level in range(1, depth + 1):
            node_depth = depth - level
            node = bytearray(BS)
            struct.pack_into("<HHHHI", node, 0, 0xF30A, per, per, node_depth, 0)
            for i in range(per):
                if node_depth == 0:
                    struct.pack_into("<IHHI", node, 12 + 12 * i, base + i if ordered else 0,
                                     1 if ordered else 32768, 0, 100 + i)
                else:
                    struct.pack_into("<IIHH", node, 12 + 12 * i, base + i if ordered else 0,
                                     first_node + level, 0, 0)
            base += per - 1
            f.seek((first_node + level - 1) * BS)
            f.write(node)
        iblock = bytearray(60)
        struct.pack_into("<HHHHI", iblock, 0, 0xF30A, 4, 4, depth, 0)
        for i in range(4):
            struct.pack_into("<IIHH", iblock, 12 + 12 * i, i if ordered else 0, first_node,
                             0, 0)
        f.seek(inode_at + 0x28)
        f.write(iblock)
        f.seek(inode_at + 0x04)
        f.write(struct.pack("<I", 128 << 20))
    return img


def fat32_boot(total_sectors: int, fat_sectors: int, bps: int = 512, spc: int = 1,
               reserved: int = 32) -> bytearray:
    """A FAT32 boot sector (fatgen103 BPB) with these numbers."""
    b = bytearray(512)
    b[0:3] = b"\xeb\x58\x90"
    b[3:11] = b"MSWIN4.1"
    struct.pack_into("<HBHBHHBHHHII", b, 11, bps, spc, reserved, 2, 0, 0, 0xF8, 0, 63, 255,
                     0, total_sectors)
    struct.pack_into("<IHHIHH", b, 36, fat_sectors, 0, 0, 2, 1, 6)
    b[66] = 0x29
    struct.pack_into("<I", b, 67, 0x12345678)
    b[71:82] = b"HOSTILE    "
    b[82:90] = b"FAT32   "
    b[510:512] = b"\x55\xaa"
    return b


def fat32_huge_fat(tmp: pathlib.Path) -> pathlib.Path:
    """A 16 TiB qcow2 whose FAT32 claims a 16 GiB FAT (4096-byte sectors); the old reader
    read the whole FAT at once (MemoryError)."""
    img = tmp / "hugefat.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "16T"], timeout=60)
    bps = 4096
    boot = fat32_boot(total_sectors=0xFFFFFFFF, fat_sectors=(16 << 30) // bps, bps=bps, spc=8)
    _write_qcow2(img, 0, bytes(boot))
    return img


def _write_qcow2(img: pathlib.Path, offset: int, data: bytes) -> None:
    """Write ``data`` at guest ``offset`` of a qcow2 through qemu-io (a file of bytes)."""
    src = img.with_suffix(".chunk")
    src.write_bytes(data)
    run(["qemu-io", "-f", "qcow2", "-c",
         f"write -s {src} {offset} {len(data)}", str(img)], timeout=60)
    src.unlink()


def fat32_long_chain(tmp: pathlib.Path, clusters: int = 30_000_000) -> pathlib.Path:
    """A sparse raw FAT32 of ``clusters`` 512-byte clusters whose FAT links 2 -> 3 -> ... ->
    the last cluster, with a root directory entry "CHAIN" (a directory) and "CHAIN.BIN" (a
    4 GiB file) starting at cluster 3; the old reader built the whole chain (1.45 GB)."""
    bps, reserved = 512, 32
    fat_sectors = -(-(clusters + 2) * 4 // bps)
    total = reserved + 2 * fat_sectors + clusters
    img = tmp / "chain.img"
    with open(img, "wb") as f:
        f.truncate(total * bps)
        f.write(fat32_boot(total, fat_sectors, bps, 1, reserved))
        f.seek(reserved * bps)
        step = 1 << 20  # FAT entries written per batch
        head = struct.pack("<III", 0x0FFFFFF8, 0x0FFFFFFF, 0x0FFFFFFF)  # 0, 1, root = 2
        f.write(head)
        n = 3
        while n < clusters + 2:
            m = min(step, clusters + 2 - n)
            vals = list(range(n + 1, n + m + 1))
            if n + m == clusters + 2:
                vals[-1] = 0x0FFFFFFF
            f.write(struct.pack(f"<{m}I", *vals))
            n += m
        data = reserved + 2 * fat_sectors
        root = bytearray(64)
        root[0:11] = b"CHAIN      "
        root[11] = 0x10
        struct.pack_into("<HH", root, 20, 0, 3)
        root[32:43] = b"CHAIN   BIN"
        root[43] = 0x20
        struct.pack_into("<HH", root, 32 + 20, 0, 0)
        struct.pack_into("<HI", root, 32 + 26, 3, 0xFFFFFFFF)
        f.seek(data * bps)
        f.write(root)
    return img


def iso_directory_loop(tmp: pathlib.Path) -> pathlib.Path:
    """An ISO 9660 image whose /SUB/DEEPER directory record points back at the root's extent
    (both-endian extent location, ECMA-119 9.1.3)."""
    src = tmp / "isotree"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "deeper" / "f").write_bytes(b"hi\n")
    img = tmp / "loop.iso"
    run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(img), str(src)], timeout=60)
    data = bytearray(img.read_bytes())
    root_extent = struct.unpack_from("<I", data, 0x8000 + 156 + 2)[0]
    at = data.find(b"\x06DEEPER") - 32  # the record starts 32 bytes before its name length
    assert at > 0
    struct.pack_into("<I", data, at + 2, root_extent)
    struct.pack_into(">I", data, at + 6, root_extent)
    img.write_bytes(bytes(data))
    return img
