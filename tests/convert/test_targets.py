"""Targets that already exist and are written in place: an NBD export (qemu-nbd) and a block
device (a loop device). Both need --force, and must be large enough."""

from __future__ import annotations

import pathlib
import subprocess

from diskkit.runner import run, spawn, wait_for
from tests.convert.conftest import BASE_SIZE, diskkit
from tests.helpers import qemu_img


def test_into_nbd_export(images: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    disk = tmp_path / "export.raw"
    disk.write_bytes(b"")
    run(["truncate", "-s", str(BASE_SIZE), disk], timeout=10)
    sock = tmp_path / "nbd.sock"
    uri = f"nbd+unix:///?socket={sock}"
    with spawn(["qemu-nbd", "-f", "raw", "-t", "-k", sock, "--cache=none", disk],
               stderr=subprocess.DEVNULL):
        wait_for(sock.exists, timeout=20, what="qemu-nbd's socket")
        r = diskkit("convert", images["vdi"], uri, "-O", "raw")
        assert r.returncode == 2 and "target-exists" in r.stderr, r.stderr
        r = diskkit("convert", images["vdi"], uri, "-O", "raw", "--force")
        assert r.returncode == 0, r.stderr
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "raw",
                                              images["raw"], disk)


def test_into_block_device(images: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    backing = tmp_path / "dev.img"
    run(["truncate", "-s", str(BASE_SIZE), backing], timeout=10)
    dev = run(["losetup", "-f", "--show", backing], timeout=30).stdout.strip()
    try:
        r = diskkit("convert", images["vhdx"], dev, "-O", "raw")
        assert r.returncode == 2 and "target-exists" in r.stderr, r.stderr
        r = diskkit("convert", images["vhdx"], dev, "-O", "raw", "--force")
        assert r.returncode == 0, r.stderr
        assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "raw",
                                                  images["raw"], dev)
    finally:
        run(["losetup", "-d", dev], timeout=30, check=False)


def test_device_too_small(images: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    backing = tmp_path / "small.img"
    run(["truncate", "-s", str(BASE_SIZE // 2), backing], timeout=10)
    dev = run(["losetup", "-f", "--show", backing], timeout=30).stdout.strip()
    try:
        before = backing.read_bytes()
        r = diskkit("convert", images["vdi"], dev, "-O", "raw", "--force")
        assert r.returncode == 2 and "no-room" in r.stderr, r.stderr
        assert backing.read_bytes() == before
    finally:
        run(["losetup", "-d", dev], timeout=30, check=False)


def test_from_nbd_export(images: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    """An NBD source: qemu-nbd serves the VHDX's guest disk (raw on the wire)."""
    sock = tmp_path / "src.sock"
    uri = f"nbd+unix:///?socket={sock}"
    with spawn(["qemu-nbd", "-r", "-f", "vhdx", "-t", "-k", sock, images["vhdx"]],
               stderr=subprocess.DEVNULL):
        wait_for(sock.exists, timeout=20, what="qemu-nbd's socket")
        r = diskkit("convert", uri, tmp_path / "o.qcow2", "-O", "qcow2", "--json")
        assert r.returncode == 0, r.stderr
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "qcow2",
                                              images["raw"], tmp_path / "o.qcow2")
