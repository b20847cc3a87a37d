"""Ctrl-C/SIGTERM while qemu-img runs leaves no output and no qemu-img; a target without room
is refused before a byte is written."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

from diskkit.runner import run, spawn, wait_for
from tests.convert.conftest import diskkit, qemu_img_pids


def _random_image(path: pathlib.Path, data_mib: int, size_mib: int) -> pathlib.Path:
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
        for _ in range(data_mib):
            f.write(os.urandom(1 << 20))
    return path


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A few hundred MiB of incompressible data."""
    return _random_image(tmp_path_factory.mktemp("big") / "big.raw", 256, 320)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_interrupted_conversion_leaves_nothing(sig: signal.Signals, fmt: str,
                                               big_image: pathlib.Path,
                                               tmp_path: pathlib.Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # The test hook slows qemu-img down (qemu-img convert -r) so it is surely mid-way.
    env = {"DISKKIT_CONVERT_RATE_LIMIT": str(16 << 20)}
    argv = [sys.executable, "-m", "diskkit", "convert", str(big_image),
            str(out_dir / f"out.{fmt}"), "-O", fmt]
    with spawn(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        def partial_growing() -> bool:
            parts = list(out_dir.glob(".*diskkit-partial*"))
            return bool(parts) and parts[0].stat().st_blocks * 512 > (8 << 20)

        wait_for(partial_growing, timeout=60, what="the partial output to grow")
        assert qemu_img_pids(str(out_dir)), "qemu-img should be running"
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=60)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert rc == 128 + sig, stderr  # 130 for Ctrl-C, 143 for SIGTERM (exitcodes)
    assert "removed the partial output" in stderr
    assert list(out_dir.iterdir()) == []
    assert qemu_img_pids(str(out_dir)) == []


@pytest.fixture()
def small_fs(tmp_path: pathlib.Path):
    """A 16 MiB tmpfs: a target directory without room."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt], timeout=30)
    try:
        yield mnt
    finally:
        run(["umount", mnt], timeout=30, check=False)


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vdi"])
def test_no_room_refused_before_writing(fmt: str, small_fs: pathlib.Path,
                                        tmp_path: pathlib.Path) -> None:
    src = _random_image(tmp_path / "data.raw", 40, 64)
    before = os.statvfs(small_fs)
    r = diskkit("convert", src, small_fs / f"out.{fmt}", "-O", fmt)
    assert r.returncode == 2, r.stderr
    assert "no-room" in r.stderr and "needs" in r.stderr
    assert list(small_fs.iterdir()) == []
    after = os.statvfs(small_fs)
    assert after.f_bfree == before.f_bfree
    # The same conversion fits once the data does: a small image goes through.
    small = _random_image(tmp_path / "small.raw", 2, 64)
    r = diskkit("convert", small, small_fs / f"ok.{fmt}", "-O", fmt)
    assert r.returncode == 0, r.stderr


def test_interrupted_batch_leaves_nothing(big_image: pathlib.Path,
                                          tmp_path: pathlib.Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{big_image},out/a.qcow2,qcow2\n{big_image},out/b.raw,raw\n")
    env = {"DISKKIT_CONVERT_RATE_LIMIT": str(16 << 20)}
    argv = [sys.executable, "-m", "diskkit", "convert", "--manifest", str(manifest),
            "--jobs", "2"]
    with spawn(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        def both_running() -> bool:
            parts = list(out_dir.glob(".*diskkit-partial*"))
            return len(parts) == 2 and all(p.stat().st_blocks > 8192 for p in parts)

        wait_for(both_running, timeout=60, what="two partial outputs")
        os.kill(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=60)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert rc == 130, stderr
    assert stderr.count("removed the partial output") == 2
    assert list(out_dir.iterdir()) == []
    assert qemu_img_pids(str(out_dir)) == []
    # Nothing was recorded as done: a re-run would convert both.
    state = pathlib.Path(f"{manifest}.diskkit-state.json")
    assert not state.exists() or "a.qcow2" not in state.read_text()
