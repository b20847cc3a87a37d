"""The qcow2 reader's fast allocation map against qemu's own view of images built here:
``qemu-img map --output=json`` (kinds AND host offsets), and the guest bytes of
``qemu-img convert -O raw`` for reads of 1 B .. 4 MiB at unaligned offsets."""

from __future__ import annotations

import pathlib
import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diskkit.errors import ImageError
from diskkit.readers.qcow2 import COMPRESSED, DATA, Qcow2Reader
from diskkit.readers.qcow2_clusters import same_step
from diskkit.readers.raw import FileReader
from tests.helpers import create, qemu_img
from tests.readers.images import MiB, compressible, merge, qemu_io, qemu_map, raw_of

SIZES = (1, 3, 512, 4095, 4097, 65535, 65536, 65537, 1 * MiB + 1, 3 * MiB - 7, 4 * MiB)


def _qemu_runs(path: pathlib.Path) -> list[tuple[int, int, tuple[str, int | None]]]:
    """(start, length, (kind, host offset of the start)) from qemu-img map, merged where
    qemu's extents continue each other on the host too."""
    out: list[tuple[int, int, tuple[str, int | None]]] = []
    for e in qemu_map(path, "qcow2"):
        kind = "data" if e["data"] else "zero" if e["present"] else "unallocated"
        host = e.get("offset") if kind == "data" else None
        if out:
            s, n, (k, h) = out[-1]
            if k == kind and s + n == e["start"] and (
                    (h is None and host is None) or (h is not None and host == h + n)):
                out[-1] = (s, n + e["length"], (k, h))
                continue
        out.append((e["start"], e["length"], (kind, host)))
    return out


def _our_runs(r: Qcow2Reader) -> list[tuple[int, int, tuple[str, int | None]]]:
    out: list[tuple[int, int, tuple[str, int | None]]] = []
    for g, n, kind, host in r._pieces(0, r.size):
        k = "data" if kind in (DATA, COMPRESSED) else kind
        h = host if kind == DATA else None
        if kind == COMPRESSED:
            h = -1  # qemu gives no offset for compressed data either
        if out:
            s, ln, (pk, ph) = out[-1]
            if pk == k and s + ln == g and (
                    (ph is None and h is None) or (ph == -1 and h == -1)
                    or (ph is not None and ph >= 0 and h == ph + ln)):
                out[-1] = (s, ln + n, (pk, ph))
                continue
        out.append((g, n, (k, h)))
    return [(s, n, (k, None if h == -1 else h)) for s, n, (k, h) in out]


def _sweep(r: Qcow2Reader, ref: bytes, seed: int, count: int = 80) -> None:
    rng = random.Random(seed)
    for i in range(count):
        n = SIZES[i % len(SIZES)]
        off = rng.randrange(0, len(ref))
        assert r.read(off, n) == ref[off : off + n], f"read({off}, {n})"


