"""SIGINT and SIGTERM delivered to ``diskkit mount``/``run`` at each stage leave nothing behind,
and ``diskkit cleanup`` removes what a SIGKILLed run left.

Stages are reached with the documented test hook ``DISKKIT_TEST_PAUSE_AT=<stage>``: the
command prints ``diskkit: paused at <stage>`` and sleeps there until signalled. The autouse
fixture of conftest.py then checks that no loop device, mount, FUSE export, qemu process or
run directory is left.
"""

from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from diskkit.runner import run, spawn
from tests.backends.conftest import diskkit_cmd, leftovers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


def _pause_and_signal(argv: list[str], stage: str, sig: int, run_dir: pathlib.Path,
                      wait_for: pathlib.Path | None = None,
                      before_signal: Callable[[], object] | None = None) -> int:
    """Start ``argv`` with the pause hook at ``stage``, wait until it pauses (and until
    ``wait_for`` exists), send ``sig``; return its exit status."""
    env = {"DISKKIT_TEST_PAUSE_AT": stage, "DISKKIT_RUN_DIR": str(run_dir)}
    with spawn(argv, env=env, stderr=subprocess.PIPE) as proc:
        assert proc.stderr is not None
        buf = b""
        deadline = time.monotonic() + 300  # a guestfs launch under load is slow
        while b"paused at" not in buf:
            assert time.monotonic() < deadline, f"never paused at {stage}: {buf!r}"
            ready, _, _ = select.select([proc.stderr], [], [], 1)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 4096)
                assert chunk or proc.poll() is None, f"exited before {stage}: {buf!r}"
                buf += chunk
        assert f"paused at {stage}".encode() in buf
        while wait_for is not None and not wait_for.exists():
            assert time.monotonic() < deadline, f"{wait_for} never appeared"
            time.sleep(0.05)
        if before_signal is not None:
            before_signal()
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=120)
        rest = proc.stderr.read().decode(errors="replace")
        assert "Traceback" not in rest, rest
        return rc


RAW_STAGES = ["before-attach", "after-loop", "after-mount"]
QCOW2_STAGES = ["after-qsd", "after-loop", "after-mount"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize(("image", "stage"),
                         [("raw", s) for s in RAW_STAGES] + [("qcow2", s) for s in QCOW2_STAGES])
def test_mount_interrupted(disk_images, tmp_path, run_dir, image, stage, sig) -> None:
    img = getattr(disk_images, image)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rc = _pause_and_signal([diskkit_cmd(), "mount", str(img), str(mnt), "-p", "1",
                            "--backend", "loop"], stage, sig, run_dir)
    assert rc == 128 + sig
    assert not os.listdir(mnt)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize("stage", ["after-qsd", "after-mount", "in-command"])
def test_run_interrupted(disk_images, tmp_path, run_dir, stage, sig) -> None:
    marker = tmp_path / "command-ran"
    rc = _pause_and_signal([diskkit_cmd(), "run", str(disk_images.qcow2), "-p", "1",
                            "--backend", "loop", "--", "sh", "-c",
                            f"touch {marker}; sleep 60"], stage, sig, run_dir,
                           marker if stage == "in-command" else None)
    assert rc == 128 + sig


def test_cleanup_after_sigkill(disk_images, tmp_path, run_dir) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rc = _pause_and_signal([diskkit_cmd(), "mount", str(disk_images.qcow2), str(mnt), "-p", "1",
                            "--backend", "loop"], "after-mount", signal.SIGKILL, run_dir)
    assert rc == -signal.SIGKILL
    left = leftovers([tmp_path, disk_images.dir])
    assert any(x.startswith("mount ") for x in left)
    assert any(x.startswith("loop ") for x in left)
    env = {"DISKKIT_RUN_DIR": str(run_dir)}
    listed = json.loads(run([diskkit_cmd(), "cleanup", "--list", "--json"], env=env).stdout)
    (crashed,) = listed["runs"]
    assert not crashed["complete"] and not crashed["owner_alive"]
    out = json.loads(run([diskkit_cmd(), "cleanup", "--json"], env=env, timeout=120).stdout)
    (cleaned,) = out["cleaned"]
    assert cleaned["undone"] == ["mount", "loop", "qsd"]
    assert leftovers([tmp_path, disk_images.dir]) == []
