"""``diskkit info`` and ``diskkit check`` run as the user runs them: a subprocess of
.venv/bin/diskkit, with a timeout; exit codes, JSON and one-line errors."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from tests.helpers import create, qemu_img_info

DISKKIT = str(pathlib.Path(sys.executable).parent / "diskkit")


def diskkit(*args: str | pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DISKKIT, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    create(d / "ok.vdi", "vdi", "10M")
    create(d / "flat.vmdk", "vmdk", "10M", "subformat=monolithicFlat")
    create(d / "fixed.vhd", "vpc", "20M", "subformat=fixed")
    (d / "disk.raw").write_bytes(b"\0" * (1 << 20))
    data = (d / "ok.vdi").read_bytes()
    (d / "truncated.vdi").write_bytes(data[:0x100])
    return d


def test_check_safe_and_matching_exits_0(images):
    r = diskkit("check", images / "ok.vdi", "--disk-format", "vdi", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["format"] == "vdi" and out["safe"] is True and out["findings"] == []
    assert out["formats_matched"] == ["vdi"]
    assert out["virtual_size"] == qemu_img_info(images / "ok.vdi", "vdi")["virtual-size"]
    assert out["actual_size"] == (images / "ok.vdi").stat().st_blocks * 512


def test_check_mismatch_exits_1(images):
    r = diskkit("check", images / "fixed.vhd", "--disk-format", "raw", "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["format"] == "vhd" and out["safe"] is False
    f = next(f for f in out["findings"] if f["code"] == "disk-format-mismatch")
    assert set(f) >= {"code", "severity", "message", "evidence", "fix"}
    assert f["severity"] == "error"


def test_check_vmdk_flat_exits_1_with_codes(images):
    r = diskkit("check", images / "flat.vmdk")
    assert r.returncode == 1
    assert "vmdk-extent-file" in r.stdout and "BLOCKED" in r.stdout
    assert r.stderr == ""


def test_info_json_keys(images):
    r = diskkit("info", images / "disk.raw", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"format", "formats_matched", "virtual_size", "actual_size", "safe",
            "findings"} <= set(out)
    assert out["format"] == "raw" and out["virtual_size"] == 1 << 20
    r = diskkit("info", images / "ok.vdi")
    assert r.returncode == 0 and "vdi" in r.stdout


@pytest.mark.parametrize("args,code", [
    (("check", "/nonexistent/disk.img"), "not-found"),
    (("info", "{tmp}"), "is-a-directory"),
    (("info", "{tmp}/truncated.vdi"), "truncated-header"),  # check: a finding (issue 14)
    (("info", "foo://bar/baz"), "bad-uri"),
    (("check", "{tmp}/ok.vdi", "--disk-format", "floppy"), "bad-format"),
])
def test_bad_input_is_one_line_and_exit_2(images, args, code):
    r = diskkit(*(a.format(tmp=images) for a in args))
    assert r.returncode == 2
    assert r.stdout == ""
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"diskkit: error[{code}]: ")
    assert "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if not ln.startswith("  hint:")]) == 1


def test_bad_usage_exit_2():
    r = diskkit("check")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_check_over_an_nbd_uri(images, tmp_path):
    """The container bytes come from an NBD server: detection works on them as on a file."""
    import os

    from diskkit.runner import spawn, wait_for

    sock = tmp_path / "nbd.sock"
    argv = ["qemu-nbd", "--read-only", "--persistent", "-f", "raw", "-k", str(sock),
            str(images / "flat.vmdk")]
    with spawn(argv):
        wait_for(lambda: os.path.exists(sock), timeout=20, what="qemu-nbd socket")
        r = diskkit("check", f"nbd+unix:///?socket={sock}", "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["format"] == "vmdk" and "vmdk-extent-file" in {f["code"] for f in
                                                              out["findings"]}
