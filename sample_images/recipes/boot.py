"""Sample images for ``diskkit diagnose`` and ``diskkit boot-test``: the "No bootable device"
cases operators meet (../shared/notes/boot.md), built from scratch with real tools
(sfdisk, mke2fs -d, grub-mkimage, grub-bios-setup, mkfs.vfat + mtools, xorriso + ISOLINUX,
lvm2, qemu-img, gzip). Each entry's ``expected`` says what diagnose and the firmware give:
``will_boot``, the finding ``codes``, the ``firmware`` outcome (boot-test) with the disk as
OpenStack attaches a volume (virtio disk, SeaBIOS), and ``variants``: other ways to boot it
(``as``/``firmware``) with their own verdict and outcome.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from collections.abc import Callable

from diskkit.runner import run
from sample_images.recipe import Recipe
from sample_images.recipes import _disk
from sample_images.recipes._disk import MiB

BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GPT_ID = "4449534B-4B49-5400-0000-000000000001"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8475DE4"
ISOLINUX = pathlib.Path("/usr/lib/ISOLINUX")
LDLINUX = pathlib.Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")


def _tmp() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="diskkit-sample-")


def grub_mbr(path: pathlib.Path, prefix: str = "(hd0,msdos1)/boot/grub") -> None:
    """64 MiB MBR disk, partition 1 ext2 with /boot/grub, GRUB 2 in the MBR and its gap."""
    _disk.blank(path, 64 * MiB)
    _disk.partition(path, "label: dos\nlabel-id: 0x4449534b\nstart=2048, type=83, bootable\n")
    with _tmp() as t:
        root = pathlib.Path(t) / "root"
        _disk.grub_tree(root)
        _disk.mkfs_ext(path, MiB, 63 * MiB, root)
    _disk.grub_install(path, prefix, ["biosdisk", "part_msdos", "ext2"])


def grub_kernel(path: pathlib.Path) -> None:
    """The healthy GRUB disk with a real Linux kernel (this host's /boot/vmlinuz, from Debian's
    linux-image-amd64) that grub.cfg boots at once; with no initrd it panics after starting,
    and panic=-1 ends the VM: boot-test sees "kernel-started"."""
    kernels = sorted(pathlib.Path("/boot").glob("vmlinuz-*"))
    if not kernels:
        from diskkit.errors import HostError
        raise HostError("no kernel in /boot for the kernel sample", code="program-missing",
                        hint="install it: apt-get install linux-image-amd64")
    _disk.blank(path, 64 * MiB)
    _disk.partition(path, "label: dos\nlabel-id: 0x4449534b\nstart=2048, type=83, bootable\n")
    cfg = ("serial --unit=0 --speed=115200\nterminal_output --append serial\n"
           "linux /boot/vmlinuz console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1\n"
           "boot\n")
    with _tmp() as t:
        root = pathlib.Path(t) / "root"
        _disk.grub_tree(root, cfg)
        (root / "boot" / "vmlinuz").write_bytes(kernels[-1].read_bytes())
        _disk.mkfs_ext(path, MiB, 63 * MiB, root)
    _disk.grub_install(path, "(hd0,msdos1)/boot/grub", ["biosdisk", "part_msdos", "ext2"])


def grub_gpt(path: pathlib.Path) -> None:
    """64 MiB GPT disk: 1 MiB BIOS boot partition (core.img), partition 2 ext2 /boot/grub."""
    _disk.blank(path, 64 * MiB)
    _disk.partition(path, f"label: gpt\nlabel-id: {GPT_ID}\n"
                          f"start=2048, size=2048, type={BIOS_BOOT}\n"
                          f"start=4096, type={LINUX}\n")
    with _tmp() as t:
        root = pathlib.Path(t) / "root"
        _disk.grub_tree(root)
        _disk.mkfs_ext(path, 2 * MiB, 60 * MiB, root)
    _disk.grub_install(path, "(hd0,gpt2)/boot/grub", ["biosdisk", "part_gpt", "ext2"])


def uefi_only(path: pathlib.Path, loader_dir: str = "/EFI/BOOT",
              loader_name: str = "BOOTX64.EFI") -> None:
    """64 MiB GPT disk: an ESP (FAT16) with \\EFI\\BOOT\\BOOTX64.EFI from grub-mkimage -O
    x86_64-efi (normal mode built in, grub.cfg beside it), a Linux partition, no BIOS code.
    With another ``loader_dir`` (\\EFI\\debian\\grubx64.efi) it is what an installer leaves
    when it relied on an NVRAM boot entry: a new VM's firmware has no such entry."""
    _disk.blank(path, 64 * MiB)
    _disk.partition(path, f"label: gpt\nlabel-id: {GPT_ID}\nstart=2048, size=65536, type={ESP}\n"
                          f"start=67584, type={LINUX}\n")
    with _tmp() as t:
        tmp = pathlib.Path(t)
        loader, cfg, esp = tmp / "BOOTX64.EFI", tmp / "grub.cfg", tmp / "esp.img"
        run(["grub-mkimage", "-O", "x86_64-efi", "-p", loader_dir, "-o", str(loader),
             "normal", "echo", "fat", "part_gpt"], timeout=60)
        cfg.write_text(_disk.GRUB_EFI_CFG)
        _disk.fat_esp(esp, 32 * MiB, {f"{loader_dir}/{loader_name}": loader,
                                      f"{loader_dir}/grub.cfg": cfg})
        _disk.dd(esp, path, MiB)
    _disk.mkfs_ext(path, 67584 * 512, 64 * MiB - 67584 * 512 - MiB, None, "ext4")


