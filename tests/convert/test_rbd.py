"""Conversions into and out of Ceph RBD on the real single-node test cluster
(tests/fixtures/ceph.py): straight in (no temporary raw file), verified, interruption-safe."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from diskkit.runner import run, spawn, wait_for
from tests.convert.conftest import BASE_SIZE, diskkit, qemu_img_pids
from tests.helpers import qemu_img

if not (pathlib.Path(__file__).parent.parent / "fixtures" / "ceph.py").exists():
    pytest.skip("the Ceph test cluster fixture is not there", allow_module_level=True)

pytestmark = pytest.mark.slow


def _rbd(cluster, *args: str) -> str:
    return run(["rbd", "-c", str(cluster.conf), *args], timeout=120, env=cluster.env).stdout


def _images(cluster) -> list[str]:
    return json.loads(_rbd(cluster, "ls", "-p", cluster.pool, "--format", "json"))


def _spec(cluster, name: str) -> str:
    return f"rbd:{cluster.pool}/{name}:conf={cluster.conf}"


def test_into_and_out_of_rbd(ceph_cluster, images: dict[str, pathlib.Path],
                             tmp_path: pathlib.Path) -> None:
    c = ceph_cluster
    spec = _spec(c, "conv-in")
    r = diskkit("convert", images["qcow2"], spec, "-O", "raw", "--json", env=c.env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verified"] is True
    # A qcow2 source diskkit reads whole: created and written by diskkit through librbd.
    assert doc["copied_by"] == "diskkit" and doc["command"] == []
    # This cluster runs no ceph-mgr, so it keeps no pool statistics: room is unknown.
    assert doc["available_bytes"] is None
    info = json.loads(_rbd(c, "info", f"{c.pool}/conv-in", "--format", "json"))
    assert info["size"] == BASE_SIZE
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "raw",
                                              images["raw"], spec)
    assert [n for n in _images(c) if "partial" in n] == []

    # Existing image: refused without --force, replaced with it.
    r = diskkit("convert", images["vdi"], spec, "-O", "raw", env=c.env)
    assert r.returncode == 2 and "target-exists" in r.stderr
    r = diskkit("convert", images["vdi"], spec, "-O", "raw", "--force", "--json", env=c.env)
    assert r.returncode == 0, r.stderr
    assert "conv-in" in _images(c)
    # A VDI: diskkit creates the image with librbd and qemu-img writes into it.
    doc = json.loads(r.stdout)
    assert doc["copied_by"] == "qemu-img" and doc["verified"] is True
    assert "-n" in doc["command"] and "--target-is-zero" in doc["command"]
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "raw",
                                              images["raw"], spec)

    # Out of RBD: detected (raw) through librbd, converted to a local qcow2.
    out = tmp_path / "back.qcow2"
    r = diskkit("convert", spec, out, "-O", "qcow2", env=c.env)
    assert r.returncode == 0, r.stderr
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "qcow2",
                                              images["raw"], out)
    # RBD targets are raw.
    r = diskkit("convert", images["raw"], _spec(c, "conv-q"), "-O", "qcow2", env=c.env)
    assert r.returncode == 2 and "bad-option" in r.stderr
    _rbd(c, "rm", "--no-progress", f"{c.pool}/conv-in")


def test_created_by_qemu_img(ceph_cluster, images: dict[str, pathlib.Path]) -> None:
    from diskkit.convert import Request, convert

    c = ceph_cluster
    spec = _spec(c, "conv-pre")
    old = {k: os.environ.get(k) for k in c.env}
    os.environ.update(c.env)
    try:
        res = convert(Request(str(images["vmdk-stream"]), spec, "raw", rbd_precreate=False),
                      quiet=True)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert res.verified and "-n" not in res.command
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "raw",
                                              images["raw"], spec)
    _rbd(c, "rm", "--no-progress", f"{c.pool}/conv-pre")


@pytest.mark.parametrize("fmt", ["raw", "vdi"])
def test_interrupted_into_rbd(ceph_cluster, tmp_path: pathlib.Path, fmt: str) -> None:
    """SIGTERM while copying: diskkit's own copy (raw) stops once its writes in flight are
    done, qemu-img's (VDI) is killed; either way the temporary image is removed."""
    c = ceph_cluster
    src = tmp_path / "data.raw"
    with open(src, "wb") as f:
        for _ in range(192):
            f.write(os.urandom(1 << 20))
    if fmt == "vdi":
        qemu_img("convert", "-f", "raw", "-O", "vdi", src, tmp_path / "data.vdi")
        src = tmp_path / "data.vdi"
    env = {**c.env, "DISKKIT_CONVERT_RATE_LIMIT": str(16 << 20)}
    argv = [sys.executable, "-m", "diskkit", "convert", str(src), _spec(c, "conv-int"),
            "-O", "raw"]
    with spawn(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_for(lambda: any("partial" in n for n in _images(c)), timeout=60, interval=0.3,
                 what="the temporary RBD image")
        # Data is being written: the image has objects beyond its header.
        partial = next(n for n in _images(c) if "partial" in n)
        wait_for(lambda: _rbd(c, "diff", "--format", "json", f"{c.pool}/{partial}") != "[]",
                 timeout=60, interval=0.3, what="data in the temporary image")
        assert bool(qemu_img_pids("conv-int")) == (fmt == "vdi")
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=120)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert rc == 128 + signal.SIGTERM, stderr  # exitcodes.TERMINATED
    assert "removed the partial output" in stderr
    assert [n for n in _images(c) if n.startswith("conv-int")] == []
    assert qemu_img_pids("conv-int") == []


