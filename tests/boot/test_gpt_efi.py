"""A GPT disk as a distribution installs it: BIOS boot partition with GRUB's core.img embedded
by grub-bios-setup, an ESP (FAT32, mtools) with real x86-64 EFI loaders, an ext4 /boot.
Checked against sgdisk/sfdisk, mdir and the loaders' own bytes (grub-mkimage -O x86_64-efi)."""

from __future__ import annotations

import pathlib

import pytest

from diskkit.boot import inspect_boot
from diskkit.boot.efi import inspect_fat_efi
from diskkit.readers.raw import FileReader
from diskkit.runner import run, spawn, wait_for
from tests.boot.conftest import dd, grub_install, grub_tree, mkfs_ext, sfdisk_partitions

MiB = 1 << 20


def _esp(tmp: pathlib.Path, size_mib: int, bits: int, files: dict[str, pathlib.Path]
         ) -> pathlib.Path:
    esp = tmp / f"esp{bits}.img"
    spc = "8" if bits == 12 else "1"
    run(["mkfs.vfat", "-F", str(bits), "-s", spc, "-C", str(esp), str(size_mib * 1024)],
        timeout=30)
    for path in files:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            run(["mmd", "-D", "s", "-i", str(esp), "::/" + "/".join(parts[:i])], timeout=10,
                check=False)
    for path, src in files.items():
        run(["mcopy", "-i", str(esp), str(src), "::" + path], timeout=10)
    return esp


