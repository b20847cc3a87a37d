"""guestfs backend with TCG on this machine: chosen automatically for LVM (no device-mapper
here) and vfat (no kernel module here), cat through the appliance, a host mount through
guestmount, and a launch that hangs stopped by its deadline. Each test launches one appliance
(15-40 s under TCG)."""

from __future__ import annotations

import json
import os
import pathlib
import time

import pytest

from diskkit.backends import guestfs
from diskkit.backends.lvm import dm_available
from diskkit.backends.mounts import kernel_supports
from diskkit.errors import HostError
from tests.backends.conftest import diskkit_cmd, sha256
from tests.backends.test_cli import dk, one_line_error
from tests.fixtures.lvm_images import FSTAB, GRUB_CFG

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="loop devices/FUSE need root")]


def test_cat_lvm_root_auto_guestfs(lvm_images) -> None:
    img = lvm_images.root
    before = sha256(img)
    res = dk("cat", img, "/etc/fstab", timeout=400)  # --os implied: the root is an LV
    assert res.returncode == 0, res.stderr
    assert res.stdout == FSTAB
    assert sha256(img) == before


def test_mount_lv_through_guestmount(lvm_images, tmp_path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = dk("mount", lvm_images.root, mnt, "--lv", "ubuntu-vg/root", "--json", timeout=400)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    if not dm_available():
        assert out["backend"] == "guestfs"
    assert (mnt / "boot" / "grub" / "grub.cfg").read_text() == GRUB_CFG
    res = dk("umount", mnt, timeout=120)
    assert res.returncode == 0, res.stderr
    assert not os.listdir(mnt)


def test_run_on_lvm_root(lvm_images) -> None:
    res = dk("run", lvm_images.root, "--lv", "ubuntu-vg/root", "--", "sh", "-c",
             'cat "$DISKKIT_ROOT/etc/fstab"; exit 3', timeout=400)
    assert res.returncode == 3, res.stderr
    assert res.stdout == FSTAB


def test_vfat_with_the_loop_backend(disk_images) -> None:
    if kernel_supports("vfat"):
        pytest.skip("this kernel mounts vfat")
    res = dk("cat", disk_images.raw, "/EFI.TXT", "-p", "3", "--backend", "loop")
    one_line_error(res, "mount-failed", 3)


def test_lv_with_the_loop_backend_needs_device_mapper(lvm_images) -> None:
    if dm_available():
        pytest.skip("this host has device-mapper (the VM test covers it)")
    res = dk("cat", lvm_images.root, "/etc/fstab", "--lv", "ubuntu-vg/root", "--backend", "loop")
    one_line_error(res, "module-missing", 3)


def test_launch_deadline(disk_images) -> None:
    with pytest.raises(HostError) as exc, guestfs.open_appliance(str(disk_images.raw), "raw",
                                                                 timeout=1):
        pass
    assert exc.value.code == "appliance-timeout"


def test_vfat_auto_guestfs_then_sigterm(disk_images, tmp_path, run_dir) -> None:
    """A vfat partition (no vfat in this kernel) is mounted through guestfs automatically;
    SIGTERM once it is FUSE-mounted leaves no mount, guestmount or appliance qemu behind."""
    import signal

    from tests.backends.test_signals import _pause_and_signal

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    before = _appliances()
    seen: list[str] = []
    backend = "auto" if not kernel_supports("vfat") else "guestfs"
    rc = _pause_and_signal([diskkit_cmd(), "mount", str(disk_images.raw), str(mnt), "-p", "3",
                            "--backend", backend], "after-guestmount", signal.SIGTERM,
                           run_dir, before_signal=lambda: seen.extend(os.listdir(mnt)))
    assert seen == ["EFI.TXT"]
    assert rc == 128 + signal.SIGTERM
    assert not os.listdir(mnt)
    deadline = time.monotonic() + 30
    while _appliances() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _appliances() - before, "the appliance's qemu outlived the mount"


def _appliances() -> set[int]:
    """Pids of running libguestfs appliance qemu processes."""
    out = set()
    for proc in pathlib.Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"qemu-system" in cmd and b"guestfs" in cmd and state != "Z":
            out.add(int(proc.name))
    return out


def test_tcg_when_kvm_is_unusable(monkeypatch) -> None:
    """The doctor's probe decides TCG when the environment does not say."""
    from diskkit.doctor import kvm_usable

    monkeypatch.delenv("LIBGUESTFS_BACKEND_SETTINGS", raising=False)
    monkeypatch.delenv("DISKKIT_GUESTFS_TCG", raising=False)
    usable = kvm_usable(refresh=True)
    assert usable in (True, False, None)
    assert guestfs.use_tcg() is (usable is not True)
