"""guest/fs through the remote readers: an ext4 disk with a GPT partition, served by qemu-nbd
(nbd+unix://) and stored in a real Ceph cluster (rbd:), read file by file with no mount."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from diskkit.disk import open_disk
from diskkit.guest.fs import open_filesystem, service
from diskkit.layout import inspect_layout
from diskkit.layout.inspect import partition_reader
from diskkit.runner import run, spawn, wait_for, which

FILES = {"etc/hostname": b"remote-guest\n", "var/lib/blob": os.urandom(2 << 20)}


@pytest.fixture(scope="module")
def disk_image(tmp_path_factory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("remote")
    src = tmp / "src"
    for rel, data in FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    os.symlink("/etc/hostname", src / "etc" / "name-link")
    fs = tmp / "fs.img"
    run(["mkfs.ext4", "-q", "-F", "-L", "remote", "-d", str(src), str(fs), "24M"], timeout=60)
    disk = tmp / "disk.raw"
    run(["truncate", "-s", str(fs.stat().st_size + (2 << 20)), str(disk)], timeout=10)
    run(["sfdisk", "-q", str(disk)], timeout=30,
        input=f"label: gpt\nstart=2048, size={fs.stat().st_size // 512}, type=L\n")
    run(["dd", f"if={fs}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc", "status=none"],
        timeout=60)
    return disk


def _check(target: str) -> None:
    with open_disk(target) as disk:
        layout = inspect_layout(disk)
        part = layout.partition(1)
        assert part is not None
        with open_filesystem(partition_reader(disk, part)) as fs:
            assert fs.label == "remote"
            for rel, data in FILES.items():
                assert fs.read("/" + rel) == data
            assert fs.read("/etc/name-link") == FILES["etc/hostname"]
    # The service layer (what `diskkit cat/ls` call): in-process, no mount.
    assert service.read_file(target, "/etc/hostname", partition=1) == FILES["etc/hostname"]
    names = [e["name"] for e in service.list_dir(target, "/etc", partition=1)]
    assert names == ["hostname", "name-link"]


def test_through_nbd_unix_uri(disk_image, tmp_path) -> None:
    if not which("qemu-nbd"):
        pytest.skip("qemu-nbd needed")
    sock = tmp_path / "nbd.sock"
    with spawn(["qemu-nbd", "-t", "--read-only", "-f", "raw", "-k", str(sock),
                str(disk_image)], stderr=subprocess.DEVNULL):
        wait_for(sock.exists, timeout=20, what="qemu-nbd's socket")
        _check(f"nbd+unix:///?socket={sock}")


@pytest.mark.slow
def test_through_rbd(disk_image, ceph_cluster) -> None:
    c = ceph_cluster
    name = "guestfs-remote"
    run(["rbd", "-c", c.conf, "import", "--image-format", "2", str(disk_image),
         f"{c.pool}/{name}"], timeout=120, env=c.env)
    try:
        _check(f"rbd:{c.pool}/{name}:conf={c.conf}")
    finally:
        run(["rbd", "-c", c.conf, "rm", f"{c.pool}/{name}"], timeout=120, env=c.env,
            check=False)
