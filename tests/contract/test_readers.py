"""Every Reader keeps the same contract (diskkit.readers.base): ``size``; ``read`` exact at
every boundary (sector, cluster, MiB, the last bytes); short reads past the end, never an
error; ``extents`` sorted, inside the disk, and every byte outside a data extent reads as
zero; ``readinto`` equal to ``read``; ``close`` idempotent. One reference disk (a sparse raw
file written here) is served by each reader; the ground truth is the file itself, and qemu's
own conversions (qemu-img convert, rbd import) make the other formats."""

from __future__ import annotations

import os
import pathlib
import random
from collections.abc import Callable, Iterator

import pytest

from diskkit.disk import open_container, open_disk
from diskkit.errors import InternalError
from diskkit.readers.base import Reader
from diskkit.readers.nbd import QemuNbdReader
from diskkit.runner import spawn, wait_for
from tests.helpers import qemu_img

MiB = 1 << 20
#: Not a multiple of 64 KiB nor of 1 MiB: the last cluster/object is partial.
SIZE = 6 * MiB + 1536
#: (offset, length) of the regions holding data; the rest are holes.
REGIONS = [(0, 512), (65536 - 100, 200), (MiB, 4096), (3 * MiB + 7, 70_000),
           (SIZE - 700, 700)]
OFFSETS = [0, 1, 511, 512, 513, 4095, 4096, 65535, 65536, 65537, MiB - 1, MiB, MiB + 1,
           SIZE - 513, SIZE - 512, SIZE - 1]
LENGTHS = [1, 2, 511, 512, 513, 4096, 65537]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, bytes]:
    """The reference raw disk (sparse) and its bytes."""
    d = tmp_path_factory.mktemp("contract-readers")
    path = d / "ref.raw"
    data = bytearray(SIZE)
    rng = random.Random(42)
    with open(path, "wb") as f:
        f.truncate(SIZE)
        for off, n in REGIONS:
            chunk = rng.randbytes(n)
            data[off : off + n] = chunk
            f.seek(off)
            f.write(chunk)
    return path, bytes(data)


def _raw(ref: pathlib.Path, tmp: pathlib.Path) -> Iterator[Reader]:
    with open_container(str(ref)) as r:
        yield r


def _qcow2(ref: pathlib.Path, tmp: pathlib.Path) -> Iterator[Reader]:
    q = tmp / "ref.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", ref, q)
    with open_disk(str(q)) as r:  # the pure-Python qcow2 reader
        yield r


def _qemu_nbd(ref: pathlib.Path, tmp: pathlib.Path) -> Iterator[Reader]:
    v = tmp / "ref.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", ref, v)
    with QemuNbdReader(str(v), "vmdk") as r:
        yield r


def _nbd_uri(ref: pathlib.Path, tmp: pathlib.Path) -> Iterator[Reader]:
    sock = tmp / "nbd.sock"
    with spawn(["qemu-nbd", "-t", "--read-only", "-f", "raw", "-k", str(sock), str(ref)]):
        wait_for(sock.exists, timeout=20, what="qemu-nbd's socket")
        with open_container(f"nbd+unix:///?socket={sock}") as r:
            yield r


def _rbd(ref: pathlib.Path, tmp: pathlib.Path, request: pytest.FixtureRequest
         ) -> Iterator[Reader]:
    cluster = request.getfixturevalue("ceph_cluster")
    name = f"contract-{os.getpid()}"
    cluster.rbd("import", str(ref), f"rbd/{name}")
    try:
        with open_container(f"rbd:rbd/{name}:conf={cluster.conf}") as r:
            yield r
    finally:
        cluster.rbd("rm", f"rbd/{name}")


READERS: dict[str, Callable[..., Iterator[Reader]]] = {
    "raw": _raw, "qcow2": _qcow2, "qemu-nbd": _qemu_nbd, "nbd-uri": _nbd_uri, "rbd": _rbd}


@pytest.fixture(params=list(READERS))
def served(request: pytest.FixtureRequest, reference: tuple[pathlib.Path, bytes],
           tmp_path: pathlib.Path) -> Iterator[tuple[Reader, bytes]]:
    path, data = reference
    make = READERS[request.param]
    gen = make(path, tmp_path, request) if request.param == "rbd" else make(path, tmp_path)
    reader = next(gen)
    try:
        yield reader, data
    finally:
        gen.close()


def test_size(served: tuple[Reader, bytes]) -> None:
    r, ref = served
    assert r.size == len(ref) == SIZE


def test_read_at_every_boundary(served: tuple[Reader, bytes]) -> None:
    r, ref = served
    for off in OFFSETS:
        for n in LENGTHS:
            assert r.read(off, n) == ref[off : off + n], (off, n)
    whole = b"".join(r.read(o, MiB) for o in range(0, SIZE, MiB))
    assert whole == ref


def test_short_reads_past_the_end(served: tuple[Reader, bytes]) -> None:
    r, ref = served
    assert r.read(SIZE - 3, 100) == ref[-3:]
    assert r.read(SIZE, 10) == b""
    assert r.read(SIZE + 4096, 1) == b""
    assert r.read(0, 0) == b""
    with pytest.raises(InternalError):
        r.read(-1, 10)


def test_readinto_equals_read(served: tuple[Reader, bytes]) -> None:
    r, ref = served
    for off in (0, 65436, SIZE - 100):
        buf = bytearray(300)
        n = r.readinto(off, memoryview(buf))
        assert n == min(300, SIZE - off)
        assert bytes(buf[:n]) == ref[off : off + n]


def test_extents(served: tuple[Reader, bytes]) -> None:
    r, ref = served
    exts = list(r.extents())
    pos = 0
    for e in exts:
        assert e.offset >= pos and e.length >= 0 and e.end <= SIZE, e
        if not e.data:  # a range said to read as zeros must read as zeros
            assert ref[e.offset : e.end].count(0) == e.length, e
            assert r.is_zero(e.offset, e.length)
        pos = e.end
    data = list(r.data_extents())
    covered = bytearray(SIZE)
    for e in data:
        covered[e.offset : e.end] = b"\x01" * e.length
    for off, n in REGIONS:  # every byte written is inside a data extent
        assert covered[off : off + n].count(1) == n, (off, n)
    sub = list(r.extents(MiB, 4096))
    assert sub and sub[0].offset >= MiB and sub[-1].end <= MiB + 4096


def test_close_is_idempotent(served: tuple[Reader, bytes]) -> None:
    r, _ = served
    r.close()
    r.close()
