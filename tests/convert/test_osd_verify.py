"""Verification of an RBD output by digests its OSDs compute (diskkit/convert/osdverify.py,
diskkit/readers/rados_checksum.py), on the real single-node test cluster.

Ground truth is ``qemu-img compare`` on the same source and image (it reads both whole).
The source has data that ends inside its 4 MiB pieces, a full piece, a piece with only
zeros and a short last piece, so every rule of the check is exercised: the OSD's hash of
[0, T) against the source's, the object's bytes past T as zeros (whether the object ends
at T or later), absent objects, and data only the output has. The read-back path
(``compare_digests`` with the same trimmed digests) must give the same verdicts.
"""

from __future__ import annotations

import os
import pathlib
import random
import re

import pytest
import xxhash

from diskkit.convert import osdverify, verify
from diskkit.readers.rbd import RbdReader
from diskkit.runner import run
from tests.helpers import qemu_img

if not (pathlib.Path(__file__).parent.parent / "fixtures" / "ceph.py").exists():
    pytest.skip("the Ceph test cluster fixture is not there", allow_module_level=True)

pytestmark = pytest.mark.slow

MiB = 1 << 20
#: 22 MiB: pieces 0-4 of 4 MiB and a last piece of 2 MiB.
SIZE = 22 * MiB
#: (offset, length) of the source's random data.
DATA = [(0, MiB),                      # piece 0: data then 3 MiB of zeros (T = 1 MiB)
        (4 * MiB, 4 * MiB),            # piece 1: full
        # piece 2 (8-12 MiB): nothing
        (12 * MiB, 4096), (15 * MiB, 512),  # piece 3: two runs, T = 3 MiB + 512
        (20 * MiB + 5, 2 * MiB - 5)]   # piece 5 (short): data to the disk's end


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    d = tmp_path_factory.mktemp("osd-verify")
    raw = d / "src.raw"
    rng = random.Random(15)
    with open(raw, "wb") as f:
        f.truncate(SIZE)
        for off, n in DATA:
            f.seek(off)
            data = bytearray(rng.randbytes(n))
            data[-1] = data[-1] or 1  # the run's last byte is not zero: T is exact
            f.write(data)
    out = d / "src.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, out)
    return out


def _spec(cluster, name: str) -> str:
    return f"rbd:{cluster.pool}/{name}:conf={cluster.conf}"


def _qemu_compare(cluster, src: pathlib.Path, name: str) -> str:
    r = run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(src), _spec(cluster, name)],
            timeout=120, check=False, env=cluster.env)
    return (r.stdout + r.stderr).strip().splitlines()[-1]


def _verdicts(cluster, src: pathlib.Path, name: str) -> tuple[object, object]:
    """(the OSD check's verdict, the read-back check's verdict) on image ``name``."""
    from diskkit.target import parse_target

    image = parse_target(_spec(cluster, name))
    open_src = verify.opener(str(src), "qcow2")
    assert open_src is not None
    digest = verify.SourceDigest(open_src, 1, osdverify.trimmed_digest)
    digest.start()
    connecting = osdverify.Connecting(image)
    connecting.start()
    try:
        on_osds = osdverify.compare_on_osds(open_src, digest, image, connecting)
    finally:
        connecting.close()
    read_back = verify.compare_digests(open_src, digest, lambda: RbdReader(image),
                                       workers=verify.IN_FLIGHT)
    return on_osds, read_back


def _agrees(cluster, src: pathlib.Path, name: str, same: bool) -> None:
    """Both checks say ``same`` and, on a difference, name qemu-img compare's offset."""
    qemu = _qemu_compare(cluster, src, name)
    on_osds, read_back = _verdicts(cluster, src, name)
    assert on_osds == read_back, (on_osds, read_back)
    assert isinstance(on_osds, tuple)
    assert on_osds[0] is same, (on_osds, qemu)
    if same:
        assert qemu == "Images are identical."
    else:
        # diskkit names the first differing byte, qemu-img compare its 512-byte sector.
        at = int(re.search(r"offset (\d+)", str(on_osds[1])).group(1))  # type: ignore[union-attr]
        assert qemu == f"Content mismatch at offset {at - at % 512}!", (on_osds, qemu)