def blank_volume(path: pathlib.Path) -> None:
    """A new 1 TiB Cinder volume: nothing written (sparse)."""
    _disk.blank(path, 1 << 40)


def _converted(fmt: str, *opts: str) -> Callable[[pathlib.Path], None]:
    def build(path: pathlib.Path) -> None:
        with _tmp() as t:
            src = pathlib.Path(t) / "disk.raw"
            grub_mbr(src)
            extra = [a for o in opts for a in ("-o", o)]
            run(["qemu-img", "convert", "-q", "-f", "raw", "-O", fmt, *extra, str(src),
                 str(path)], timeout=120)
    return build


def _iso_tree(tmp: pathlib.Path) -> pathlib.Path:
    tree = tmp / "tree"
    (tree / "isolinux").mkdir(parents=True)
    for src in (ISOLINUX / "isolinux.bin", LDLINUX):
        (tree / "isolinux" / src.name).write_bytes(src.read_bytes())
    (tree / "README.TXT").write_text("diskkit sample installer ISO\n")
    return tree


def _iso(hybrid: bool) -> Callable[[pathlib.Path], None]:
    def build(path: pathlib.Path) -> None:
        with _tmp() as t:
            tree = _iso_tree(pathlib.Path(t))
            extra = ["-isohybrid-mbr", str(ISOLINUX / "isohdpfx.bin")] if hybrid else []
            run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "DISKKIT", "-o", str(path),
                 *extra, "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
                 "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", str(tree)],
                timeout=120)
    return build


def mkrescue(path: pathlib.Path) -> None:
    """A hybrid ISO from grub-mkrescue: GRUB for BIOS in the MBR and El Torito, an EFI image
    (\\EFI\\BOOT\\BOOTX64.EFI) as El Torito entry and as a GPT/MBR partition."""
    with _tmp() as t:
        tree = pathlib.Path(t) / "tree"
        (tree / "boot" / "grub").mkdir(parents=True)
        (tree / "boot" / "grub" / "grub.cfg").write_text(_disk.GRUB_CFG)
        run(["grub-mkrescue", "-o", str(path), str(tree)], timeout=180)


def no_bootloader(path: pathlib.Path) -> None:
    """Partitioned (sfdisk: empty boot code, 55 AA) with an ext4 filesystem, no boot loader:
    the OS was installed elsewhere, or the boot loader went onto another disk."""
    _disk.blank(path, 64 * MiB)
    _disk.partition(path, "label: dos\nlabel-id: 0x4449534b\nstart=2048, type=83, bootable\n")
    with _tmp() as t:
        root = pathlib.Path(t) / "root"
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "fstab").write_text("/dev/vda1 / ext4 defaults 0 1\n")
        _disk.mkfs_ext(path, MiB, 63 * MiB, root, "ext4")


def gzipped(path: pathlib.Path) -> None:
    """The healthy GRUB disk, gzip-compressed, uploaded as if it were raw."""
    with _tmp() as t:
        src = pathlib.Path(t) / "disk.raw"
        grub_mbr(src)
        with open(path, "wb") as out:
            out.write(run(["gzip", "-n", "-c", "-1", str(src)], timeout=120, binary=True).stdout)


def lvm_root(path: pathlib.Path) -> None:
    """An MBR disk whose only partition is an LVM PV (VG ``vg0``, LV ``root`` holding ext2
    with /boot/grub); GRUB in the MBR gap with prefix (lvm/vg0-root)/boot/grub."""
    from sample_images.recipes._lvm import make_lv_disk

    make_lv_disk(path, 96 * MiB, "vg0", "root", 32 * MiB)
    _disk.grub_install(path, "(lvm/vg0-root)/boot/grub",
                       ["biosdisk", "part_msdos", "lvm", "ext2"])


_BIOS_OK = {"will_boot": True, "firmware": "bootloader-reached"}
_NOT = {"will_boot": False}

