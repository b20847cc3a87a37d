"""VhdxReader against qemu: images made by qemu-img/qemu-io at test time, every byte compared
with ``qemu-img convert -f vhdx -O raw`` (or a window of it through qemu's raw driver with
offset/size), the size with ``qemu-img info``; hostile images refused with stable codes.

The image layout is parsed here with struct (not with diskkit) to patch images by hand."""

from __future__ import annotations

import itertools
import json
import pathlib
import random
import shutil
import struct
import time
import tracemalloc
import uuid
from collections.abc import Iterator

import pytest

from diskkit.errors import CommandError, ImageError
from diskkit.formats.fields import check_layout
from diskkit.formats.vhdx import VhdxHeader, crc32c
from diskkit.readers.raw import FileReader
from diskkit.readers.vhdx import VhdxReader
from tests.helpers import create, qemu_img, qemu_img_info, write_at
from tests.readers.images import MiB, qemu_io, raw_of, sweep

GiB = 1 << 30
TiB = 1 << 40
BAT_GUID = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
META_GUID = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
SIZE_ITEM = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PARAMS_ITEM = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
LSS_ITEM = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
HEADERS = (64 * 1024, 128 * 1024)


# -- the layout, parsed independently of diskkit --------------------------------------

class Layout:
    """Where a VHDX file keeps its headers, BAT and metadata items ([MS-VHDX] 2.2)."""

    def __init__(self, path: pathlib.Path) -> None:
        with open(path, "rb") as f:
            data = f.read(256 * 1024)
            seqs = [struct.unpack_from("<Q", data, off + 8)[0] for off in HEADERS]
            #: Index (0, 1) of the header with the higher sequence number.
            self.current = 0 if seqs[0] > seqs[1] else 1
            count = struct.unpack_from("<I", data, 192 * 1024 + 8)[0]
            regions = {}
            for i in range(count):
                g, off, length, _req = struct.unpack_from("<16sQII", data,
                                                          192 * 1024 + 16 + 32 * i)
                regions[uuid.UUID(bytes_le=g)] = (off, length)
            self.bat, self.bat_length = regions[BAT_GUID]
            self.meta, _ = regions[META_GUID]
            f.seek(self.meta)
            table = f.read(64 * 1024)
        self.items = {}
        for i in range(struct.unpack_from("<H", table, 10)[0]):
            g, off, length, _flags, _r = struct.unpack_from("<16sIIII", table, 32 + 32 * i)
            self.items[uuid.UUID(bytes_le=g)] = self.meta + off

    def bat_entries(self, path: pathlib.Path, count: int) -> list[int]:
        """The first ``count`` BAT entries."""
        with open(path, "rb") as f:
            f.seek(self.bat)
            return list(struct.unpack(f"<{count}Q", f.read(8 * count)))


def patch_header(path: pathlib.Path, index: int, offset: int, data: bytes,
                 fix_crc: bool = True) -> None:
    """Overwrite bytes of header ``index`` and (by default) recompute its CRC-32C."""
    with open(path, "r+b") as f:
        f.seek(HEADERS[index])
        block = bytearray(f.read(4096))
        block[offset : offset + len(data)] = data
        if fix_crc:
            block[4:8] = bytes(4)
            block[4:8] = struct.pack("<I", crc32c(bytes(block)))
        f.seek(HEADERS[index])
        f.write(block)


def qemu_window(path: pathlib.Path, offset: int, length: int, out: pathlib.Path) -> bytes:
    """qemu's guest bytes ``[offset, offset+length)``: its raw driver (offset, size) over
    its vhdx driver, converted to a raw file."""
    spec = {"driver": "raw", "offset": offset, "size": length,
            "file": {"driver": "vhdx", "file": {"driver": "file", "filename": str(path)}}}
    qemu_img("convert", "-O", "raw", "json:" + json.dumps(spec), out)
    return out.read_bytes()


def open_vhdx(path: pathlib.Path) -> VhdxReader:
    return VhdxReader(FileReader(str(path)))


def check_zeros_outside(ref: bytes, reader: VhdxReader, base: int = 0) -> None:
    """Every non-zero byte of ``ref`` (qemu's bytes from guest offset ``base``) lies in a
    data extent of ``reader``."""
    pos = base
    for ext in reader.data_extents(base, len(ref)):
        assert ref.count(0, pos - base, ext.offset - base) == ext.offset - pos, \
            f"qemu has data in [{pos}, {ext.offset}), outside diskkit's data extents"
        pos = ext.end
    assert ref.count(0, pos - base) == len(ref) - (pos - base)