@pytest.fixture(scope="module")
def gpt_disk(tmp_path_factory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("gpt")
    loader = tmp / "grubx64.efi"
    run(["grub-mkimage", "-O", "x86_64-efi", "-p", "/EFI/debian", "-o", str(loader),
         "part_gpt", "fat", "normal"], timeout=60)
    notpe = tmp / "notpe.efi"
    notpe.write_bytes(b"this is not a PE image\n" * 50)
    img = tmp / "disk.img"
    run(["truncate", "-s", "128M", str(img)], timeout=10)
    run(["sgdisk", "-n1:2048:+1M", "-t1:ef02", "-c1:bios", "-n2:0:+48M", "-t2:ef00",
         "-c2:EFI system", "-n3:0:0", "-t3:8300", str(img)], timeout=30)
    parts, _ = sfdisk_partitions(img)
    esp = _esp(tmp, 48, 32, {"/EFI/BOOT/BOOTX64.EFI": loader,
                             "/EFI/debian/grubx64.efi": loader,
                             "/EFI/debian/shimx64.efi": notpe})
    dd(esp, img, parts[1].start)
    root = tmp / "root"
    grub_tree(root, "set timeout=0\n")
    mkfs_ext(img, parts[2].start, parts[2].size, root)
    grub_install(tmp, img, "(hd0,gpt3)/boot/grub", ["biosdisk", "part_gpt", "ext2"])
    return img


def test_bios_boot_partition_holds_core_img(gpt_disk):
    parts, table = sfdisk_partitions(gpt_disk)
    with FileReader(str(gpt_disk)) as r:
        info = inspect_boot(r, partitions=parts, table=table)
    assert table == "gpt"
    assert info.bios_boot_partition.number == 1
    assert info.mbr.loader == "grub2"
    (g,) = info.grub
    assert g.core.error is None and g.core.prefix == "(hd0,gpt3)/boot/grub"
    assert g.core.sector * 512 == parts[0].start  # embedded at the start of the BBP
    assert g.core_location == "partition 1" and g.core_in_bios_boot_partition is True
    assert (g.target.exists, g.target.grub_cfg, g.target.normal_mod) == (True, True, True)
    assert "bios-boot-partition-missing" not in [f.code for f in info.findings]


def test_esp_loaders_match_mdir_and_pe_headers(gpt_disk):
    parts, table = sfdisk_partitions(gpt_disk)
    with FileReader(str(gpt_disk)) as r:
        info = inspect_boot(r, partitions=parts, table=table)
    (esp,) = info.esp
    assert esp.where == "partition 2" and esp.fat_bits == 32 and esp.removable_x64
    spec = f"{gpt_disk}@@{parts[1].start}"
    listed = run(["mdir", "-/", "-b", "-i", spec, "::/EFI"], timeout=30).stdout.split()
    want = sorted(p[2:] for p in listed if p.lower().endswith(".efi"))
    assert sorted(x.path for x in esp.loaders) == want
    by_path = {x.path: x for x in esp.loaders}
    for path, loader in by_path.items():
        data = run(["mcopy", "-n", "-i", spec, "::" + path, "-"], timeout=30,
                   binary=True).stdout
        assert loader.size == len(data)
        assert loader.is_x64 == (data[:2] == b"MZ")
    assert by_path["/EFI/debian/shimx64.efi"].machine is None
    assert not [f for f in info.findings if f.code == "esp-without-removable-loader"]


def test_mbr_esp_without_removable_loader_is_a_finding(tmp_path):
    loader = tmp_path / "grubx64.efi"
    run(["grub-mkimage", "-O", "x86_64-efi", "-p", "/EFI/debian", "-o", str(loader), "fat"],
        timeout=60)
    img = tmp_path / "disk.img"
    run(["truncate", "-s", "16M", str(img)], timeout=10)
    run(["sfdisk", "-q", str(img)], input="label: dos\nstart=2048, type=ef\n", timeout=30)
    esp = _esp(tmp_path, 8, 12, {"/EFI/debian/grubx64.efi": loader})
    dd(esp, img, 2048 * 512)
    parts, table = sfdisk_partitions(img)
    with FileReader(str(img)) as r:
        info = inspect_boot(r, partitions=parts, table=table)
        (esp_info,) = info.esp
        assert esp_info.fat_bits == 12 and not esp_info.removable_x64
        assert [x.path for x in esp_info.loaders] == ["/EFI/debian/grubx64.efi"]
        assert esp_info.loaders[0].is_x64
        codes = [f.code for f in info.findings]
        assert "esp-without-removable-loader" in codes
        assert "no-boot-code" in codes  # sfdisk writes no boot code, and no UEFI fallback
        # A non-FAT "ESP" gives an error, not an exception.
        assert inspect_fat_efi(r, "disk", 0).error


OVMF_CODE = pathlib.Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = pathlib.Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
EARLY_CFG = "serial --unit=0 --speed=115200\nterminal_output serial\necho DISKKIT-EFI-OK\nhalt\n"


def _ovmf_log(tmp: pathlib.Path, img: pathlib.Path) -> str:
    """Boot ``img`` with OVMF (fresh variables: no boot entries, as a new VM) under TCG until
    our loader prints or the firmware falls back to its internal shell (no loader found)."""
    vars_copy = tmp / "vars.fd"
    vars_copy.write_bytes(OVMF_VARS.read_bytes())
    log = tmp / "serial.log"
    log.write_text("")
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-display", "none",
            "-no-reboot", "-machine", "q35", "-net", "none", "-monitor", "none",
            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,file={vars_copy}",
            "-drive", f"file={img},format=raw,if=virtio", "-serial", f"file:{log}"]

    def done() -> bool:
        text = log.read_text(errors="replace")
        return "DISKKIT-EFI-OK" in text or "EFI Internal Shell" in text

    with spawn(argv) as proc:
        wait_for(lambda: done() or proc.poll() is not None, timeout=120, what="OVMF boot")
    return log.read_text(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("removable", [True, False])
def test_ovmf_agrees_with_removable_x64(tmp_path, removable):
    """Ground truth: a new UEFI VM boots \\EFI\\BOOT\\BOOTX64.EFI, and only that."""
    cfg = tmp_path / "early.cfg"
    cfg.write_text(EARLY_CFG)
    loader = tmp_path / "boot.efi"
    run(["grub-mkimage", "-O", "x86_64-efi", "-p", "/EFI/BOOT", "-c", str(cfg), "-o",
         str(loader), "serial", "echo", "halt", "terminal"], timeout=60)
    path = "/EFI/BOOT/BOOTX64.EFI" if removable else "/EFI/debian/grubx64.efi"
    esp = _esp(tmp_path, 4, 12, {path: loader})
    img = tmp_path / "disk.img"
    run(["truncate", "-s", "16M", str(img)], timeout=10)
    run(["sgdisk", "-n1:2048:0", "-t1:ef00", str(img)], timeout=30)
    dd(esp, img, 2048 * 512)
    parts, table = sfdisk_partitions(img)
    with FileReader(str(img)) as r:
        info = inspect_boot(r, partitions=parts, table=table)
    assert info.esp[0].removable_x64 is removable
    assert ("esp-without-removable-loader" in [f.code for f in info.findings]) is not removable
    assert ("DISKKIT-EFI-OK" in _ovmf_log(tmp_path, img)) is removable


def test_gpt_without_bios_boot_partition_is_a_finding(tmp_path, gpt_disk):
    img = tmp_path / "disk.img"
    img.write_bytes(gpt_disk.read_bytes())
    run(["sgdisk", "-t1:8300", str(img)], timeout=30)  # BIOS boot -> Linux filesystem
    parts, table = sfdisk_partitions(img)
    with FileReader(str(img)) as r:
        info = inspect_boot(r, partitions=parts, table=table)
    assert info.bios_boot_partition is None
    (g,) = info.grub
    assert g.core_location == "partition 1" and g.core_in_bios_boot_partition is False
    assert "bios-boot-partition-missing" in [f.code for f in info.findings]
