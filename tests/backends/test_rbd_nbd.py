"""mount/umount/run/cat/ls on Ceph RBD images (the real session cluster) and NBD URIs.

The images hold the partitioned disk of ``disk_images`` (conftest): imported with ``rbd
import`` as it is (raw), as qcow2 bytes (must be refused: "not raw"), and served by
``qemu-nbd`` on a Unix socket. Each goes through a qemu-storage-daemon FUSE export + loop.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from diskkit.runner import Result, run, spawn
from tests.backends.conftest import HELLO, HOSTNAME, Images, diskkit_cmd, sha256
from tests.fixtures.ceph import CephCluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")

POOL = "dkmount"


@dataclass(frozen=True)
class Rbd:
    """The pool's targets: ``uri(name, snap)`` gives ``rbd:POOL/NAME[@SNAP]:conf=PATH``."""

    cluster: CephCluster

    def uri(self, name: str, snap: str | None = None) -> str:
        at = f"@{snap}" if snap else ""
        return f"rbd:{POOL}/{name}{at}:conf={self.cluster.conf}"


@pytest.fixture(scope="module")
def rbd_disks(ceph_cluster: CephCluster, disk_images: Images) -> Iterator[Rbd]:
    """``disk`` (raw bytes of disk.raw), ``snapped`` (same, snapshot ``s1``, then its partition
    table wiped), ``qcow2`` (the bytes of disk.qcow2)."""
    import rados
    import rbd

    c = ceph_cluster
    c.ceph("osd", "pool", "create", POOL, "8", "8")
    try:
        c.ceph("osd", "pool", "application", "enable", POOL, "rbd")
        c.rbd("import", str(disk_images.raw), f"{POOL}/disk")
        c.rbd("import", str(disk_images.raw), f"{POOL}/snapped")
        c.rbd("snap", "create", f"{POOL}/snapped@s1")
        # Overwrite the head's first MiB (the MBR) with librbd: only the snapshot still has
        # the partition table.
        with rados.Rados(conffile=c.conf) as cluster, cluster.open_ioctx(POOL) as io, \
                rbd.Image(io, "snapped") as img:
            img.write(b"\0" * (1 << 20), 0)
        c.rbd("import", str(disk_images.qcow2), f"{POOL}/qcow2")
        yield Rbd(c)
    finally:
        c.ceph("osd", "pool", "delete", POOL, POOL, "--yes-i-really-really-mean-it")


def dk(*args: str | pathlib.Path, timeout: float = 120) -> Result:
    return run([diskkit_cmd(), *map(str, args)], timeout=timeout, check=False)