@pytest.fixture(scope="module")
def scattered(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """4 KiB clusters (512 entries, 2 MiB per L2 table) so that a few MiB cross tables:
    random scattered writes in random order, a contiguous 5 MiB write across L2 tables, a
    write that interleaves with it on the host, v3 zero clusters on unallocated and on
    allocated clusters, and L2 tables never allocated."""
    path = create(tmp_path_factory.mktemp("map") / "s.qcow2", "qcow2", "256M",
                  "cluster_size=4k")
    rng = random.Random(5)
    cmds = [f"write -q -P {i % 200 + 1} {o * 4096 + 512 * (i % 3)} {rng.choice([512, 4096, 9000])}"
            for i, o in enumerate(rng.sample(range(16384, 32768), 300))]
    cmds += ["write -q -P 0x41 130M 3M", "write -q -P 0x42 200M 64k",
             "write -q -P 0x43 133M 2M",  # continues 130M+3M on the guest, not on the host
             "write -q -z 150M 6M",  # zero clusters on unallocated clusters (a long run)
             "write -q -P 0x44 160M 1M", "write -q -z 160M 512k",  # zero over allocated
             "write -q -P 0x45 255M 1M"]  # the very end
    qemu_io(path, "qcow2", *cmds)
    return path


def test_scattered_map_equals_qemu_including_host_offsets(scattered: pathlib.Path) -> None:
    with Qcow2Reader(FileReader(str(scattered))) as r:
        assert _our_runs(r) == _qemu_runs(scattered)
        # extents, and the same answer asked in windows (the map is cached per table)
        whole = merge([(e.offset, e.length, e.data) for e in r.extents()])
        windows = merge([(e.offset, e.length, e.data) for w in range(0, r.size, 3 * MiB + 17)
                         for e in r.extents(w, 3 * MiB + 17)])
        assert whole == windows
        assert r.is_zero(0, 64 * MiB)  # L2 tables never allocated
        assert not r.is_zero(0, r.size)


def test_scattered_reads_equal_qemu(scattered: pathlib.Path, tmp_path: pathlib.Path) -> None:
    ref = raw_of(scattered, "qcow2", tmp_path / "ref.raw")
    with Qcow2Reader(FileReader(str(scattered))) as r:
        _sweep(r, ref, seed=1)
        for off in (130 * MiB - 5, 133 * MiB - 4097, 150 * MiB - 1, 160 * MiB + 511,
                    255 * MiB + 1):  # across run and table boundaries
            assert r.read(off, 4 * MiB) == ref[off : off + 4 * MiB]
        assert r.read(0, r.size) == ref


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    tmp = tmp_path_factory.mktemp("variants")
    src = tmp / "src.raw"
    data = bytearray(compressible(12 * MiB))
    data[2 * MiB : 5 * MiB] = bytes(3 * MiB)
    src.write_bytes(bytes(data))
    out = {}
    for name, opts in [("compressed", ["-c"]),
                       ("compressed-zstd-extl2", ["-c", "-o",
                                                  "compression_type=zstd,extended_l2=on"]),
                       ("extl2", ["-o", "extended_l2=on,cluster_size=64k"])]:
        path = tmp / f"{name}.qcow2"
        qemu_img("convert", "-f", "raw", "-O", "qcow2", *opts, src, path)
        out[name] = path
    # extended L2 subclusters: partial writes and zeroes inside 64 KiB clusters
    path = create(tmp / "sub.qcow2", "qcow2", "32M", "extended_l2=on,cluster_size=64k")
    qemu_io(path, "qcow2", "write -q -P 1 2k 3k", "write -q -z 8k 4k", "write -q -P 2 62k 9k",
            "write -q -P 3 1M 64k", "write -q -P 4 1088k 64k", "write -q -z 4M 1M")
    out["subclusters"] = path
    # a backing chain: the overlay's unallocated parts show the base
    base = create(tmp / "base.qcow2", "qcow2", "32M")
    qemu_io(base, "qcow2", "write -q -P 7 0 8M", "write -q -P 8 20M 1M")
    overlay = create(tmp / "overlay.qcow2", "qcow2", "32M",
                     f"backing_file={base},backing_fmt=qcow2")
    qemu_io(overlay, "qcow2", "write -q -P 9 1M 64k", "write -q -z 2M 1M")
    out["overlay"] = overlay
    return out


@pytest.mark.parametrize("name", ["compressed", "compressed-zstd-extl2", "extl2",
                                  "subclusters"])
def test_variant_map_and_reads(variants: dict[str, pathlib.Path], tmp_path: pathlib.Path,
                               name: str) -> None:
    path = variants[name]
    ref = raw_of(path, "qcow2", tmp_path / "ref.raw")
    with Qcow2Reader(FileReader(str(path))) as r:
        assert _our_runs(r) == _qemu_runs(path)
        _sweep(r, ref, seed=len(name))
        assert r.read(0, r.size) == ref


def test_backing_chain_map_and_reads(variants: dict[str, pathlib.Path],
                                     tmp_path: pathlib.Path) -> None:
    path = variants["overlay"]
    ref = raw_of(path, "qcow2", tmp_path / "ref.raw")

    def opener(name: str, fmt: str | None) -> Qcow2Reader:
        return Qcow2Reader(FileReader(name))

    with Qcow2Reader(FileReader(str(path)), backing_opener=opener) as r:
        ours = merge([(e.offset, e.length, e.data) for e in r.extents()])
        assert ours == merge([(e["start"], e["length"], e["data"])
                              for e in qemu_map(path, "qcow2")])
        _sweep(r, ref, seed=3)
        assert r.read(0, r.size) == ref


def test_l1_entries_sharing_one_table_hit_the_budget(tmp_path: pathlib.Path) -> None:
    """Every L1 entry pointed at the same full L2 table: the map would describe far more
    clusters than the file holds. The whole-disk map is refused; a read near the start,
    which needs one table, still works."""
    path = create(tmp_path / "h.qcow2", "qcow2", "4G", "cluster_size=512")
    qemu_io(path, "qcow2", "write -q -P 0x5a 0 32k")  # fills the first L2 table (64 entries)
    raw = bytearray(path.read_bytes())
    l1_offset = int.from_bytes(raw[40:48], "big")
    l1_size = int.from_bytes(raw[36:40], "big")
    first = raw[l1_offset : l1_offset + 8]
    raw[l1_offset : l1_offset + 8 * l1_size] = first * l1_size
    path.write_bytes(bytes(raw))
    with Qcow2Reader(FileReader(str(path))) as r:
        assert r.read(0, 16) == b"\x5a" * 16
        with pytest.raises(ImageError) as err:
            list(r.extents())
        assert err.value.code == "qcow2-unreadable"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.booleans()), min_size=1, max_size=30),
       st.sampled_from([0, 512, 65536]))
def test_same_step_matches_a_plain_loop(runs: list[tuple[int, bool]], step: int) -> None:
    values: list[int] = []
    v = 1 << 40
    for length, jump in runs:
        values += [v + k * step for k in range(length)]
        v = values[-1] + (step * 7 + 3 if jump else step)
    table = array("Q", values)
    for i in range(len(table)):
        want = 1
        while i + want < len(table) and table[i + want] == table[i] + want * step:
            want += 1
        assert same_step(table, i, table[i], step, len(table) - i) == want
