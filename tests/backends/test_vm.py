"""The kernel paths this machine lacks, in a throwaway VM with a real kernel (one boot for the
whole suite, see tests/fixtures/vm.py and tests/backends/vm_script.py): qemu-nbd --connect,
kpartx, LVM activation with a VG name that clashes with one already active, and teardown."""

from __future__ import annotations

from typing import Any

import pytest

from tests.backends.conftest import HELLO, HOSTNAME, sha256
from tests.fixtures.lvm_images import BOOT_UUID

pytestmark = pytest.mark.slow


def _ok(vm_result: dict[str, Any], name: str) -> dict[str, Any]:
    entry = vm_result["cases"][name]
    assert entry["ok"], entry.get("traceback") or entry.get("error")
    return entry


def test_vm_setup_has_nbd_dm_and_a_clashing_vg(vm_result) -> None:
    setup = vm_result["setup"]
    assert setup["modprobe_nbd"] == 0 and setup["modprobe_dm"] == 0
    assert setup["clash_active"]
    assert "ubuntu--vg-root" in setup["state"]["dm"]


def test_qemu_nbd_connect(vm_result) -> None:
    e = _ok(vm_result, "nbd-qcow2")
    assert e["backend"] == "nbd"
    assert e["device"].startswith("/dev/nbd") and e["device"].endswith("p1")
    assert e["connected"]
    assert e["hostname"] == HOSTNAME
    assert e["state"]["nbd"]


def test_loop_with_kpartx(vm_result) -> None:
    e = _ok(vm_result, "kpartx-raw")
    assert e["device"].startswith("/dev/mapper/loop") and e["device"].endswith("p2")
    assert e["hello"] == HELLO


def test_lvm_with_a_clashing_vg_name(vm_result) -> None:
    e = _ok(vm_result, "lvm-clash-kpartx")
    assert e["device"].startswith("/dev/mapper/dk")
    assert "/dev/mapper/ubuntu--vg-root / ext4" in e["fstab"]
    assert e["clash_still_active"]
    # Ours and the VM's own ubuntu-vg/root are both mapped, under different names.
    assert "ubuntu--vg-root" in e["state"]["dm"]
    assert any(n.startswith("dk") and n.endswith("ubuntu-vg-root") for n in e["state"]["dm"])


def test_lvm_os_root_over_nbd(vm_result) -> None:
    e = _ok(vm_result, "lvm-clash-nbd-os")
    where = {x["mountpoint"]: x for x in e["mounts"]}
    assert where["/"]["location"] == "lv ubuntu-vg/root"
    assert where["/"]["device"].startswith("/dev/mapper/dk")
    # fstab mounts /boot by UUID: partition 1, an empty ext4 over the root's /boot/grub.
    assert f"UUID={BOOT_UUID} /boot" in e["fstab"]
    assert where["/boot"]["location"] == "partition 1"
    assert where["/boot"]["device"].startswith("/dev/nbd")
    assert e["boot"] == ["lost+found"]


def test_mount_umount_over_nbd(vm_result) -> None:
    e = _ok(vm_result, "mount-umount")
    assert e["mount"]["backend"] == "nbd"
    assert e["hostname"] == HOSTNAME
    assert e["during"]["nbd"] and not e["state"]["nbd"]


def test_nothing_left_and_images_unchanged(vm_result, disk_images, lvm_images) -> None:
    after = vm_result["after"]
    assert after["state"]["nbd"] == []
    assert after["state"]["dm"] == ["ubuntu--vg-root"]  # only the VM's own VG
    assert after["state"]["mounts"] == []
    assert len(after["state"]["loops"]) == 1  # only the VM's own PV
    assert after["clash_active"]
    shared = vm_result["shared"]
    for name, original in (("disk.raw", disk_images.raw), ("disk.qcow2", disk_images.qcow2),
                           ("lvm-root.img", lvm_images.root)):
        assert sha256(f"{shared}/{name}") == sha256(original), name


@pytest.mark.parametrize("name", ["nbd-qcow2", "kpartx-raw", "lvm-clash-kpartx",
                                  "lvm-clash-nbd-os"])
def test_vm_mounts_are_nosuid_nodev_noexec(vm_result, name) -> None:
    """nbd, kpartx and LVM mounts carry the options of every diskkit mount (docs/security.md):
    read-only, no setuid, no device nodes, no execution, no symlinks followed."""
    e = _ok(vm_result, name)
    assert e["options"], "no mount seen under the root"
    for where, opts in e["options"].items():
        assert {"ro", "nosuid", "nodev", "noexec", "nosymfollow"} <= set(opts.split(",")), \
            (where, opts)
