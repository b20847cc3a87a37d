"""The pure-Python qcow2 reader against qemu: every byte equal to ``qemu-img convert -O raw``
(read sizes swept at unaligned offsets), extents equal to ``qemu-img map``."""

from __future__ import annotations

import json
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diskkit.errors import DiskkitError, ImageError
from diskkit.readers.base import BytesReader, Reader
from diskkit.readers.qcow2 import Qcow2Reader
from diskkit.readers.raw import FileReader
from tests.helpers import create, qemu_img
from tests.readers.images import MiB, compressible, merge, qemu_io, qemu_map, raw_of, sweep

WRITES = ("write -P 0xab 1M 64k", "write -z 3M 128k", "write -P 0x11 5000k 3k",
          "write -P 0x5a 8191k 2k", "write -P 0x07 60M 4k")


def _built(tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    imgs: dict[str, pathlib.Path] = {}

    def made(name: str, size: str, *opts: str, writes: tuple[str, ...] = WRITES) -> None:
        path = create(tmp / f"{name}.qcow2", "qcow2", size, *opts)
        qemu_io(path, "qcow2", *writes)
        imgs[name] = path

    made("v3", "64M")
    made("v2", "64M", "compat=0.10")
    made("cluster-512", "64M", "cluster_size=512")
    made("cluster-2M", "64M", "cluster_size=2M")
    made("extended-l2", "64M", "extended_l2=on,cluster_size=128k",
         writes=(*WRITES, "write -P 0xcd 4k 8k", "write -z 68k 4k", "write -P 1 2M 20k"))
    made("preallocated", "16M", "preallocation=metadata",
         writes=("write -P 0x42 1M 4k", "write -z 2M 64k"))
    # internal snapshot: shared clusters lose the "refcount is one" bit 63, still read
    made("snapshot", "64M")
    qemu_img("snapshot", "-c", "s1", imgs["snapshot"])
    qemu_io(imgs["snapshot"], "qcow2", "write -P 0xee 1M 4k", "write -P 0xef 40M 64k")
    # grown after writing: a larger L1 table, relocated
    made("resized", "1M", "cluster_size=512", writes=("write -P 0x30 4k 4k",))
    qemu_img("resize", "-f", "qcow2", imgs["resized"], "64M")
    qemu_io(imgs["resized"], "qcow2", "write -P 0x31 60M 64k", "write -P 0x32 1023k 2M")
    src = tmp / "src.raw"
    data = bytearray(compressible(24 * MiB))
    data[4 * MiB : 6 * MiB] = bytes(2 * MiB)  # a hole the converter leaves unallocated
    data[10 * MiB : 10 * MiB + 1000] = b"\xff" * 1000
    src.write_bytes(bytes(data))
    for name, opts in [("zlib", ()), ("zstd", ("compression_type=zstd",)),
                       ("zstd-extl2", ("compression_type=zstd,extended_l2=on",)),
                       ("zlib-512", ("cluster_size=512",)),
                       ("zstd-2M", ("compression_type=zstd,cluster_size=2M",))]:
        path = tmp / f"{name}.qcow2"
        args = [a for o in opts for a in ("-o", o)]
        qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", *args, src, path)
        imgs[name] = path
    path = tmp / "converted-extl2.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "extended_l2=on", src, path)
    imgs["converted-extl2"] = path
    return imgs


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    return _built(tmp_path_factory.mktemp("qcow2"))


NAMES = ["v3", "v2", "cluster-512", "cluster-2M", "extended-l2", "preallocated", "zlib", "zstd",
         "zstd-extl2", "zlib-512", "zstd-2M", "converted-extl2", "snapshot", "resized"]


def _kinds_from_qemu(path: pathlib.Path) -> list[tuple[int, int, str]]:
    runs = []
    for e in qemu_map(path, "qcow2"):
        kind = "data" if e["data"] else "zero" if e["present"] else "unallocated"
        runs.append((e["start"], e["length"], kind))
    return merge(runs)


def _ours(reader: Qcow2Reader) -> list[tuple[int, int, str]]:
    return merge([(o, n, "data" if k == "compressed" else k) for o, n, k in reader.mapping()])


@pytest.mark.parametrize("name", NAMES)
def test_bytes_equal_qemu(images: dict[str, pathlib.Path], tmp_path: pathlib.Path,
                          name: str) -> None:
    path = images[name]
    ref = raw_of(path, "qcow2", tmp_path / "ref.raw")
    with Qcow2Reader(FileReader(str(path))) as r:
        assert r.size == len(ref)
        assert r.read(0, r.size) == ref
        sweep(r, ref)


@pytest.mark.parametrize("name", NAMES)
def test_extents_equal_qemu_map(images: dict[str, pathlib.Path], name: str) -> None:
    path = images[name]
    with Qcow2Reader(FileReader(str(path))) as r:
        assert _ours(r) == _kinds_from_qemu(path)
        ext = merge([(e.offset, e.length, e.data) for e in r.extents()])
        assert ext == merge([(o, n, k == "data") for o, n, k in _kinds_from_qemu(path)])


def test_compressed_clusters_are_really_there(images: dict[str, pathlib.Path]) -> None:
    for name in ("zlib", "zstd", "zstd-extl2", "zlib-512", "zstd-2M"):
        with Qcow2Reader(FileReader(str(images[name]))) as r:
            kinds = {k for _o, _n, k in r.mapping()}
            assert "compressed" in kinds, name


def test_terabyte_empty_image_enumerated_from_l1(tmp_path: pathlib.Path) -> None:
    path = create(tmp_path / "tb.qcow2", "qcow2", "1T")
    qemu_io(path, "qcow2", "write -P 0x99 700G 64k")
    with Qcow2Reader(FileReader(str(path))) as r:
        assert r.size == 1 << 40
        (only,) = list(r.data_extents())
        assert (only.offset, only.length) == (700 << 30, 64 << 10)
        assert r.read(700 << 30, 4) == b"\x99" * 4
        assert r.is_zero(0, 700 << 30)


# --- backing files: only through the caller's opener --------------------------------------


@pytest.fixture(scope="module")
def chain(images: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
          ) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("chain")
    base = images["v3"]
    overlay = create(tmp / "overlay.qcow2", "qcow2", "70M",
                     f"backing_file={base},backing_fmt=qcow2")
    # overwrite part of the base's data, zero another part (reads zero, not the base)
    qemu_io(overlay, "qcow2", "write -P 0x22 1040k 8k", "write -z 1M 4k", "write -P 3 66M 1k")
    return overlay


def _opener(calls: list[tuple[str, str | None]]):
    def opener(name: str, fmt: str | None) -> Reader:
        calls.append((name, fmt))
        assert fmt == "qcow2"
        return Qcow2Reader(FileReader(name))
    return opener


def test_backing_chain_when_opted_in(chain: pathlib.Path, tmp_path: pathlib.Path) -> None:
    ref = raw_of(chain, "qcow2", tmp_path / "ref.raw")
    calls: list[tuple[str, str | None]] = []
    with Qcow2Reader(FileReader(str(chain)), backing_opener=_opener(calls)) as r:
        assert r.read(0, r.size) == ref
        sweep(r, ref)
        qmap = merge([(e["start"], e["length"], e["data"]) for e in qemu_map(chain, "qcow2")])
        assert merge([(e.offset, e.length, e.data) for e in r.extents()]) == qmap
    assert len(calls) == 1


def test_backing_not_followed_by_default(chain: pathlib.Path, tmp_path: pathlib.Path) -> None:
    # qemu's view of the overlay alone: the same image opened with "backing": null
    spec = {"driver": "qcow2", "file": {"driver": "file", "filename": str(chain)},
            "backing": None}
    ref = raw_of("json:" + json.dumps(spec), "qcow2", tmp_path / "alone.raw")
    with Qcow2Reader(FileReader(str(chain))) as r:
        assert r.backing is None
        assert r.read(0, r.size) == ref
        assert r.read(5000 * 1024, 10) == bytes(10)  # the base's data is not seen


# --- external data file --------------------------------------------------------------------


def test_external_data_file(tmp_path: pathlib.Path) -> None:
    data_path = tmp_path / "data.raw"
    path = create(tmp_path / "df.qcow2", "qcow2", "16M", f"data_file={data_path}")
    qemu_io(path, "qcow2", "write -P 0x61 1M 64k", "write -P 0x62 5M 3k")
    ref = raw_of(path, "qcow2", tmp_path / "ref.raw")
    with Qcow2Reader(FileReader(str(path))) as r:
        # the layout is known from the L2 tables alone...
        assert [(e.offset, e.length) for e in r.data_extents()] == [(1 << 20, 64 << 10),
                                                                     (5 << 20, 64 << 10)]
        assert r.read(0, 4096) == bytes(4096)  # unallocated: no data file needed
        # ...but the data is refused without the caller's data file
        with pytest.raises(ImageError, match="external data file"):
            r.read(1 << 20, 10)
    with Qcow2Reader(FileReader(str(path)), data_file=FileReader(str(data_path))) as r:
        assert r.read(0, r.size) == ref


# --- hostile and broken images -------------------------------------------------------------


def _patch(path: pathlib.Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _l1_offset(path: pathlib.Path) -> int:
    return int.from_bytes(path.read_bytes()[40:48], "big")


@pytest.mark.parametrize(("field", "value", "code"), [
    (36, (1 << 31).to_bytes(4, "big"), "absurd-table-size"),
    (36, (1 << 22).to_bytes(4, "big"), "header-field-out-of-bounds"),
    (40, (1 << 50).to_bytes(8, "big"), "header-field-out-of-bounds"),
    (40, (0x30000 + 8).to_bytes(8, "big"), "qcow2-unreadable"),
    (36, (0).to_bytes(4, "big"), "qcow2-unreadable"),
    (72, (1 << 33).to_bytes(8, "big"), "qcow2-unreadable"),
])
def test_hostile_headers(tmp_path: pathlib.Path, field: int, value: bytes, code: str) -> None:
    path = create(tmp_path / "h.qcow2", "qcow2", "64M")
    _patch(path, field, value)
    with pytest.raises(ImageError) as err:
        Qcow2Reader(FileReader(str(path)))
    assert err.value.code == code


def test_l2_table_past_the_end(tmp_path: pathlib.Path) -> None:
    path = create(tmp_path / "h.qcow2", "qcow2", "64M")
    _patch(path, _l1_offset(path), ((1 << 40) | (1 << 63)).to_bytes(8, "big"))
    with Qcow2Reader(FileReader(str(path))) as r, pytest.raises(ImageError):
        r.read(0, 512)


def test_unaligned_l2_table(tmp_path: pathlib.Path) -> None:
    path = create(tmp_path / "h.qcow2", "qcow2", "64M")
    _patch(path, _l1_offset(path), (0x10200).to_bytes(8, "big"))
    with Qcow2Reader(FileReader(str(path))) as r, pytest.raises(ImageError):
        list(r.extents())


def test_garbage_compressed_cluster(images: dict[str, pathlib.Path], tmp_path: pathlib.Path
                                    ) -> None:
    for name in ("zlib", "zstd"):
        path = tmp_path / f"{name}.qcow2"
        path.write_bytes(images[name].read_bytes())
        with Qcow2Reader(FileReader(str(path))) as r:
            off = next(o for o, _n, k in r.mapping() if k == "compressed")
            entry = next(h for g, _n, k, h in r._pieces(off, off + 1) if k == "compressed")
            host = entry & ((1 << (62 - (r.header.cluster_bits - 8))) - 1)
        _patch(path, host, b"\xff" * 64)
        with Qcow2Reader(FileReader(str(path))) as r, pytest.raises(ImageError):
            r.read(off, 4096)


def test_encrypted_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "enc.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=hunter2",
             "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", path, "16M")
    with pytest.raises(ImageError) as err:
        Qcow2Reader(FileReader(str(path)))
    assert err.value.code == "encrypted"


def test_truncated_file(images: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cut.qcow2"
    path.write_bytes(images["v3"].read_bytes()[:0x30000 + 4])
    with pytest.raises(ImageError):
        Qcow2Reader(FileReader(str(path)))


# --- fuzz: mutated real images give bytes or a diskkit error, nothing else -----------------


@pytest.fixture(scope="module")
def small_images(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    tmp = tmp_path_factory.mktemp("fuzz")
    out = []
    for opts in (("cluster_size=512",), ("cluster_size=16k", "extended_l2=on")):
        path = create(tmp / "f.qcow2", "qcow2", "1M", *opts)
        qemu_io(path, "qcow2", "write -P 0xab 4k 8k", "write -z 64k 16k", "write -P 1 900k 1k")
        out.append(path.read_bytes())
        path.unlink()
    src = tmp / "src.raw"
    src.write_bytes(compressible(256 << 10))
    for ctype in ("zlib", "zstd"):
        path = tmp / "c.qcow2"
        qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o",
                 f"cluster_size=4k,compression_type={ctype}", src, path)
        out.append(path.read_bytes())
        path.unlink()
    return out


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.integers(0, 3), data=st.data())
def test_fuzz_mutated_images(small_images: list[bytes], which: int, data: st.DataObject
                             ) -> None:
    image = bytearray(small_images[which])
    for _ in range(data.draw(st.integers(1, 8))):
        # the header fields half the time, anywhere (tables, data) otherwise
        pos = data.draw(st.one_of(st.integers(0, 111), st.integers(0, len(image) - 8)))
        width = data.draw(st.sampled_from([1, 8]))
        image[pos : pos + width] = data.draw(st.binary(min_size=width, max_size=width))
    try:
        with Qcow2Reader(BytesReader(bytes(image))) as r:
            got = r.read(0, 1 << 20)
            assert len(got) == min(r.size, 1 << 20)
            for ext in r.extents(0, 64 << 20):
                assert ext.length > 0
    except DiskkitError:
        pass
