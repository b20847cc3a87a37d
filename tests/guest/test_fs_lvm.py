"""guest/fs on LVM logical volumes (read through layout.inspect.lv_reader, nothing activated):
an OS root on an LV whose fstab mounts /boot from a partition, an LV spanning two PVs, a FAT
LV on a bare-disk PV."""

from __future__ import annotations

from diskkit.disk import open_disk
from diskkit.guest.fs import open_filesystem, service
from diskkit.layout import inspect_layout
from diskkit.layout.inspect import lv_reader
from tests.fixtures.lvm_images import FSTAB, GRUB_CFG, ROOT_UUID


def test_os_root_on_an_lv_with_boot_from_fstab(lvm_images) -> None:
    img = str(lvm_images.root)
    assert service.read_file(img, "/etc/fstab", os_root=True) == FSTAB.encode()
    # /boot is the (empty) boot partition, mounted over the root LV's /boot by its fstab.
    assert [e["name"] for e in service.list_dir(img, "/boot", os_root=True)] == ["lost+found"]
    got = service.stat_path(img, "/boot", os_root=True)
    assert got["kind"] == "dir"
    # The LV alone: its own /boot/grub/grub.cfg.
    assert service.read_file(img, "/boot/grub/grub.cfg", lv="ubuntu-vg/root") == \
        GRUB_CFG.encode()
    with open_disk(img) as disk:
        layout = inspect_layout(disk)
        with open_filesystem(lv_reader(disk, layout, "ubuntu-vg/root")) as fs:
            assert (fs.fstype, fs.label, fs.uuid) == ("ext4", "rootfs", ROOT_UUID)


def test_lv_spanning_two_pvs_and_fat_on_a_bare_pv(lvm_images) -> None:
    with open_disk(str(lvm_images.multi)) as disk:
        layout = inspect_layout(disk)
        with open_filesystem(lv_reader(disk, layout, "datavg/span")) as fs:
            assert fs.label == "span" and fs.names("/") == ["lost+found"]
    with open_disk(str(lvm_images.bare)) as disk:
        layout = inspect_layout(disk)
        with open_filesystem(lv_reader(disk, layout, "vg_bare/data")) as fs:
            assert (fs.fstype, fs.label) == ("vfat", "BARE") and fs.names("/") == []


def test_open_location_uses_the_layout(lvm_images) -> None:
    from diskkit.guest.fs import open_location

    with open_disk(str(lvm_images.root)) as disk:
        layout = inspect_layout(disk)
        with open_location(disk, layout, "lv ubuntu-vg/root") as fs:
            assert fs.read("/etc/fstab") == FSTAB.encode()
        with open_location(disk, layout, "partition 1") as fs:
            assert fs.label == "boot" and fs.names("/") == ["lost+found"]
