"""Helper processes die with diskkit: ``info``/``diagnose`` on VDI and VHD images (read
through a private qemu-nbd) killed by SIGTERM or SIGKILL while qemu-nbd runs leave no
qemu-nbd (checked in /proc), and ``diskkit cleanup`` removes the server's directory. VMDK
and VHDX are read in process: no qemu-nbd is started for them at all (strace).
The command of ``run`` is ended with diskkit too."""

from __future__ import annotations

import glob
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.helpers import create

#: Formats read through qemu-nbd (diskkit name -> qemu driver).
FORMATS = {"vdi": "vdi", "vhd": "vpc"}


def _procs_with(needle: str, program: str) -> list[int]:
    """Pids whose command line names ``program`` and contains ``needle``."""
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{d}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"{d}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and program in cmd and needle in cmd:
            out.append(int(os.path.basename(d)))
    return out


def _argv0(name: str) -> list[int]:
    """Pids whose argv[0] is exactly ``name`` (the marker a test gave its child with bash's
    ``exec -a``), zombies excluded."""
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{d}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0", 1)[0].decode(errors="replace")
            with open(f"{d}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and argv0 == name:
            out.append(int(os.path.basename(d)))
    return out


def _nbd_dirs(tmp: str | None = None) -> set[str]:
    return set(glob.glob(os.path.join(tmp or tempfile.gettempdir(), "diskkit-nbd-*")))


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("command", ["info", "diagnose"])
def test_no_qemu_nbd_survives(tmp_path: pathlib.Path, fmt: str, sig: int, command: str) -> None:
    img = create(tmp_path / f"disk.{fmt}", FORMATS[fmt], "64M")
    # A private TMPDIR: other diskkit processes on this host make diskkit-nbd-* dirs too.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "DISKKIT_RUN_DIR": str(tmp_path / "run"), "TMPDIR": str(tmp)}
    for _attempt in range(8):  # a quick run may finish before the poll sees qemu-nbd
        proc = subprocess.Popen([sys.executable, "-m", "diskkit", command, str(img), "--json"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            seen = _wait(lambda p=proc: bool(_procs_with(str(img), "qemu-nbd")) or
                         p.poll() is not None, 60)
            if proc.poll() is None and seen:
                proc.send_signal(sig)
                proc.wait(timeout=30)
                break
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    else:
        pytest.fail("diskkit never ran long enough to be killed while qemu-nbd ran")
    assert _wait(lambda: not _procs_with(str(img), "qemu-nbd"), 10), \
        f"qemu-nbd outlived diskkit: {_procs_with(str(img), 'qemu-nbd')}"
    res = subprocess.run([sys.executable, "-m", "diskkit", "cleanup"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert _nbd_dirs(str(tmp)) == set()
    assert not (tmp_path / "run" / "servers").exists()


@pytest.mark.parametrize("fmt", ["vmdk", "vhdx"])
def test_vmdk_and_vhdx_start_no_helper(tmp_path: pathlib.Path, fmt: str) -> None:
    """diskkit reads these itself: ``info`` and ``diagnose`` execute no qemu-nbd (nor any
    other qemu program)."""
    import shutil

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    img = create(tmp_path / f"disk.{fmt}", fmt, "64M")
    for command in ("info", "diagnose"):
        trace = tmp_path / f"{command}.trace"
        res = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace),
                              sys.executable, "-m", "diskkit", command, str(img), "--json"],
                             capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode in (0, 1), res.stderr
        execs = [ln for ln in trace.read_text().splitlines() if "execve(" in ln]
        assert execs and not [ln for ln in execs if "qemu" in ln.split("execve(", 1)[1]
                              .split(",", 1)[0]], execs


def test_cleanup_kills_a_server_whose_diskkit_died(tmp_path: pathlib.Path) -> None:
    """A server that survived (PR_SET_PDEATHSIG cannot act when the spawning thread is not the
    main one, or on a foreign kernel): ``diskkit cleanup`` ends it by its record."""
    run_dir = tmp_path / "run"
    keep = tempfile.mkdtemp(prefix="diskkit-nbd-")
    code = (
        "import os, sys, threading\n"
        "from diskkit.runner import spawn\n"
        "kept = []\n"
        "def work():\n"
        "    cm = spawn(['sleep', '300'], dirs=[sys.argv[1]])\n"
        "    kept.append(cm)\n"
        "    p = cm.__enter__()\n"
        "    print(p.pid, flush=True)\n"
        "t = threading.Thread(target=work); t.start(); t.join()\n"
        "os._exit(0)\n"  # dies without undoing anything, like a crash
    )
    env = {**os.environ, "DISKKIT_RUN_DIR": str(run_dir)}
    out = subprocess.run([sys.executable, "-c", code, keep], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    pid = int(out.split()[0])
    try:
        assert os.path.exists(f"/proc/{pid}")  # it did survive its diskkit
        res = subprocess.run([sys.executable, "-m", "diskkit", "cleanup", "--json"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, res.stderr
        assert _wait(lambda: not _procs_with("300", "sleep") or
                     not os.path.exists(f"/proc/{pid}"), 10)
        assert not os.path.isdir(keep)
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
        if os.path.isdir(keep):
            os.rmdir(keep)


def test_pdeathsig_ends_the_child_of_a_killed_diskkit(tmp_path: pathlib.Path) -> None:
    """The command of ``run`` (and any spawned helper) gets SIGKILL when diskkit is killed."""
    marker = f"dk-pdeath-{os.getpid()}-{time.monotonic_ns()}"
    code = (
        "import sys, time\n"
        "from diskkit.runner import spawn\n"
        f"with spawn(['bash', '-c', 'exec -a {marker} sleep 300']) as p:\n"
        "    print(p.pid, flush=True)\n"
        "    time.sleep(300)\n"
    )
    env = {**os.environ, "DISKKIT_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        pid = int(proc.stdout.readline())  # type: ignore[union-attr]
        assert _wait(lambda: _argv0(marker) == [pid], 10)
        proc.kill()
        proc.wait(timeout=10)
        assert _wait(lambda: not _argv0(marker), 10), "the child outlived its diskkit"
    finally:
        proc.stdout.close()  # type: ignore[union-attr]
        for p in _argv0(marker):
            os.kill(p, signal.SIGKILL)


@pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root")
def test_run_command_dies_with_a_killed_diskkit(tmp_path: pathlib.Path) -> None:
    from diskkit.runner import run as run_cmd

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    img = tmp_path / "fs.ext4"
    run_cmd(["mkfs.ext4", "-q", "-F", "-d", str(src), str(img), "8M"], timeout=60)
    marker = f"dk-run-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "DISKKIT_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.Popen([sys.executable, "-m", "diskkit", "run", str(img), "--backend",
                             "loop", "--", "bash", "-c", f"exec -a {marker} sleep 300"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: bool(_argv0(marker)), 60), "command never started"
        proc.kill()
        proc.wait(timeout=30)
        assert _wait(lambda: not _argv0(marker), 10), "the command outlived diskkit"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in _argv0(marker):
            os.kill(p, signal.SIGKILL)
        res = subprocess.run([sys.executable, "-m", "diskkit", "cleanup"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()


def test_cleanup_removes_old_unrecorded_server_dirs_only(tmp_path: pathlib.Path) -> None:
    """A diskkit killed between making a server's directory and starting the server leaves
    it unrecorded: cleanup removes such a directory once it is old and nothing uses it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    old = tmp / "diskkit-nbd-old"
    young = tmp / "diskkit-nbd-young"
    busy = tmp / "diskkit-nbd-busy"
    other = tmp / "not-diskkit-old"
    for d in (old, young, busy, other):
        d.mkdir()
        (d / "qemu-nbd.log").write_text("")
    aged = time.time() - 3600
    for d in (old, busy, other):
        os.utime(d, (aged, aged))
    user = subprocess.Popen(["sh", "-c", "sleep 60", str(busy)])  # the path in its argv
    try:
        env = {**os.environ, "DISKKIT_RUN_DIR": str(tmp_path / "run"), "TMPDIR": str(tmp)}
        res = subprocess.run([sys.executable, "-m", "diskkit", "cleanup"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, res.stderr
    finally:
        user.kill()
        user.wait()
    assert not old.exists()
    assert young.exists() and busy.exists() and other.exists()