def check_whole(path: pathlib.Path, tmp: pathlib.Path, *, tight: bool = True) -> VhdxReader:
    """The reader equals qemu on ``path``: size, every byte (read and readinto), data
    extents covering every non-zero byte and, when ``tight``, holding data in every block."""
    ref = raw_of(path, "vhdx", tmp / (path.name + ".raw"))
    reader = open_vhdx(path)
    assert reader.size == qemu_img_info(path, "vhdx")["virtual-size"] == len(ref)
    assert reader.read(0, reader.size) == ref
    buf = bytearray(b"\xee" * (reader.size + 100))  # dirty: zeros must be written
    assert reader.readinto(0, memoryview(buf)) == reader.size
    assert buf[: reader.size] == ref
    sweep(reader, ref)
    check_zeros_outside(ref, reader)
    exts = list(reader.extents())
    assert exts[0].offset == 0 and exts[-1].end == reader.size
    assert all(a.end == b.offset for a, b in itertools.pairwise(exts))
    if tight:  # no block claimed present without data (qemu allocates on non-zero writes)
        bs = reader.block_size
        for ext in reader.data_extents():
            for start in range(ext.offset, ext.end, bs):
                assert ref.count(0, start, min(start + bs, ext.end)) < min(bs, ext.end - start)
    return reader


# -- real images ----------------------------------------------------------------------

def test_crc32c_check_value_and_header_layout() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    check_layout(VhdxHeader)
    assert VhdxHeader.LAYOUT.size == 80  # qemu's packed VHDXHeader
    assert VhdxHeader.field_offset("log_guid") == 48


def test_dynamic_1m_blocks_size_not_a_block_multiple(tmp_path: pathlib.Path) -> None:
    size = 37 * MiB + 12 * 1024
    img = create(tmp_path / "d1.vhdx", "vhdx", size, "block_size=1M")
    # qemu wrote checksums diskkit's CRC-32C agrees with (header 1 and the region table)
    data = img.read_bytes()
    for at, n in ((HEADERS[0], 4096), (HEADERS[1], 4096), (192 * 1024, 64 * 1024)):
        block = bytearray(data[at : at + n])
        stored = struct.unpack_from("<I", block, 4)[0]
        block[4:8] = bytes(4)
        assert crc32c(bytes(block)) == stored
    qemu_io(img, "vhdx", "write -P 0xab 0 4k", "write -P 0xcd 1048064 1024",
            f"write -P 0x5a {7 * MiB + 300} 3000000", f"write -P 0x77 {size - 4096} 4096",
            f"write -P 0x31 {20 * MiB} 512")
    reader = check_whole(img, tmp_path)
    assert reader.block_size == MiB and reader.chunk_ratio == 4096
    assert sum(e.length for e in reader.data_extents()) < size // 2  # not "all data"
    reader.close()


def test_dynamic_32m_blocks(tmp_path: pathlib.Path) -> None:
    size = 100 * MiB + 1536
    img = create(tmp_path / "d32.vhdx", "vhdx", size, "block_size=32M")
    qemu_io(img, "vhdx", "write -P 0x11 0 64k", f"write -P 0x22 {32 * MiB - 512} 1024",
            f"write -P 0x33 {70 * MiB} {5 * MiB}", f"write -P 0x44 {size - 1536} 1536")
    reader = check_whole(img, tmp_path)
    assert reader.block_size == 32 * MiB and reader.chunk_ratio == 128
    reader.close()


def test_fixed(tmp_path: pathlib.Path) -> None:
    """subformat=fixed: by default qemu marks the preallocated blocks ZERO (its
    block_state_zero) and allocates on write; with block_state_zero=off every block is
    FULLY_PRESENT in place."""
    size = 20 * MiB + 512
    for zero in ("on", "off"):
        img = create(tmp_path / f"fixed-{zero}.vhdx", "vhdx", size, "subformat=fixed",
                     f"block_state_zero={zero}")
        qemu_io(img, "vhdx", "write -P 0xab 4096 8192", f"write -P 0xcd {size - 512} 512")
        reader = check_whole(img, tmp_path, tight=zero == "on")
        assert reader.params.flags & 1  # LeaveBlocksAllocated
        if zero == "off":
            assert len(reader.runs()) == 1  # contiguous in the file: one run
            g, n, host = reader.runs()[0]
            assert (g, n) == (0, size)
            # data: where the file itself holds data in that run (the rest is a hole in
            # the host file and reads as zeros), as the file system says (SEEK_DATA)
            with FileReader(str(img)) as f:
                want = [(e.offset - host, e.length) for e in f.data_extents(host, n)]
            assert [(e.offset, e.length) for e in reader.data_extents()] == want
            assert want and want[-1][0] + want[-1][1] == size
        reader.close()


