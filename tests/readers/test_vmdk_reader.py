"""The pure-Python VMDK reader (monolithicSparse, streamOptimized) against qemu: every byte
equal to ``qemu-img convert -f vmdk -O raw``, the size equal to ``qemu-img info``, the data
extents equal to ``qemu-img map``'s data ranges; hostile files refused with stable codes,
fast and in bounded memory."""

from __future__ import annotations

import pathlib
import random
import shutil
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib

import pytest

from diskkit.errors import DiskkitError, ImageError
from diskkit.readers.raw import FileReader
from diskkit.readers.vmdk import VmdkReader
from tests.helpers import create, qemu_img, qemu_img_info, write_at
from tests.readers.images import MiB, compressible, merge, qemu_io, qemu_map, raw_of, sweep

SIZE = 100 * MiB + 12 * 1024  # not a multiple of the 64 KiB grain
GRAIN = 64 * 1024
GD_AT_END = 0xFFFFFFFFFFFFFFFF
_HDR = struct.Struct("<4sIIQQQQIQQQB4sH")  # the SparseExtentHeader, packed


def _source(path: pathlib.Path) -> pathlib.Path:
    """A sparse raw file: random (incompressible) and compressible data at unaligned
    offsets, a zero hole inside data, a patterned tail in the last (short) grain."""
    rng = random.Random(15)
    with open(path, "wb") as f:
        f.truncate(SIZE)
        f.seek(0)
        f.write(rng.randbytes(MiB + 777))
        f.seek(5 * MiB + 3000)
        data = bytearray(compressible(3 * MiB, seed=2))
        data[MiB : MiB + 4 * GRAIN] = bytes(4 * GRAIN)
        f.write(data)
        f.seek(50 * MiB - 100)
        f.write(b"\x5a" * 200)
        f.seek(77 * MiB + 65535)
        f.write(b"\x01")
        f.seek(SIZE - 8192)
        f.write(b"\xab" * 8192)
    return path


