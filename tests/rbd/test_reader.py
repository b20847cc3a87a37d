"""RbdReader against the real cluster, checked against the source files and against the rbd
CLI (``rbd export``, ``rbd diff``, ``rbd info``), which do not share our code."""

from __future__ import annotations

import hashlib
import time

import pytest

from diskkit.disk import open_container
from diskkit.errors import HostError, UserError
from diskkit.readers.rbd import RbdReader
from diskkit.runner import run
from diskkit.target import parse_target
from tests.rbd.conftest import NS, RbdImages

MiB = 1 << 20


def _export_sha(imgs: RbdImages, spec: str) -> str:
    out = run(["rbd", "-c", imgs.conf, "export", f"{imgs.pool}/{spec}", "-"], binary=True,
              timeout=120).stdout
    return hashlib.sha256(out).hexdigest()


def _read_all(r: RbdReader) -> bytes:
    return b"".join(r.read(off, 4 * MiB) for off in range(0, r.size, 4 * MiB))


@pytest.mark.parametrize("name", ["librbd-raw", "qemu-raw", "qcow2-bytes"])
def test_bytes_match_source_and_rbd_export(rbd_images: RbdImages, name: str) -> None:
    with open_container(rbd_images.uri(name)) as r:
        assert isinstance(r, RbdReader)
        data = _read_all(r)
    src = rbd_images.files[name].read_bytes()
    assert data == src
    assert hashlib.sha256(data).hexdigest() == _export_sha(rbd_images, name)


@pytest.mark.parametrize("name", ["librbd-raw", "qemu-raw", "blank-1t", "vol-from-raw",
                                  "vol-deep", "plain-3g"])