@pytest.mark.parametrize("block", ["", "block_size=1M"])
def test_converted_random_data(tmp_path: pathlib.Path, block: str) -> None:
    rng = random.Random(3)
    raw = tmp_path / "src.raw"
    with open(raw, "wb") as f:
        f.truncate(24 * MiB)
        for off, n in ((0, 3 * MiB), (5 * MiB, 100_000), (9 * MiB, 8 * MiB),
                       (20 * MiB + 1, 1), (24 * MiB - 700, 700)):
            f.seek(off)
            f.write(rng.randbytes(n))
    img = tmp_path / "conv.vhdx"
    qemu_img("convert", "-f", "raw", "-O", "vhdx", *(["-o", block] if block else []), raw, img)
    reader = check_whole(img, tmp_path)
    assert reader.read(0, reader.size) == raw.read_bytes()
    reader.close()


def relay_for_4k_sectors(path: pathlib.Path, blocks: int) -> None:
    """Turn a qemu-made 512-byte-sector image into a 4096-byte-sector one holding the same
    guest bytes: the BAT re-laid for the new chunk ratio (a sector bitmap entry after every
    2**23 * 4096 / block size payload entries instead of 2**23 * 512 / block size) and the
    Logical Sector Size item set to 4096."""
    lay = Layout(path)
    old_cr, new_cr = (1 << 23) * 512 // MiB, (1 << 23) * 4096 // MiB
    old = lay.bat_entries(path, blocks + (blocks - 1) // old_cr)
    payload = [old[b + b // old_cr] for b in range(blocks)]
    new = [0] * (blocks + (blocks - 1) // new_cr)
    for b, entry in enumerate(payload):
        new[b + b // new_cr] = entry
    assert len(new) * 8 <= lay.bat_length
    write_at(path, lay.bat, struct.pack(f"<{len(new)}Q", *new) + bytes(8 * (len(old) - len(new))))
    write_at(path, lay.items[LSS_ITEM], struct.pack("<I", 4096))


def test_sector_bitmap_entries_1tib_and_4k_sectors(tmp_path: pathlib.Path) -> None:
    """A 1 TiB image: payload blocks past 4 GiB sit after sector bitmap entries in the BAT
    (chunk ratio 4096 with 1 MiB blocks); the BAT (8 MiB) is scanned in bounded memory."""
    size = TiB
    img = create(tmp_path / "big.vhdx", "vhdx", size, "block_size=1M")
    writes = [(4095 * MiB, 2 * MiB, 0xAB), (4 * GiB + 4096, 8192, 0xCD),
              (8 * GiB - 512, 1024, 0x5A), (300 * GiB + 3, 5000, 0x66),
              (size - 4096, 4096, 0x77)]
    qemu_io(img, "vhdx", *(f"write -P {p:#x} {o} {n}" for o, n, p in writes))
    windows = [(4094 * MiB, 4 * MiB), (8 * GiB - 2 * MiB, 4 * MiB), (300 * GiB, MiB),
               (size - 2 * MiB, 2 * MiB)]
    refs = [qemu_window(img, o, n, tmp_path / f"w{i}.raw") for i, (o, n) in enumerate(windows)]
    assert qemu_img_info(img, "vhdx")["virtual-size"] == size
    four_k = tmp_path / "big4k.vhdx"
    shutil.copyfile(img, four_k)
    relay_for_4k_sectors(four_k, size // MiB)
    for path, cr in ((img, 4096), (four_k, 32768)):
        tracemalloc.start()
        try:
            reader = open_vhdx(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 6 * MiB, f"opening a 1 TiB image (8 MiB BAT) took {peak} bytes"
        assert reader.chunk_ratio == cr and reader.size == size
        for (off, n), ref in zip(windows, refs, strict=True):
            assert reader.read(off, n) == ref
            check_zeros_outside(ref, reader, off)
        # no data outside the windows qemu wrote into
        for ext in reader.data_extents():
            assert any(o <= ext.offset and ext.end <= o + n for o, n in windows), ext
        reader.close()
    # the unpatched image read with the wrong chunk ratio would differ: the test can fail
    assert refs[0].count(0) < len(refs[0])


def test_4k_sectors_small_image(tmp_path: pathlib.Path) -> None:
    size = 37 * MiB + 12 * 1024  # a multiple of 4096
    img = create(tmp_path / "s.vhdx", "vhdx", size, "block_size=1M")
    qemu_io(img, "vhdx", "write -P 0xab 0 4k", f"write -P 0x5a {7 * MiB + 300} 3000000")
    ref = raw_of(img, "vhdx", tmp_path / "s.raw")
    relay_for_4k_sectors(img, -(-size // MiB))
    with open_vhdx(img) as reader:
        assert reader.logical_sector_size == 4096 and reader.size == size
        assert reader.read(0, size) == ref
        check_zeros_outside(ref, reader)


def test_reads_from_two_threads(tmp_path: pathlib.Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    img = tmp_path / "t.vhdx"
    raw = tmp_path / "t.raw"
    raw.write_bytes(random.Random(5).randbytes(16 * MiB))
    qemu_img("convert", "-f", "raw", "-O", "vhdx", "-o", "block_size=1M", raw, img)
    ref = raw.read_bytes()
    with open_vhdx(img) as reader:
        assert reader.concurrent_reads

        def work(seed: int) -> bool:
            rng = random.Random(seed)
            buf = bytearray(3 * MiB)
            for _ in range(40):
                off = rng.randrange(0, 16 * MiB)
                n = reader.readinto(off, memoryview(buf))
                if buf[:n] != ref[off : off + n]:
                    return False
            return True

        with ThreadPoolExecutor(2) as pool:
            assert all(pool.map(work, range(4)))


# -- hostile images -------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A dynamic image with data in blocks 0, 3 and the last one (9 blocks of 1 MiB)."""
    img = create(tmp_path_factory.mktemp("vhdx") / "small.vhdx", "vhdx", 9 * MiB,
                 "block_size=1M")
    qemu_io(img, "vhdx", "write -P 0xab 0 4k", f"write -P 0xcd {3 * MiB} 4k",
            f"write -P 0xef {9 * MiB - 4096} 4k")
    return img


@pytest.fixture
def copy(small: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    dst = tmp_path / "h.vhdx"
    shutil.copyfile(small, dst)
    yield dst


def refused(path: pathlib.Path, code: str) -> ImageError:
    """Opening ``path`` raises ImageError ``code``, quickly and in bounded memory."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(ImageError) as info:
            VhdxReader(FileReader(str(path))).close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == code, info.value
    assert time.monotonic() - t0 < 5 and peak < 4 * MiB
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))
    return info.value


def qemu_refuses(path: pathlib.Path) -> None:
    with pytest.raises(CommandError):
        qemu_img("info", "-f", "vhdx", path)


def test_small_image_is_readable(small: pathlib.Path, tmp_path: pathlib.Path) -> None:
    reader = check_whole(small, tmp_path)
    assert [e.offset // MiB for e in reader.data_extents()] == [0, 3, 8]
    reader.close()


def test_zero_states_read_as_zeros_like_qemu(copy: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Blocks 0, 3 and 8 hold data; set to UNDEFINED (1), UNMAPPED (3) and the 0.95 draft's
    UNMAPPED (5), their file offsets kept, they read as zeros in qemu and in diskkit."""
    lay = Layout(copy)
    entries = lay.bat_entries(copy, 9)
    for block, state in ((0, 1), (3, 3), (8, 5)):
        assert entries[block] & 7 == 6
        write_at(copy, lay.bat + 8 * block, struct.pack("<Q", entries[block] & ~7 | state))
    reader = check_whole(copy, tmp_path)
    assert list(reader.data_extents()) == []
    reader.close()


class CountingReader(FileReader):
    """A FileReader that counts the reads issued to it (to check one read per run)."""

    calls = 0

    def _read(self, offset: int, length: int) -> bytes:
        self.calls += 1
        return super()._read(offset, length)

    def readinto(self, offset: int, buf: memoryview) -> int:
        self.calls += 1
        return super().readinto(offset, buf)


def test_one_container_read_per_run(tmp_path: pathlib.Path) -> None:
    raw = tmp_path / "c.raw"
    rng = random.Random(9)
    with open(raw, "wb") as f:
        f.truncate(24 * MiB)
        f.write(rng.randbytes(5 * MiB))
        f.seek(12 * MiB)
        f.write(rng.randbytes(4 * MiB))
    img = tmp_path / "c.vhdx"
    qemu_img("convert", "-f", "raw", "-O", "vhdx", "-o", "block_size=1M", raw, img)
    container = CountingReader(str(img))
    with VhdxReader(container) as reader:
        runs = reader.runs()
        assert [(g, n) for g, n, _h in runs] == [(0, 5 * MiB), (12 * MiB, 4 * MiB)]
        buf = bytearray(24 * MiB)
        container.calls = 0
        assert reader.readinto(0, memoryview(buf)) == 24 * MiB
        assert container.calls == len(runs)
        assert buf == raw.read_bytes()


def test_headers_with_one_sequence_number_must_be_equal(copy: pathlib.Path) -> None:
    lay = Layout(copy)
    seq = struct.unpack_from("<Q", copy.read_bytes(), HEADERS[lay.current] + 8)[0]
    patch_header(copy, 1 - lay.current, 8, struct.pack("<Q", seq))  # same number, other GUIDs
    qemu_refuses(copy)
    assert "sequence number" in str(refused(copy, "vhdx-bad-header"))


def test_unknown_required_region(copy: pathlib.Path) -> None:
    with open(copy, "r+b") as f:
        f.seek(192 * 1024)
        table = bytearray(f.read(64 * 1024))
        count = struct.unpack_from("<I", table, 8)[0]
        struct.pack_into("<16sQII", table, 16 + 32 * count, uuid.uuid4().bytes_le,
                         64 * MiB, MiB, 1)  # required
        struct.pack_into("<I", table, 8, count + 1)
        table[4:8] = bytes(4)
        struct.pack_into("<I", table, 4, crc32c(bytes(table)))
        f.seek(192 * 1024)
        f.write(table)
    qemu_refuses(copy)
    assert "does not know" in str(refused(copy, "vhdx-bad-region-table"))


def test_truncated_in_the_header_section(copy: pathlib.Path) -> None:
    with open(copy, "r+b") as f:
        f.truncate(150 * 1024)
    refused(copy, "vhdx-truncated")


def test_truncated_in_the_data(copy: pathlib.Path) -> None:
    lay = Layout(copy)
    last = max(e >> 20 for e in lay.bat_entries(copy, 9)) << 20  # the last block in the file
    with open(copy, "r+b") as f:
        f.truncate(last + 512 * 1024)
    qemu_refuses(copy)
    assert "past the end" in str(refused(copy, "vhdx-truncated"))


def test_bat_entry_past_the_end(copy: pathlib.Path) -> None:
    lay = Layout(copy)
    write_at(copy, lay.bat + 8 * 5, struct.pack("<Q", (1 << 30) << 20 | 6))  # 1 PiB
    qemu_refuses(copy)
    refused(copy, "vhdx-truncated")


def test_bat_entry_over_the_metadata(copy: pathlib.Path) -> None:
    lay = Layout(copy)
    write_at(copy, lay.bat + 8 * 5, struct.pack("<Q", lay.meta | 6))
    qemu_refuses(copy)
    refused(copy, "vhdx-bad-bat")


def test_partially_present_block(copy: pathlib.Path) -> None:
    lay = Layout(copy)
    entry = lay.bat_entries(copy, 1)[0]
    write_at(copy, lay.bat, struct.pack("<Q", entry & ~7 | 7))
    assert "PARTIALLY_PRESENT" in str(refused(copy, "vhdx-bad-bat"))


def test_more_present_blocks_than_the_file_holds(tmp_path: pathlib.Path) -> None:
    """64 entries naming one block: the map would grow with the claimed size, not the file."""
    img = create(tmp_path / "shared.vhdx", "vhdx", 64 * MiB, "block_size=1M")
    qemu_io(img, "vhdx", "write -P 0xab 0 4k")
    lay = Layout(img)
    entry = lay.bat_entries(img, 1)[0]
    assert img.stat().st_size < 32 * MiB
    write_at(img, lay.bat, struct.pack("<64Q", *[entry] * 64))
    assert "cannot hold" in str(refused(img, "vhdx-bad-bat"))


def test_log_pending(copy: pathlib.Path, small: pathlib.Path) -> None:
    lay = Layout(copy)
    guid = uuid.uuid4().bytes_le
    patch_header(copy, lay.current, 48, guid)  # the current header, valid: a log to replay
    err = refused(copy, "vhdx-log-pending")
    assert str(uuid.UUID(bytes_le=guid)) in str(err)


def test_header_with_a_bad_checksum_is_not_current(copy: pathlib.Path) -> None:
    lay = Layout(copy)
    # a LogGuid in the current header, its checksum left wrong: the older header is used
    patch_header(copy, lay.current, 48, uuid.uuid4().bytes_le, fix_crc=False)
    with open_vhdx(copy) as reader:
        assert reader.header.file_offset == HEADERS[1 - lay.current]
        assert reader.read(3 * MiB, 4096) == b"\xcd" * 4096
    patch_header(copy, 1 - lay.current, 8, b"\xff", fix_crc=False)  # both wrong now
    assert "neither header" in str(refused(copy, "vhdx-bad-header"))


def test_log_guid_in_the_older_header_is_ignored(copy: pathlib.Path) -> None:
    lay = Layout(copy)
    patch_header(copy, 1 - lay.current, 48, uuid.uuid4().bytes_le)
    with open_vhdx(copy) as reader:
        assert reader.header.file_offset == HEADERS[lay.current]
        assert reader.read(3 * MiB, 4096) == b"\xcd" * 4096


def test_virtual_size_whose_bat_does_not_fit(copy: pathlib.Path) -> None:
    lay = Layout(copy)
    write_at(copy, lay.items[SIZE_ITEM], struct.pack("<Q", 64 * TiB))
    qemu_refuses(copy)
    assert "BAT entries" in str(refused(copy, "vhdx-bad-bat"))
    write_at(copy, lay.items[SIZE_ITEM], struct.pack("<Q", 1 << 62))
    refused(copy, "vhdx-bad-metadata")


def test_differencing_flag(copy: pathlib.Path) -> None:
    lay = Layout(copy)
    flags = struct.unpack("<I", copy.read_bytes()[lay.items[PARAMS_ITEM] + 4 :][:4])[0]
    write_at(copy, lay.items[PARAMS_ITEM] + 4, struct.pack("<I", flags | 2))
    qemu_refuses(copy)
    refused(copy, "vhdx-differencing")


def test_bad_region_table_and_block_size(copy: pathlib.Path, small: pathlib.Path) -> None:
    write_at(copy, 192 * 1024 + 100, b"\x01")  # inside the checksummed table
    refused(copy, "vhdx-bad-region-table")
    shutil.copyfile(small, copy)
    write_at(copy, Layout(copy).items[PARAMS_ITEM], struct.pack("<I", 3 * MiB))
    refused(copy, "vhdx-bad-metadata")
    write_at(copy, 0, b"notvhdx!")
    refused(copy, "vhdx-bad-header")


def test_mutated_tables_never_escape_image_error(small: pathlib.Path,
                                                 tmp_path: pathlib.Path) -> None:
    """Random bytes in the BAT, the metadata table and items, and the header fields (with
    their checksum fixed): every open either works (and reads) or raises ImageError."""
    base = small.read_bytes()
    lay = Layout(small)
    spots = [(lay.bat, 9 * 8), (lay.meta, 32 + 32 * 6), (lay.items[SIZE_ITEM], 8),
             (lay.items[PARAMS_ITEM], 8), (lay.items[LSS_ITEM], 4)]
    rng = random.Random(11)
    path = tmp_path / "m.vhdx"
    outcomes = {"ok": 0, "refused": 0}
    for i in range(150):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 4)):
            at, n = rng.choice(spots)
            data[at + rng.randrange(n)] = rng.randrange(256)
        path.write_bytes(data)
        if i % 5 == 0:  # a header field, checksum fixed so the header stays current
            patch_header(path, lay.current, rng.randrange(8, 80), bytes([rng.randrange(256)]))
        try:
            with open_vhdx(path) as reader:
                reader.read(0, min(reader.size, 9 * MiB))
                list(reader.data_extents())
            outcomes["ok"] += 1
        except ImageError:
            outcomes["refused"] += 1
    assert outcomes["ok"] and outcomes["refused"], outcomes