def _footer_variant(src: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """A streamOptimized file as VMware writes it: gdOffset GD_AT_END in the first header,
    the real header in a footer (footer marker, header, end-of-stream marker at the end).
    qemu 7.2 writes the grain directory offset in the first header itself."""
    data = bytearray(src.read_bytes())
    assert len(data) % 512 == 0
    header = bytes(data[:512])
    fields = list(_HDR.unpack_from(header))
    fields[9] = GD_AT_END
    data[: _HDR.size] = _HDR.pack(*fields)
    footer_marker = struct.pack("<QII", 1, 0, 3).ljust(512, b"\0")
    eos = bytes(512)
    out.write_bytes(bytes(data) + footer_marker + header + eos)
    return out


def _markerless_variant(src: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """The streamOptimized file without grain markers (flag bit 17 clear): each grain's zlib
    data starts at its sector, as qemu also reads it. qemu never writes this kind."""
    data = bytearray(src.read_bytes())
    fields = list(_HDR.unpack_from(data))
    fields[2] = int(fields[2]) & ~(1 << 17)
    data[: _HDR.size] = _HDR.pack(*fields)
    gd_at, grains = int(fields[9]) * 512, -(-int(fields[3]) // int(fields[4]))
    for t in range(-(-grains // 512)):
        (table,) = struct.unpack_from("<I", data, gd_at + 4 * t)
        for sector in struct.unpack_from("<512I", data, table * 512):
            if sector:
                _lba, size = struct.unpack_from("<QI", data, sector * 512)
                at = sector * 512
                data[at : at + size] = data[at + 12 : at + 12 + size]
    out.write_bytes(bytes(data))
    return out


def _built(tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    src = _source(tmp / "src.raw")
    imgs: dict[str, pathlib.Path] = {}
    for name, opts in [("stream", "subformat=streamOptimized"),
                       ("sparse", "subformat=monolithicSparse"),
                       ("sparse-compat6", "subformat=monolithicSparse,compat6=on")]:
        imgs[name] = tmp / f"{name}.vmdk"
        qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", opts, src, imgs[name])
    imgs["stream-footer"] = _footer_variant(imgs["stream"], tmp / "stream-footer.vmdk")
    # qemu-io's own writes into a monolithicSparse image (partial grains, unaligned)
    path = create(tmp / "written.vmdk", "vmdk", "64M")
    qemu_io(path, "vmdk", "write -P 0xab 1M 64k", "write -P 0x11 5000k 3k",
            "write -P 0x5a 8191k 2k", "write -P 0x07 60M 4k", "write -P 0x33 63M 1M",
            "write -P 0x44 100 1000")
    imgs["written"] = path
    # zeroed grains (GTE 1) where zeros were written over data and over nothing
    path = create(tmp / "zeroed.vmdk", "vmdk", "30M", "zeroed_grain=on")
    qemu_io(path, "vmdk", "write -P 0x5a 0 1M", "write -z 256k 128k", "write -z 4M 192k",
            "write -P 0x11 10M 4k", "write -z 20M 1M", "write -P 0x66 29M 1M")
    imgs["zeroed"] = path
    # a grain cut by the end of the file: qemu reads the missing part as zeros
    cut = tmp / "cut.vmdk"
    raw = imgs["sparse"].read_bytes()
    cut.write_bytes(raw[: len(raw) - GRAIN + 6000])
    imgs["cut"] = cut
    return imgs


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    return _built(tmp_path_factory.mktemp("vmdk"))


NAMES = ["stream", "stream-footer", "sparse", "sparse-compat6", "written", "zeroed", "cut"]


def _holes(reader: VmdkReader) -> list[tuple[int, int]]:
    """The ranges outside ``data_extents()``."""
    out, pos = [], 0
    for e in reader.data_extents():
        if e.offset > pos:
            out.append((pos, e.offset))
        pos = e.end
    if reader.size > pos:
        out.append((pos, reader.size))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_bytes_equal_qemu(images: dict[str, pathlib.Path], tmp_path: pathlib.Path,
                          name: str) -> None:
    path = images[name]
    ref = raw_of(path, "vmdk", tmp_path / "ref.raw")
    with VmdkReader(FileReader(str(path))) as r:
        assert r.size == len(ref) == qemu_img_info(path, "vmdk")["virtual-size"]
        assert r.read(0, r.size) == ref
        sweep(r, ref)
        # readinto overwrites every byte of a dirty buffer (zeros written, not assumed)
        buf = bytearray(b"\xee" * (3 * MiB + 5))
        assert r.readinto(5 * MiB - 17, memoryview(buf)) == len(buf)
        assert buf == ref[5 * MiB - 17 : 8 * MiB - 12]
        buf = bytearray(b"\xee" * (3 * GRAIN))
        assert r.readinto(r.size - 2 * GRAIN, memoryview(buf)) == 2 * GRAIN
        assert buf[: 2 * GRAIN] == ref[-2 * GRAIN :] and buf[2 * GRAIN :] == b"\xee" * GRAIN
        # every non-zero byte of qemu's output lies inside data_extents()
        for a, b in _holes(r):
            assert ref.count(0, a, b) == b - a, f"non-zero bytes in [{a}, {b}) outside data"


@pytest.mark.parametrize("name", NAMES)
def test_extents_equal_qemu_map(images: dict[str, pathlib.Path], name: str) -> None:
    path = images[name]
    theirs = merge([(e["start"], e["length"], bool(e["data"])) for e in qemu_map(path, "vmdk")])
    with VmdkReader(FileReader(str(path))) as r:
        ours = merge([(e.offset, e.length, e.data) for e in r.extents()])
        assert ours == theirs
        # windows of the cached list and of a fresh reader agree with the whole list
        for off, n in [(0, 1), (5 * MiB + 1, 3 * MiB), (r.size - 5, 100), (GRAIN - 1, 2)]:
            window = [(e.offset, e.length, e.data) for e in r.extents(off, n)]
            with VmdkReader(FileReader(str(path))) as fresh:
                assert window == [(e.offset, e.length, e.data) for e in fresh.extents(off, n)]
            end = min(r.size, off + n)
            assert sum(x[1] for x in window) == end - off
            assert window[0][0] == off


def test_kinds_and_layout(images: dict[str, pathlib.Path]) -> None:
    with VmdkReader(FileReader(str(images["stream"]))) as r:
        assert r.create_type == "streamOptimized" and r.compressed
    with VmdkReader(FileReader(str(images["stream-footer"]))) as r:
        assert r.header.gd_offset != GD_AT_END  # the footer's header is in force
    with VmdkReader(FileReader(str(images["sparse"]))) as r:
        assert r.create_type == "monolithicSparse" and not r.compressed
    with VmdkReader(FileReader(str(images["zeroed"]))) as r:
        assert r.header.flags & 4
        # the written-over zeros (20M, +1M) are zeroed grains: not data
        assert not list(r.data_extents(20 * MiB, MiB))


def test_concurrent_reads(images: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    path = images["stream"]
    ref = raw_of(path, "vmdk", tmp_path / "ref.raw")
    errors: list[str] = []
    with VmdkReader(FileReader(str(path))) as r:
        def work(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(40):
                off = rng.choice([0, 5 * MiB, 6 * MiB + 5, SIZE - 70_000]) + rng.randrange(9000)
                n = rng.choice([1, 4096, GRAIN, 3 * GRAIN + 7])
                if r.read(off, n) != ref[off : off + n]:
                    errors.append(f"read({off}, {n})")
        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors


def test_markerless_compressed_grains(images: dict[str, pathlib.Path],
                                      small: dict[str, pathlib.Path],
                                      tmp_path: pathlib.Path) -> None:
    """Compressed grains without markers read as qemu reads them (at most a grain of zlib
    input); a grain that does not compress into one grain is an error for both."""
    path = _markerless_variant(small["streamOptimized"], tmp_path / "no-markers.vmdk")
    ref = raw_of(path, "vmdk", tmp_path / "ref.raw")
    with VmdkReader(FileReader(str(path))) as r:
        assert not r.header.flags & (1 << 17) and r.compressed
        assert r.read(0, r.size) == ref
        sweep(r, ref, count=20)
    # the big image's first grain is random: its zlib data is longer than a grain
    path = _markerless_variant(images["stream"], tmp_path / "no-markers-random.vmdk")
    with pytest.raises(DiskkitError, match="error while reading"):
        raw_of(path, "vmdk", tmp_path / "ref2.raw")
    _refused(path, "vmdk-bad-grain")


def test_terabyte_sparse_image_enumerated_from_tables(tmp_path: pathlib.Path) -> None:
    """qemu preallocates every grain table of a monolithicSparse file (64 MiB for 1 TiB):
    read in batches, empty ones dropped, one grain found."""
    path = create(tmp_path / "tb.vmdk", "vmdk", "1T")
    qemu_io(path, "vmdk", "write -P 0x99 700G 64k")
    start = time.monotonic()
    with VmdkReader(FileReader(str(path))) as r:
        assert r.size == 1 << 40
        (only,) = list(r.data_extents())
        assert (only.offset, only.length) == (700 << 30, 64 << 10)
        assert r.read((700 << 30) - 2, 4) == b"\0\0\x99\x99"
        assert r.is_zero(0, 700 << 30)
    assert time.monotonic() - start < 5


# --- hostile and unsupported files ------------------------------------------------------------


@pytest.fixture()
def small(tmp_path: pathlib.Path) -> dict[str, pathlib.Path]:
    """Small qemu-made images to damage: 4 MiB + 12 KiB with data in every grain table."""
    src = tmp_path / "small.raw"
    data = bytearray(compressible(4 * MiB + 12 * 1024, seed=5))
    data[MiB : 2 * MiB] = bytes(MiB)
    src.write_bytes(bytes(data))
    out = {}
    for sub in ("streamOptimized", "monolithicSparse"):
        out[sub] = tmp_path / f"{sub}.vmdk"
        qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", f"subformat={sub}", src, out[sub])
    return out


def _header(path: pathlib.Path) -> list[int | bytes]:
    return list(_HDR.unpack_from(path.read_bytes()))


def _set_header(path: pathlib.Path, index: int, value: int) -> None:
    fields = _header(path)
    fields[index] = value
    write_at(path, 0, _HDR.pack(*fields))


def _gd(path: pathlib.Path) -> list[int]:
    """The grain directory (the small images have one grain table)."""
    h = _header(path)
    raw = path.read_bytes()
    gd_at = int(h[9]) * 512
    count = -(-int(h[3]) // (int(h[4]) * int(h[7])))
    return [struct.unpack_from("<I", raw, gd_at + 4 * i)[0] for i in range(count)]


def _gte(path: pathlib.Path, grain: int) -> tuple[int, int]:
    """(file offset of the grain table entry of ``grain``, its value)."""
    gt = _gd(path)[grain // 512] * 512 + 4 * (grain % 512)
    return gt, struct.unpack_from("<I", path.read_bytes(), gt)[0]


def _refused(path: pathlib.Path, code: str) -> ImageError:
    """Open and read all of ``path``: it must fail with ``code``, fast, in little memory."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(ImageError) as info, VmdkReader(FileReader(str(path))) as r:
            list(r.extents())
            for off in range(0, r.size, 4 * MiB):
                r.read(off, 4 * MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == code, str(info.value)
    assert time.monotonic() - start < 5
    assert peak < 16 * MiB, peak
    return info.value


def test_truncated_files(small: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    sparse = small["monolithicSparse"]
    raw = sparse.read_bytes()
    cut = tmp_path / "cut.vmdk"
    cut.write_bytes(raw[: len(raw) - 3 * GRAIN])  # the last grains are gone
    _refused(cut, "header-field-out-of-bounds")
    cut.write_bytes(raw[:40])
    _refused(cut, "truncated-header")
    cut.write_bytes(raw[: 30 * 512])  # the grain directory is gone
    _refused(cut, "header-field-out-of-bounds")
    footer = _footer_variant(small["streamOptimized"], tmp_path / "footer.vmdk")
    raw = footer.read_bytes()
    cut.write_bytes(raw[: len(raw) - 1024])  # no footer any more
    _refused(cut, "vmdk-header-footer-mismatch")


def test_grain_past_the_end(small: dict[str, pathlib.Path]) -> None:
    for path in small.values():
        at, _value = _gte(path, 3)
        write_at(path, at, struct.pack("<I", 0x7FFFFFF0))
        err = _refused(path, "header-field-out-of-bounds")
        assert "grain 3 " in str(err)


def test_grain_table_past_the_end(small: dict[str, pathlib.Path]) -> None:
    path = small["monolithicSparse"]
    gd_at = int(_header(path)[9]) * 512
    write_at(path, gd_at, struct.pack("<I", 0x7FFFFFF0))
    _refused(path, "header-field-out-of-bounds")


def _rewrite_grain(path: pathlib.Path, grain: int, payload: bytes, size: int | None = None
                   ) -> None:
    """Put ``payload`` as the compressed data of ``grain`` (marker size ``size``)."""
    _at, sector = _gte(path, grain)
    size = len(payload) if size is None else size
    write_at(path, sector * 512, struct.pack("<QI", grain * 128, size) + payload)


@pytest.mark.parametrize(("payload", "size"), [
    (zlib.compress(bytes(64 * MiB), 9), None),  # a zip bomb: 64 MiB from about 64 KiB
    (zlib.compress(bytes(GRAIN + 1)), None),  # one byte more than a grain
    (zlib.compress(b"x" * 1000), None),  # less than a grain (not the last one)
    (zlib.compress(bytes(GRAIN))[:-6], None),  # truncated stream
    (b"\x78\x9c" + bytes(range(200)), None),  # not deflate
    (zlib.compress(bytes(GRAIN)), 0xFFFFFFFF),  # the marker's size is huge
    (zlib.compress(bytes(GRAIN)), 0),  # ... or zero
])
def test_bad_compressed_grains(small: dict[str, pathlib.Path], payload: bytes,
                               size: int | None) -> None:
    path = small["streamOptimized"]
    raw = path.read_bytes()
    if len(payload) + 12 > GRAIN:  # make room: the grain's data goes at the end of the file
        at, _sector = _gte(path, 2)
        end = len(raw) + (-len(raw) % 512)
        path.write_bytes(raw + bytes(end - len(raw) + len(payload) + 512))
        write_at(path, at, struct.pack("<I", end // 512))
    _rewrite_grain(path, 2, payload, size)
    _refused(path, "vmdk-bad-grain")


def test_short_last_grain_accepted_full_too(small: dict[str, pathlib.Path]) -> None:
    """qemu writes the last grain short (up to the capacity); a full grain is accepted too
    (the part past the capacity is never read)."""
    path = small["streamOptimized"]
    last = (4 * MiB + 12 * 1024) // GRAIN
    with VmdkReader(FileReader(str(path))) as r:
        tail = r.read(last * GRAIN, 12 * 1024)
    _rewrite_grain(path, last, zlib.compress(tail + b"\x77" * (GRAIN - len(tail))))
    with VmdkReader(FileReader(str(path))) as r:
        assert r.read(last * GRAIN, GRAIN) == tail
    _rewrite_grain(path, last, zlib.compress(tail[:-1]))
    _refused(path, "vmdk-bad-grain")


def _descriptor_file(path: pathlib.Path, create_type: str, extent: str) -> pathlib.Path:
    path.write_text(f"# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
                    f'createType="{create_type}"\n\n# Extent description\n{extent}\n\n'
                    '# The Disk Data Base\n#DDB\n\nddb.adapterType = "ide"\n')
    return path


@pytest.mark.parametrize(("create_type", "extent"), [
    ("monolithicFlat", 'RW 2048 FLAT "/etc/passwd" 0'),
    ("monolithicFlat", 'RW 2048 FLAT "/nonexistent/secret-disk-flat.vmdk" 0'),
    ("twoGbMaxExtentSparse", 'RW 2048 SPARSE "/nonexistent/disk-s001.vmdk"'),
    ("vmfs", 'RW 2048 VMFS "/nonexistent/disk-flat.vmdk"'),
    ("seSparse", 'RW 2048 SESPARSE "/nonexistent/disk-sesparse.vmdk"'),
    ("monolithicSparse", 'RW 2048 SPARSE "/nonexistent/disk.vmdk"'),
])
def test_descriptor_files_refused_unopened(tmp_path: pathlib.Path, create_type: str,
                                           extent: str) -> None:
    """A descriptor names extent files: refused as such (never "not found": never opened)."""
    desc = _descriptor_file(tmp_path / "desc.vmdk", create_type, extent)
    err = _refused(desc, "vmdk-create-type")
    assert "descriptor" in str(err)


_PROBE = """
import sys
from diskkit.errors import ImageError
from diskkit.readers.raw import FileReader
from diskkit.readers.vmdk import VmdkReader
try:
    VmdkReader(FileReader(sys.argv[1]))
except ImageError as exc:
    print(exc.code)
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_named_files_never_opened(small: dict[str, pathlib.Path], tmp_path: pathlib.Path
                                  ) -> None:
    """strace: refusing a descriptor file or an embedded monolithicFlat descriptor opens the
    VMDK itself and never the file the descriptor names."""
    secret = tmp_path / "secret-flat.vmdk"
    secret.write_bytes(bytes(1 << 20))
    desc = _descriptor_file(tmp_path / "desc.vmdk", "monolithicFlat",
                            f'RW 2048 FLAT "{secret}" 0')
    embedded = small["monolithicSparse"]
    h = _header(embedded)
    text = (b'# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
            b'createType="monolithicFlat"\n\nRW 2048 FLAT "' + bytes(secret) + b'" 0\n')
    write_at(embedded, int(h[5]) * 512, text.ljust(int(h[6]) * 512, b"\0"))
    for path in (desc, embedded):
        trace = tmp_path / "trace.log"
        done = subprocess.run(["strace", "-f", "-e", "trace=open,openat,openat2,stat,newfstatat",
                               "-o", str(trace), sys.executable, "-c", _PROBE, str(path)],
                              capture_output=True, text=True, timeout=60, check=True)
        assert done.stdout.strip() == "vmdk-create-type"
        log = trace.read_text()
        assert str(path) in log  # the trace sees the VMDK's own open
        assert str(secret) not in log


def test_descriptor_without_files_refused(tmp_path: pathlib.Path) -> None:
    """A descriptor whose only extent is a ZERO one names no file and passes the format's
    checks; its createType line lies past the first sector: still a descriptor file."""
    path = tmp_path / "zero.vmdk"
    path.write_text("# a descriptor\n" + "# padding comment line\n" * 40 +
                    'version=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicSparse"\n\n'
                    "RW 2048 ZERO\n")
    _refused(path, "vmdk-create-type")


def test_embedded_descriptor_create_types(small: dict[str, pathlib.Path]) -> None:
    path = small["monolithicSparse"]
    h = _header(path)
    desc_at, desc_len = int(h[5]) * 512, int(h[6]) * 512
    text = (b'# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
            b'createType="monolithicFlat"\n\nRW 8192 FLAT "/etc/passwd" 0\n')
    write_at(path, desc_at, text.ljust(desc_len, b"\0"))
    _refused(path, "vmdk-create-type")


def test_capacity_zero_with_descriptor_refused(small: dict[str, pathlib.Path]) -> None:
    """qemu reads a KDMV file of capacity 0 with a descriptor as a descriptor file."""
    path = small["streamOptimized"]
    _set_header(path, 3, 0)
    err = _refused(path, "vmdk-create-type")
    assert "capacity 0" in str(err)


def test_delta_link_refused(small: dict[str, pathlib.Path]) -> None:
    path = small["monolithicSparse"]
    h = _header(path)
    desc_at, desc_len = int(h[5]) * 512, int(h[6]) * 512
    text = (b'# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=2\n'
            b'createType="monolithicSparse"\nparentFileNameHint="/nonexistent/base.vmdk"\n\n'
            b'RW 8216 SPARSE "monolithicSparse.vmdk"\n')
    write_at(path, desc_at, text.ljust(desc_len, b"\0"))
    _refused(path, "vmdk-parent")


@pytest.mark.parametrize(("head", "code"), [
    (b"COWD\x01\x00\x00\x00", "vmdk-unsupported"),
    ((0xCAFEBABE).to_bytes(8, "little"), "vmdk-unsupported"),
    (b"QFI\xfb\x00\x00\x00\x03", "vmdk-unsupported"),
])
def test_other_kinds_refused(tmp_path: pathlib.Path, head: bytes, code: str) -> None:
    path = tmp_path / "other.vmdk"
    path.write_bytes(head + bytes(4096))
    _refused(path, code)


@pytest.mark.parametrize(("index", "value", "code"), [
    (4, 100, "vmdk-bad-header"),  # grain size not a power of two
    (4, 4, "vmdk-bad-header"),  # grain size under 8 sectors
    (4, 1 << 20, "absurd-table-size"),  # 512 MiB grains
    (4, 0, "absurd-table-size"),  # no grain size
    (7, 0, "absurd-table-size"),  # no entries per grain table
    (7, 4096, "absurd-table-size"),  # more than qemu's 512
    (3, 1 << 45, "absurd-table-size"),  # a grain directory over 32 MiB
    (3, 1 << 38, "header-field-out-of-bounds"),  # a grain directory past the end
    (9, 1 << 40, "header-field-out-of-bounds"),  # gdOffset past the end
    (10, 1 << 40, "header-field-out-of-bounds"),  # overHead past the end: truncated
    (13, 7, "vmdk-unsupported"),  # unknown compressAlgorithm
    (1, 9, "vmdk-bad-version"),
])
def test_hostile_headers(small: dict[str, pathlib.Path], index: int, value: int,
                         code: str) -> None:
    path = small["monolithicSparse"]
    _set_header(path, index, value)
    _refused(path, code)


def test_text_mode_transfer_detected(small: dict[str, pathlib.Path]) -> None:
    """Flag bit 0: the newline test bytes "\\n \\r\\n" show a text-mode (FTP ASCII) copy."""
    path = small["streamOptimized"]
    assert _header(path)[12] == b"\n \r\n" and int(_header(path)[2]) & 1
    fields = _header(path)
    fields[12] = b"\n \n\n"
    write_at(path, 0, _HDR.pack(*fields))
    _refused(path, "vmdk-bad-header")


def test_shared_grain_tables_bounded(small: dict[str, pathlib.Path]) -> None:
    """A huge capacity whose directory entries all name the same grain table: the work is
    bounded by what the file can hold, and refused."""
    path = small["monolithicSparse"]
    raw = bytearray(path.read_bytes())
    table = _gd(path)[0]
    entries = 200_000  # a 800 KB directory mapping 6 TiB through one table
    gd_at = len(raw)
    raw += struct.pack("<I", table) * entries
    path.write_bytes(bytes(raw))
    _set_header(path, 3, entries * 512 * 128)
    _set_header(path, 9, gd_at // 512)
    _refused(path, "absurd-table-size")


def test_random_damage_gives_only_diskkit_errors(small: dict[str, pathlib.Path]) -> None:
    """Bytes flipped in the metadata and the first grains: reading gives the bytes or a
    DiskkitError, never another exception."""
    rng = random.Random(3)
    for path in small.values():
        pristine = path.read_bytes()
        h = _HDR.unpack_from(pristine)
        gd = _gd(path)
        first = struct.unpack_from("<I", pristine, gd[0] * 512)[0] * 512  # grain 0
        spots = [(0, 80), (int(h[9]) * 512, 16), (gd[0] * 512, 2048), (first, 64),
                 (first + 64, 2048), (int(h[5]) * 512, 300)]
        for _ in range(100):
            data = bytearray(pristine)
            for _flip in range(rng.randrange(1, 6)):
                base, span = rng.choice(spots)
                data[base + rng.randrange(span)] = rng.randrange(256)
            path.write_bytes(bytes(data))
            try:
                with VmdkReader(FileReader(str(path))) as r:
                    list(r.extents())
                    r.read(0, min(r.size, 6 * MiB))
            except DiskkitError:
                pass