def test_trimmed_length_against_the_obvious() -> None:
    rng = random.Random(7)
    cases = [b"", b"\0", b"\0" * 100_000, b"a", b"a\0", b"\0a", os.urandom(5) + bytes(70_000)]
    for _ in range(200):
        head = rng.randbytes(rng.choice([0, 1, 10, 65535, 65536, 65537, 200_000]))
        cases.append(head + bytes(rng.choice([0, 1, 65535, 65536, 65537, 300_000])))
    for data in cases:
        assert osdverify.trimmed_length(data) == len(data.rstrip(b"\0"))


def test_osd_digests_find_what_qemu_img_compare_finds(ceph_cluster,
                                                      source: pathlib.Path) -> None:
    import rados
    import rbd

    c = ceph_cluster
    name = "osd-verify"
    qemu_img("convert", "-f", "qcow2", "-O", "raw", source, _spec(c, name))
    cluster = rados.Rados(conffile=str(c.conf))
    cluster.connect(timeout=30)
    try:
        with cluster.open_ioctx(c.pool) as io, rbd.Image(io, name) as img:
            _agrees(c, source, name, True)

            def poke(offset: int, data: bytes, same: bool) -> None:
                old = img.read(offset, len(data))
                img.write(data, offset)
                _agrees(c, source, name, same)
                img.write(old, offset)
                _agrees(c, source, name, True)

            flip = img.read(4 * MiB + 12345, 1)
            poke(4 * MiB + 12345, bytes([flip[0] ^ 0x40]), False)  # inside a full piece
            poke(3 * MiB, b"\x07", False)        # past piece 0's data, inside its object
            poke(10 * MiB, b"\x01", False)       # a piece the source has no data in
            poke(2 * MiB, bytes(MiB), True)      # zeros written past T: same content
            poke(15 * MiB + 511, b"\0", False)   # the last byte of piece 3's data
            poke(SIZE - 1, b"\0", False)         # the disk's last byte
            # A whole object gone (discard): its piece now reads as zeros.
            keep = img.read(4 * MiB, 4 * MiB)
            img.discard(4 * MiB, 4 * MiB)
            _agrees(c, source, name, False)
            img.write(keep, 4 * MiB)
            _agrees(c, source, name, True)
            img.resize(SIZE + MiB)  # a longer disk reading zeros past the source's end
            on_osds, _ = _verdicts(c, source, name)
            assert isinstance(on_osds, tuple) and not on_osds[0]
            assert "sizes differ" in on_osds[1]
    finally:
        cluster.shutdown()
    c.rbd("rm", "--no-progress", f"{c.pool}/{name}")


def test_other_layouts_are_read_back(ceph_cluster, source: pathlib.Path) -> None:
    """8 MiB objects, or a stripe over several objects: piece i is not object i, so the OSD
    check declines (None) and the read-back check decides, rightly."""
    c = ceph_cluster
    for name, args in (("osd-order23", ["--object-size", "8M"]),
                       ("osd-striped", ["--stripe-unit", "1M", "--stripe-count", "4"])):
        c.rbd("create", "--size", f"{SIZE >> 20}M", *args, f"{c.pool}/{name}")
        qemu_img("convert", "-n", "-f", "qcow2", "-O", "raw", source, _spec(c, name))
        on_osds, read_back = _verdicts(c, source, name)
        assert on_osds is None
        assert read_back == (True, "Images are identical.")
        c.rbd("rm", "--no-progress", f"{c.pool}/{name}")


@pytest.fixture
def read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths of every read of an RBD image's data through librbd (``RbdReader``)."""
    lengths: list[int] = []
    real = RbdReader._read

    def counting(self: RbdReader, offset: int, length: int) -> bytes:
        lengths.append(length)
        return real(self, offset, length)

    monkeypatch.setattr(RbdReader, "_read", counting)
    return lengths