def test_extents_match_rbd_diff(rbd_images: RbdImages, name: str) -> None:
    diff = rbd_images.rbd_json("diff", "--whole-object", f"{rbd_images.pool}/{name}")
    expected: list[tuple[int, int]] = []
    for e in sorted(diff, key=lambda e: e["offset"]):
        if e["exists"] not in ("true", True):
            continue
        if expected and expected[-1][0] + expected[-1][1] == e["offset"]:
            expected[-1] = (expected[-1][0], expected[-1][1] + e["length"])
        else:
            expected.append((e["offset"], e["length"]))
    info = rbd_images.rbd_json("info", f"{rbd_images.pool}/{name}")
    with RbdReader(rbd_images.uri(name)) as r:
        assert r.size == info["size"]
        got = [(e.offset, e.length) for e in r.data_extents()]
        assert got == expected
        # extents() tiles the whole image, holes included.
        pos = 0
        for e in r.extents():
            assert e.offset == pos
            pos = e.end
        assert pos == r.size
        if "fast-diff" in info["features"]:
            assert r.fast_diff and r.allocated == sum(n for _, n in expected)
        else:  # without an object map the total is not known without asking every object
            assert not r.fast_diff and r.allocated is None
        # Any window asked on its own agrees with the whole listing.
        for off, ln in expected:
            part = [(e.offset, e.length) for e in r.data_extents(off + 1, ln // 2)]
            assert part == [(off + 1, ln // 2)]


def test_clone_reads_parent_and_own_data(rbd_images: RbdImages) -> None:
    src = rbd_images.files["librbd-raw"].read_bytes()
    with RbdReader(rbd_images.uri("vol-from-raw")) as r:
        assert r.read(0, 512) == src[:512]
        assert r.read(3 * MiB, MiB) == src[3 * MiB : 4 * MiB]
        assert r.read(40 * MiB, MiB) == b"\xab" * MiB
        offsets = [e.offset for e in r.data_extents()]
        assert 0 in offsets and any(o <= 40 * MiB < o + 4 * MiB or o == 40 * MiB
                                    for o in offsets)


def test_snapshot_is_read_at_the_snapshot(rbd_images: RbdImages) -> None:
    # vol-from-raw@s2 was taken after the 0xAB write; the parent's @snap before any change.
    with RbdReader(rbd_images.uri("librbd-raw", "snap")) as r:
        assert r.read(40 * MiB, 16) == rbd_images.files["librbd-raw"].read_bytes()[
            40 * MiB : 40 * MiB + 16]
    with RbdReader(rbd_images.uri("vol-from-raw", "s2")) as r:
        assert r.read(40 * MiB, 16) == b"\xab" * 16


def test_blank_terabyte_has_no_extents_and_reads_nothing(rbd_images: RbdImages) -> None:
    started = time.monotonic()
    with RbdReader(rbd_images.uri("blank-1t")) as r:
        assert r.size == 1 << 40
        assert list(r.data_extents()) == []
        assert r.allocated == 0
        assert r.is_zero(0, r.size)
        assert r.read(r.size - 512, 4096) == b"\0" * 512  # short at the end, never an error
    # Not a timing assertion on speed, a sanity bound: reading 1 TiB would take hours.
    assert time.monotonic() - started < 60


def test_namespace(rbd_images: RbdImages) -> None:
    spec = f"rbd:{rbd_images.pool}/{NS}/ns-img:conf={rbd_images.conf}"
    t = parse_target(spec)
    assert (t.pool, t.namespace, t.image) == (rbd_images.pool, NS, "ns-img")
    with RbdReader(t) as r:
        assert r.size == 8 * MiB
        assert r.describe()["namespace"] == NS
    with pytest.raises(UserError) as exc:
        RbdReader(f"rbd:{rbd_images.pool}/ns-img:conf={rbd_images.conf}")
    assert exc.value.code == "rbd-image-not-found"


def test_opened_read_only(rbd_images: RbdImages) -> None:
    import rbd

    with RbdReader(rbd_images.uri("qemu-raw")) as r, pytest.raises(rbd.ReadOnlyImage):
        r.image.write(b"x", 0)


@pytest.mark.parametrize(("suffix", "code", "cls"), [
    ("/no-such-image", "rbd-image-not-found", UserError),
    ("/librbd-raw@no-such-snap", "rbd-snapshot-not-found", UserError),
])
def test_missing(rbd_images: RbdImages, suffix: str, code: str, cls: type) -> None:
    with pytest.raises(cls) as exc:
        RbdReader(f"rbd:{rbd_images.pool}{suffix}:conf={rbd_images.conf}")
    assert exc.value.code == code
    assert exc.value.hint


def test_missing_pool_and_conf(rbd_images: RbdImages, tmp_path) -> None:
    with pytest.raises(UserError) as exc:
        RbdReader(f"rbd:no-such-pool/x:conf={rbd_images.conf}")
    assert exc.value.code == "rbd-pool-not-found"
    with pytest.raises(UserError) as exc:
        RbdReader(f"rbd:{rbd_images.pool}/x:conf={tmp_path}/missing.conf")
    assert exc.value.code == "ceph-conf-missing"


def test_unknown_user_is_a_clear_error(rbd_images: RbdImages, monkeypatch) -> None:
    # auth is off in the test cluster, so any id connects; a keyring that does not exist
    # must not matter either. What matters: the option reaches librados without error.
    monkeypatch.setenv("DISKKIT_RBD_TIMEOUT", "5")
    with RbdReader(f"{rbd_images.uri('qemu-raw')}:id=someone") as r:
        assert r.size == 32 * MiB


def test_unreachable_monitor(tmp_path, monkeypatch) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "ceph.conf"
    conf.write_text(f"[global]\nmon host = 127.0.0.1:{port}\nauth client required = none\n")
    monkeypatch.setenv("DISKKIT_RBD_TIMEOUT", "3")
    started = time.monotonic()
    with pytest.raises(HostError) as exc:
        RbdReader(f"rbd:rbd/x:conf={conf}")
    assert exc.value.code == "ceph-unreachable"
    assert time.monotonic() - started < 3 * 4