RECIPES = [
    Recipe("boot-grub-mbr.img", "Healthy BIOS disk: GRUB 2 in the MBR, /boot on ext2",
           grub_mbr, "raw", {**_BIOS_OK, "codes": [],
                             "variants": [{"firmware_type": "uefi", "will_boot": False,
                                           "firmware": "no-bootable-device",
                                           "codes": ["bios-only-image"]}]}),
    Recipe("boot-grub-kernel.img", "Healthy BIOS disk whose GRUB boots a Linux kernel",
           grub_kernel, "raw", {"will_boot": True, "codes": [], "firmware": "kernel-started"}),
    Recipe("boot-grub-gpt.img", "Healthy BIOS disk on GPT: GRUB 2 core.img in a BIOS boot "
           "partition", grub_gpt, "raw", {**_BIOS_OK, "codes": []}),
    Recipe("boot-uefi-only.img", "UEFI-only GPT disk (ESP with BOOTX64.EFI, no BIOS boot "
           "code) booted with BIOS firmware", uefi_only, "raw",
           {**_NOT, "codes": ["uefi-only-image"], "firmware": "boot-code-ran",
            "variants": [{"firmware_type": "uefi", "will_boot": True, "codes": [],
                          "firmware": "bootloader-reached"}]}),
    Recipe("boot-esp-no-fallback.img", "GPT disk whose ESP has only \\EFI\\debian\\grubx64.efi "
           "(no removable-media loader), no BIOS boot code",
           lambda p: uefi_only(p, "/EFI/debian", "grubx64.efi"), "raw",
           {**_NOT, "codes": ["no-boot-code"], "firmware": "boot-code-ran",
            "variants": [{"firmware_type": "uefi", "will_boot": False,
                          "codes": ["esp-without-removable-loader"],
                          "firmware": "no-bootable-device"}]}),
    Recipe("boot-blank-volume.raw", "A blank 1 TiB volume (sparse: nothing ever written)",
           blank_volume, "raw", {**_NOT, "codes": ["blank-disk"],
                                 "firmware": "no-bootable-device"}),
    Recipe("boot-qcow2-as-raw.raw", "qcow2 bytes written as they are into a raw volume "
           "(uploaded with disk_format=raw)", _converted("qcow2"), "raw",
           {**_NOT, "codes": ["container-as-raw"], "firmware": "no-bootable-device"}),
    Recipe("boot-vmdk-as-raw.raw", "A VMDK written as it is into a raw volume",
           _converted("vmdk"), "raw",
           {**_NOT, "codes": ["container-as-raw"], "firmware": "no-bootable-device"}),
    Recipe("boot-plain-iso-volume.raw", "A plain (non-hybrid) installer ISO turned into a "
           "volume: attached as a disk", _iso(False), "raw",
           {**_NOT, "codes": ["iso-as-disk"], "firmware": "no-bootable-device",
            "variants": [{"as": "cdrom", "will_boot": True, "codes": [],
                          "firmware": "bootloader-reached"}]}),
    Recipe("boot-hybrid-iso-volume.raw", "A hybrid ISO (ISOLINUX isohdpfx MBR) turned into a "
           "volume: boots as a disk too", _iso(True), "raw", {**_BIOS_OK, "codes": []}),
    Recipe("boot-grub-mkrescue.iso", "A hybrid BIOS+UEFI ISO from grub-mkrescue turned into "
           "a volume: boots as a disk and as a CD, with either firmware", mkrescue, "raw",
           {**_BIOS_OK, "codes": [], "variants": [
               {"firmware_type": "uefi", "will_boot": True, "codes": [],
                "firmware": "bootloader-reached"},
               {"as": "cdrom", "will_boot": True, "codes": [], "firmware": "bootloader-reached"},
               {"as": "cdrom", "firmware_type": "uefi", "will_boot": True, "codes": [],
                "firmware": "bootloader-reached"}]}),
    Recipe("boot-grub-prefix-elsewhere.img", "GRUB installed with a prefix on a partition "
           "this disk does not have ((hd0,msdos3) on a 1-partition disk)",
           lambda p: grub_mbr(p, "(hd0,msdos3)/boot/grub"), "raw",
           {**_NOT, "codes": ["grub-prefix-partition-missing"],
            "firmware": "bootloader-failed"}),
    Recipe("boot-no-bootloader.img", "Partitioned, with a filesystem, but all-zero boot code "
           "(the boot loader went onto another disk)", no_bootloader, "raw",
           {**_NOT, "codes": ["no-boot-code"], "firmware": "boot-code-ran"}),
    Recipe("boot-compressed.img.gz", "The healthy disk gzip-compressed, uploaded as raw",
           gzipped, "raw", {**_NOT, "codes": ["compressed-image"],
                            "firmware": "no-bootable-device"}),
    Recipe("boot-lvm-root.img", "GRUB 2 whose /boot/grub is on an LVM logical volume "
           "(prefix (lvm/vg0-root)/boot/grub)", lvm_root, "raw", {**_BIOS_OK, "codes": []}),
]

#: Bump when a helper these recipes share changes (grub.cfg, partitioning): forces a rebuild.
RECIPE_VERSION = 2
RECIPES = [dataclasses.replace(r, version=RECIPE_VERSION) for r in RECIPES]