def test_the_command_reads_nothing_back(ceph_cluster, source: pathlib.Path,
                                        read: list[int]) -> None:
    """``diskkit convert`` into RBD verifies by the OSDs' digests: librbd reads none of the
    image's data (only the source is read, during the copy)."""
    from diskkit.convert import Request, convert

    c = ceph_cluster
    result = convert(Request(str(source), _spec(c, "osd-cmd"), "raw"), quiet=True)
    assert result.verified and result.verify_method == "digest"
    assert sum(read) == 0
    assert _qemu_compare(c, source, "osd-cmd") == "Images are identical."
    c.rbd("rm", "--no-progress", f"{c.pool}/osd-cmd")


def test_what_the_osd_hashes(ceph_cluster) -> None:
    """The checksum op as the module docstring describes it, on objects written with
    librados: ranges cut at the object's end, nothing past it, absent objects."""
    import rados

    from diskkit.errors import HostError
    from diskkit.readers.rados_checksum import ObjectDigests

    c = ceph_cluster
    data = os.urandom(3 * MiB)
    cluster = rados.Rados(conffile=str(c.conf))
    cluster.connect(timeout=30)
    try:
        with cluster.open_ioctx(c.pool) as io:
            io.write_full("dk-sum", data)
            pool_id = cluster.pool_lookup(c.pool)
            with ObjectDigests(str(c.conf), None, None, timeout=20, spec="test") as osds:
                with pytest.raises(HostError):
                    osds.probe("dk-sum", 0, 1)  # no pool chosen yet
                osds.use_pool(pool_id, None)
                got = osds.probe("dk-sum", MiB, 4 * MiB)
                assert got.size == 3 * MiB
                assert got.head == xxhash.xxh64_intdigest(data[:MiB])
                assert got.tail == xxhash.xxh64_intdigest(data[MiB:])
                got = osds.probe("dk-sum", 3 * MiB, 4 * MiB)
                assert got.head == xxhash.xxh64_intdigest(data) and got.tail is None
                got = osds.probe("dk-sum", 0, MiB)
                assert got.head is None and got.tail == xxhash.xxh64_intdigest(data[:MiB])
                assert osds.probe("dk-absent", 0, MiB).size is None
                with pytest.raises(HostError):
                    osds.use_pool(987654, None)  # no such pool
            io.remove_object("dk-sum")
    finally:
        cluster.shutdown()


def test_an_unreachable_cluster_is_one_error(tmp_path: pathlib.Path) -> None:
    """No monitor answers: a HostError within the configured timeout, not a hang."""
    import socket

    from diskkit.errors import HostError
    from diskkit.readers.rados_checksum import ObjectDigests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "ceph.conf"
    conf.write_text(f"[global]\nmon host = 127.0.0.1:{port}\nauth cluster required = none\n"
                    "auth service required = none\nauth client required = none\n")
    with pytest.raises(HostError) as err:
        ObjectDigests(str(conf), None, None, timeout=2, spec="test")
    assert err.value.code == "ceph-unreachable"


def test_with_cephx_and_a_user_of_its_own(ceph_cluster_cephx, source: pathlib.Path,
                                          read: list[int]) -> None:
    """cephx on, a user with ``profile rbd`` caps on the pool only, named by ``:id=`` and
    ``:keyring=``: the object-digest connection (ctypes, its own handle) authenticates as
    that user, and the check still reads nothing back."""
    from diskkit.convert import Request, convert

    c = ceph_cluster_cephx
    keyring = c.dir / "writer.keyring"
    c.ceph("auth", "get-or-create", "client.writer", "mon", "profile rbd",
           "osd", f"profile rbd pool={c.pool}", "-o", str(keyring))
    spec = f"rbd:{c.pool}/cephx-out:conf={c.conf}:id=writer:keyring={keyring}"
    result = convert(Request(str(source), spec, "raw"), quiet=True)
    assert result.verified and result.verify_method == "digest" and sum(read) == 0
    r = run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(source),
             f"rbd:{c.pool}/cephx-out:conf={c.conf}:id=writer:keyring={keyring}"],
            timeout=120, check=False, env=c.env)
    assert r.returncode == 0, r.stdout + r.stderr
