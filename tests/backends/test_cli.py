"""The commands: mount/umount/run/cat/ls/cleanup/doctor, through the installed ``diskkit``."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from diskkit.runner import Result, run
from tests.backends.conftest import HELLO, HOSTNAME, diskkit_cmd, sha256

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


def dk(*args: str | pathlib.Path, timeout: float = 120) -> Result:
    return run([diskkit_cmd(), *map(str, args)], timeout=timeout, check=False)


def one_line_error(res: Result, code: str, exit_code: int) -> None:
    assert res.returncode == exit_code, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith(f"diskkit: error[{code}]: "), res.stderr
    assert len(lines) <= 2 and "Traceback" not in res.stderr


@pytest.mark.parametrize("image", ["raw", "qcow2"])
def test_cat_ls_run(disk_images, image) -> None:
    img = getattr(disk_images, image)
    before = sha256(img)
    res = dk("cat", img, "/etc/hostname")  # partitioned disk, no selection: the OS root
    assert res.returncode == 0, res.stderr
    assert res.stdout == HOSTNAME
    res = dk("cat", img, "/hello.txt", "-p", "2")
    assert res.stdout == HELLO
    res = dk("ls", img, "/etc", "--json")
    entries = {e["name"]: e for e in json.loads(res.stdout)["entries"]}
    assert entries["hostname"]["type"] == "file"
    assert entries["hostname"]["size"] == len(HOSTNAME)
    assert set(dk("ls", img, "/srv", "--os").stdout.split()) == {"hello.txt", "lost+found/"}
    res = dk("run", img, "--os", "--", "sh", "-c",
             'cat "$DISKKIT_ROOT/srv/hello.txt"; exit 7')
    assert res.returncode == 7, res.stderr
    assert res.stdout == HELLO
    assert sha256(img) == before


def test_mount_umount(disk_images, tmp_path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = dk("mount", disk_images.qcow2, mnt, "-p", "1", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["root"] == str(mnt) and out["mounts"][0]["location"] == "partition 1"
    assert (mnt / "etc" / "hostname").read_text() == HOSTNAME
    res = dk("mount", disk_images.raw, mnt, "-p", "2")
    one_line_error(res, "mountpoint-busy", 2)
    res = dk("umount", mnt)
    assert res.returncode == 0, res.stderr
    assert not os.listdir(mnt)
    one_line_error(dk("umount", mnt), "not-mounted", 2)


def test_cleanup_with_nothing_to_do() -> None:
    res = dk("cleanup", "--json")
    assert res.returncode == 0
    assert json.loads(res.stdout) == {"cleaned": []}


def test_bad_input_is_one_line(disk_images, tmp_path) -> None:
    one_line_error(dk("cat", tmp_path / "missing.img", "/etc/hostname"), "not-found", 2)
    one_line_error(dk("cat", disk_images.raw, "/x", "-p", "9"), "no-such-partition", 2)
    one_line_error(dk("cat", disk_images.luks, "/x", "-p", "1"), "encrypted", 2)
    one_line_error(dk("cat", disk_images.raw, "/nope", "-p", "1"), "not-found", 2)
    one_line_error(dk("mount", disk_images.raw, tmp_path / "nodir", "-p", "1"), "not-found", 2)
    one_line_error(dk("cat", disk_images.raw, "/x", "-p", "1", "--backend", "zfs"),
                   "bad-option", 2)


def test_host_without_the_module(disk_images) -> None:
    """Asking for a backend whose kernel module this host lacks is one line, exit 3. Where the
    host has nbd (not this one), the same command works."""
    from diskkit.backends.nbd import nbd_available

    res = dk("cat", disk_images.qcow2, "/etc/hostname", "-p", "1", "--backend", "nbd")
    if nbd_available():
        assert res.stdout == HOSTNAME
    else:
        one_line_error(res, "module-missing", 3)


def test_doctor_json_matches_the_host() -> None:
    res = dk("doctor", "--json", "--no-kvm-probe")
    assert res.returncode == 0, res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    assert checks["loop"]["ok"] == os.path.exists("/dev/loop-control")
    assert checks["fuse"]["ok"] == os.path.exists("/dev/fuse")
    dm = run(["dmsetup", "version"], check=False).returncode == 0
    assert checks["dm_mod"]["ok"] == dm
    with open("/proc/filesystems") as f:
        kernel_fs = {line.split()[-1] for line in f if line.strip()}
    for fs in ("ext4", "xfs", "vfat", "iso9660"):  # read after the doctor's modprobe
        assert checks[fs]["ok"] == (fs in kernel_fs), fs
    for name in ("losetup", "qemu-storage-daemon", "guestmount"):
        assert checks[name]["ok"] is True
    assert all(c["fix"] for c in checks.values() if c["ok"] is False)


def test_cleanup_of_a_mount_unmounted_by_hand(disk_images, tmp_path) -> None:
    """A finished mount whose filesystem someone unmounted with plain umount(8): its loop
    device is still attached; `diskkit cleanup` detaches it and forgets the run."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert dk("mount", disk_images.raw, mnt, "-p", "2").returncode == 0
    run(["umount", str(mnt)])
    from tests.backends.conftest import leftovers

    assert any(x.startswith("loop ") for x in leftovers([disk_images.dir]))
    out = json.loads(dk("cleanup", "--json").stdout)
    assert [c["undone"] for c in out["cleaned"]] == [["mount", "loop"]]
    assert json.loads(dk("cleanup", "--list", "--json").stdout) == {"runs": []}