def qsd_processes() -> list[str]:
    """Command lines of running qemu-storage-daemon processes that name our pool."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "qemu-storage-daemon" in cmd and f"pool={POOL}" in cmd:
                found.append(cmd)
    return found


def test_snapshot_head_really_differs(rbd_disks: Rbd) -> None:
    """The set-up is what the snapshot test needs: sfdisk sees no table on the head image."""
    res = dk("cat", rbd_disks.uri("snapped"), "/etc/hostname")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("diskkit: error[no-filesystem]"), res.stderr


def test_cat_ls_run(rbd_disks: Rbd, disk_images: Images) -> None:
    uri = rbd_disks.uri("disk")
    res = dk("cat", uri, "/etc/hostname")
    assert res.returncode == 0, res.stderr
    assert res.stdout == HOSTNAME
    assert dk("cat", uri, "/hello.txt", "-p", "2").stdout == HELLO
    res = dk("ls", uri, "/etc", "--json")
    entries = {e["name"]: e for e in json.loads(res.stdout)["entries"]}
    assert entries["hostname"]["type"] == "file"
    assert entries["hostname"]["size"] == len(HOSTNAME)
    res = dk("run", uri, "--os", "--", "sh", "-c", 'cat "$DISKKIT_ROOT/srv/hello.txt"; exit 5')
    assert res.returncode == 5, res.stderr
    assert res.stdout == HELLO
    assert not qsd_processes()
    # The image's bytes are untouched: export them and compare with the file they came from.
    out = disk_images.dir / "exported.raw"
    rbd_disks.cluster.rbd("export", f"{POOL}/disk", str(out))
    try:
        assert sha256(out) == sha256(disk_images.raw)
    finally:
        out.unlink()


def test_snapshot_target(rbd_disks: Rbd) -> None:
    res = dk("cat", rbd_disks.uri("snapped", "s1"), "/etc/hostname")
    assert res.returncode == 0, res.stderr
    assert res.stdout == HOSTNAME


def test_mount_umount(rbd_disks: Rbd, disk_images: Images, tmp_path: pathlib.Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = dk("mount", rbd_disks.uri("disk"), mnt, "-p", "1", "--json")
    try:
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["backend"] == "loop" and out["mounts"][0]["location"] == "partition 1"
        assert (mnt / "etc" / "hostname").read_text() == HOSTNAME
        state = json.loads((tmp_path / "run" / out["run"] / "state.json").read_text())
        assert [s["kind"] for s in state["steps"]] == ["qsd", "loop", "mount"]
        assert state["steps"][0]["data"]["image"] == rbd_disks.uri("disk")
        # The FUSE export's bytes are the image's: those of the file `rbd import` read.
        assert sha256(pathlib.Path(state["steps"][0]["data"]["export"])) == \
            sha256(disk_images.raw)
        assert len(qsd_processes()) == 1
    finally:
        res = dk("umount", mnt)
    assert res.returncode == 0, res.stderr
    assert not os.listdir(mnt)
    assert not qsd_processes()  # the autouse fixture checks loop devices, mounts, run dirs


def test_qcow2_bytes_are_refused(rbd_disks: Rbd, tmp_path: pathlib.Path) -> None:
    for args in (("cat", rbd_disks.uri("qcow2"), "/etc/hostname"),
                 ("mount", rbd_disks.uri("qcow2"), tmp_path, "-p", "1")):
        res = dk(*args)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert lines[0].startswith("diskkit: error[not-raw]: "), res.stderr
        assert "qcow2 bytes" in lines[0] and "Traceback" not in res.stderr
        assert len(lines) <= 2
    assert not qsd_processes()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_nbd_uri(disk_images: Images, tmp_path: pathlib.Path, transport: str) -> None:
    import socket

    sock, port = tmp_path / "nbd.sock", _free_port()
    where = ["-k", str(sock)] if transport == "unix" else ["-b", "127.0.0.1", "-p", str(port)]
    uri = f"nbd+unix:///vm?socket={sock}" if transport == "unix" else \
        f"nbd://127.0.0.1:{port}/vm"
    before = sha256(disk_images.raw)
    with spawn(["qemu-nbd", "-t", "--read-only", *where, "-f", "raw", "-x", "vm",
                str(disk_images.raw)]) as server:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "qemu-nbd did not start"
            family = socket.AF_UNIX if transport == "unix" else socket.AF_INET
            with socket.socket(family) as probe:
                try:
                    probe.connect(str(sock) if transport == "unix" else ("127.0.0.1", port))
                    break
                except OSError:
                    time.sleep(0.05)
        res = dk("cat", uri, "/etc/hostname")
        assert res.returncode == 0, res.stderr
        assert res.stdout == HOSTNAME
        assert "hello.txt" in dk("ls", uri, "/", "-p", "2").stdout.split()
    assert sha256(disk_images.raw) == before


def test_other_backends_are_refused(tmp_path: pathlib.Path) -> None:
    """guestfs/nbd backends take local files only: one line, before any connection."""
    res = dk("cat", f"rbd:nopool/img:conf={tmp_path}/none.conf", "/x", "-p", "1",
             "--backend", "guestfs")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("diskkit: error[unsupported-target]: "), res.stderr


def test_cleanup_after_sigkill(rbd_disks: Rbd, tmp_path: pathlib.Path,
                               run_dir: pathlib.Path) -> None:
    """`diskkit mount rbd:...` killed with SIGKILL once mounted: `cleanup` undoes it all."""
    import signal

    from tests.backends.test_signals import _pause_and_signal

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rc = _pause_and_signal([diskkit_cmd(), "mount", rbd_disks.uri("disk"), str(mnt), "-p", "1"],
                           "after-mount", signal.SIGKILL, run_dir)
    assert rc == -signal.SIGKILL
    assert len(qsd_processes()) == 1
    env = {"DISKKIT_RUN_DIR": str(run_dir)}
    out = json.loads(run([diskkit_cmd(), "cleanup", "--json"], env=env, timeout=120).stdout)
    (cleaned,) = out["cleaned"]
    assert cleaned["undone"] == ["mount", "loop", "qsd"]
    assert not qsd_processes() and not os.listdir(mnt)
