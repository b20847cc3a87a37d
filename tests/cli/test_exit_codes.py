"""Exit codes users and scripts rely on (docs/cli.md "Exit codes"): usage, bad option values,
a closed stdout (141, silent), SIGTERM (143 after teardown), an unwritable run directory."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

import pytest

from tests.cli.conftest import DISKKIT, CliImages, dk, needs_root


def one_line(r: subprocess.CompletedProcess[str], code: str, rc: int) -> None:
    assert r.returncode == rc, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert lines and lines[0].startswith(f"diskkit: error[{code}]: "), r.stderr
    assert all(ln.startswith("  hint: ") for ln in lines[1:]), r.stderr
    assert len(lines) <= 2 and "Traceback" not in r.stderr and r.stdout == ""


def test_bare_diskkit_prints_usage() -> None:
    r = dk()
    assert r.returncode == 2 and r.stderr == ""
    assert r.stdout.startswith("usage: diskkit") and "info" in r.stdout and "mount" in r.stdout


def test_help_and_version() -> None:
    for args in (["-h"], ["--help"], ["info", "-h"], ["run", "--help"]):
        r = dk(*args)
        assert r.returncode == 0 and r.stdout.startswith("usage: diskkit"), args
    r = dk("--version")
    assert r.returncode == 0 and r.stdout.startswith("diskkit ")


@pytest.mark.parametrize("args", [
    ("run", "x.img", "--timeout", "-5", "--", "true"),
    ("run", "x.img", "--timeout", "nan", "--", "true"),
    ("boot-test", "x.img", "--timeout", "0"),
    ("diagnose", "x.img", "--timeout", "soon"),
    ("convert", "a", "b", "-O", "raw", "--jobs", "0"),
    ("scan", "rbd:p", "--jobs", "65"),
    ("mount", "x.img", "/mnt", "-p", "0"),
    ("cat", "x.img", "/etc/fstab", "--partition", "one"),
    ("info", "x.img", "--bogus"),
    ("info",),
    ("frobnicate",),
])
def test_bad_usage_is_one_line_exit_2(args: tuple[str, ...]) -> None:
    one_line(dk(*args), "bad-usage", 2)


def test_convert_into_rbd_without_its_conf_is_one_line(cli_images: CliImages,
                                                     tmp_path: pathlib.Path) -> None:
    """The target's cluster is asked while the source is inspected: a ceph.conf that is not
    there is the target's error in one line (it was an internal error)."""
    spec = f"rbd:pool/img:conf={tmp_path / 'missing.conf'}"
    one_line(dk("convert", str(cli_images.fresh_qcow2), spec, "-O", "raw"),
             "ceph-conf-missing", 2)


@pytest.mark.parametrize("command", ["info", "diagnose", "check"])
def test_unknown_format_is_one_line_exit_2(cli_images: CliImages, command: str) -> None:
    flag = "--disk-format" if command == "check" else "-f"
    one_line(dk(command, cli_images.fresh_qcow2, flag, "nope"), "bad-format", 2)


@pytest.mark.parametrize("args", [("info", "--json"), ("info",), ("check",), ("doctor",)])
def test_closed_stdout_is_141_and_silent(cli_images: CliImages, args: tuple[str, ...]) -> None:
    """stdout's reader is gone before diskkit writes (`| head -0`): exit 141, nothing on
    stderr (no traceback, no "Exception ignored")."""
    target = [] if args[0] == "doctor" else [str(cli_images.os_raw)]
    extra = ["--no-kvm-probe"] if args[0] == "doctor" else []
    r_fd, w_fd = os.pipe()
    os.close(r_fd)
    try:
        proc = subprocess.run([DISKKIT, *args, *target, *extra], stdout=w_fd,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(w_fd)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


@needs_root
def test_sigterm_is_143_after_teardown(cli_images: CliImages, tmp_path: pathlib.Path,
                                       run_env: dict[str, str]) -> None:
    marker = tmp_path / "started"
    proc = subprocess.Popen([DISKKIT, "run", str(cli_images.os_raw), "-p", "2", "--",
                             "sh", "-c", f"touch {marker}; sleep 60"], env=run_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err.strip() == "diskkit: terminated"
    run_dir = pathlib.Path(run_env["DISKKIT_RUN_DIR"])
    assert not any(p.is_dir() for p in run_dir.iterdir())  # torn down, nothing left


@needs_root
@pytest.mark.parametrize("where", ["/sys/kernel", "/proc/diskkit-nope", "file"])
def test_unwritable_run_dir(cli_images: CliImages, tmp_path: pathlib.Path,
                            where: str) -> None:
    if where == "file":
        (tmp_path / "file").write_text("not a directory\n")
        where = str(tmp_path / "file")
    env = {**os.environ, "DISKKIT_RUN_DIR": where}
    for args in (("run", cli_images.os_raw, "-p", "2", "--", "true"),
                 ("mount", cli_images.os_raw, tmp_path, "-p", "2")):
        one_line(dk(*args, env=env), "run-dir", 3)
