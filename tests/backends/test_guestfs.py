"""guestfs backend with TCG on this machine: chosen automatically for LVM (no device-mapper
here) and vfat (no kernel module here), cat through the appliance, a host mount through
guestmount, and a launch that hangs stopped by its deadline. Each test launches one appliance
(15-40 s under TCG)."""

from __future__ import annotations

import json
import os

import pytest

from diskkit.backends import guestfs
from diskkit.backends.lvm import dm_available
from diskkit.backends.mounts import kernel_supports
from diskkit.errors import HostError
from tests.backends.conftest import sha256
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


def test_vfat_partition_auto_guestfs(disk_images) -> None:
    res = dk("ls", disk_images.raw, "/", "-p", "3", "--json", timeout=400)
    assert res.returncode == 0, res.stderr
    names = [e["name"] for e in json.loads(res.stdout)["entries"]]
    assert names == ["EFI.TXT"]
    if not kernel_supports("vfat"):
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