def test_pool_without_room_refused(ceph_cluster, images: dict[str, pathlib.Path]) -> None:
    """A pool whose quota is below what the conversion needs: refused before writing."""
    c = ceph_cluster
    c.ceph("osd", "pool", "create", "convq", "8", "8")
    c.ceph("osd", "pool", "application", "enable", "convq", "rbd")
    try:
        c.ceph("osd", "pool", "set-quota", "convq", "max_bytes", str(1 << 20))
        spec = f"rbd:convq/big:conf={c.conf}"
        r = diskkit("convert", images["qcow2"], spec, "-O", "raw", env=c.env)
        assert r.returncode == 2 and "no-room" in r.stderr, r.stderr
        assert json.loads(_rbd(c, "ls", "-p", "convq", "--format", "json")) == []
        c.ceph("osd", "pool", "set-quota", "convq", "max_bytes", str(512 << 20))
        r = diskkit("convert", images["qcow2"], spec, "-O", "raw", "--json", env=c.env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["available_bytes"] == 512 << 20
    finally:
        c.ceph("osd", "pool", "rm", "convq", "convq", "--yes-i-really-really-mean-it")


def test_from_rbd_snapshot(ceph_cluster, images: dict[str, pathlib.Path],
                           tmp_path: pathlib.Path) -> None:
    """rbd:POOL/IMAGE@SNAP as a source: the snapshot's content, not the image's."""
    c = ceph_cluster
    r = diskkit("convert", images["vdi"], _spec(c, "conv-snap"), "-O", "raw", env=c.env)
    assert r.returncode == 0, r.stderr
    _rbd(c, "snap", "create", f"{c.pool}/conv-snap@s1")
    # Change the image after the snapshot: the snapshot must still give the base content.
    run(["qemu-io", "-f", "raw", "-c", "write -P 0x77 0 1M", _spec(c, "conv-snap")],
        timeout=60)
    snap = f"rbd:{c.pool}/conv-snap@s1:conf={c.conf}"
    r = diskkit("convert", snap, tmp_path / "s.vdi", "-O", "vdi", env=c.env)
    assert r.returncode == 0, r.stderr
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "vdi",
                                              images["raw"], tmp_path / "s.vdi")
    _rbd(c, "snap", "purge", "--no-progress", f"{c.pool}/conv-snap")
    _rbd(c, "rm", "--no-progress", f"{c.pool}/conv-snap")


def test_in_process_verification_against_rbd(ceph_cluster, images: dict[str, pathlib.Path],
                                             tmp_path: pathlib.Path) -> None:
    """The RBD output's verification (the source's digests, then the image's data pieces read
    and hashed with several requests in flight) finds what qemu-img compare finds: a flipped
    byte in the data, data where the source reads zeros, a different size; and agrees on an
    identical copy."""
    import rados
    import rbd

    from diskkit.convert import verify
    from diskkit.readers.raw import FileReader
    from diskkit.readers.rbd import RbdReader

    c = ceph_cluster
    name = "verify-me"
    qemu_img("convert", "-f", "qcow2", "-O", "raw", images["qcow2"], _spec(c, name))

    def check() -> tuple[bool, str]:
        open_src = verify.opener(str(images["qcow2"]), "qcow2")
        assert open_src is not None
        digest = verify.SourceDigest(open_src)
        digest.start()
        return verify.compare_digests(open_src, digest, lambda: RbdReader(_spec(c, name)),
                                      workers=verify.IN_FLIGHT)

    def qemu_says() -> bool:
        r = run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(images["qcow2"]),
                 _spec(c, name)], timeout=120, check=False, env=c.env)
        return r.returncode == 0 and "size mismatch" not in r.stdout.lower()

    assert check() == (True, "Images are identical.") and qemu_says()
    with FileReader(str(images["raw"])) as raw:
        data_at = next(e.offset for e in raw.data_extents()) + 100
        hole_at = next(e.offset for e in raw.extents() if not e.data) + 4096
    cluster = rados.Rados(conffile=str(c.conf))
    cluster.connect(timeout=30)
    try:
        with cluster.open_ioctx(c.pool) as io, rbd.Image(io, name) as img:
            old = img.read(data_at, 1)
            img.write(bytes([old[0] ^ 0xFF]), data_at)
            same, message = check()
            assert not same and f"offset {data_at}" in message and not qemu_says()
            img.write(old, data_at)
            img.write(b"\x01", hole_at)  # data where the source has a hole
            same, message = check()
            assert not same and f"offset {hole_at}" in message and not qemu_says()
            img.write(b"\x00", hole_at)
            assert check()[0] and qemu_says()
            img.resize(BASE_SIZE + (1 << 20))  # a longer disk whose tail reads as zeros
            same, message = check()
            assert not same and "sizes differ" in message
    finally:
        cluster.shutdown()
    _rbd(c, "rm", "--no-progress", f"{c.pool}/{name}")
