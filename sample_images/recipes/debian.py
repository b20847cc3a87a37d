"""Real Debian 12 (bookworm) cloud images, built with debootstrap from the Debian package
registry (the mirror apt on this machine uses), and their variants: the operating systems
the guest, diagnose, validate and boot-test layers are checked against.

Two cached stages, both outside the clone (``DISKKIT_TEST_CACHE``, default
/var/cache/diskkit-tests), keyed by a hash of the code that makes them:

1. the tree: ``debootstrap`` with the cloud kernel, initramfs-tools, GRUB, cloud-init, sshd,
   growpart, qemu-guest-agent, lvm2 and xfsprogs, configured in a chroot (hostname, serial
   console in /etc/default/grub), kept as a tarball (``debian12-tree-KEY.tar``);
2. one qcow2 per variant (``debian12-VARIANT-KEY.qcow2``): a 2 GiB raw disk partitioned with
   sfdisk, the root filesystem made on a loop device with an offset (this kernel has no
   device-mapper: LVM metadata is written with ``activation=0`` and the filesystem goes to
   the LV's byte range), the tree unpacked into it, the variant's changes made in a chroot
   (update-initramfs, grub-mkconfig run there), GRUB's core.img made by the image's own
   grub-mkimage the way grub-install makes it and written by grub-bios-setup, then
   ``qemu-img convert -O qcow2``.

No RECIPES here: the sample build (``python -m sample_images.build``) stays quick. Build one
by hand with ``python -m sample_images.recipes.debian VARIANT...``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from diskkit.runner import run

MiB = 1 << 20
GiB = 1 << 30
SUITE = "bookworm"
DISK_SIZE = 2 * GiB
HOSTNAME = "diskkit-debian12"
#: Installed on top of debootstrap's default set ("important" priority).
PACKAGES = (
    "linux-image-cloud-amd64", "initramfs-tools", "grub-pc", "grub-efi-amd64-bin",
    "cloud-init", "python3-cffi-backend", "openssh-server", "cloud-guest-utils",
    "qemu-guest-agent", "lvm2", "xfsprogs", "systemd-sysv",
)
#: Fixed identities, so that tests can name them (ground truth is still read by blkid).
ROOT_UUID = "5e1f0c3a-9d2b-4e7a-8c61-0d15c0de1201"
#: What ``tune2fs -U`` gives the root filesystem in the "uuid-changed" variant.
CHANGED_UUID = "5e1f0c3a-9d2b-4e7a-8c61-0d15c0de1299"
SWAP_UUID = "5e1f0c3a-9d2b-4e7a-8c61-0d15c0de5a9e"
ESP_VOLID = "D15C0E5F"
#: A filesystem fstab names that no disk has ("fstab-missing").
MISSING_UUID = "0b5e55ed-0000-4000-8000-00000000da7a"
VG, LV = "debian-vg", "root"
LV_SIZE = 1800 * MiB
ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_GUID = "0FC63DAF-8483-4772-8E79-3D69D8475DE4"
#: XFS_SB_FEAT_INCOMPAT_EXCHRANGE (1 << 6, xfsprogs 6.10 / Linux 6.10): Debian's GRUB 2.06-13
#: carries 2.12's XFS code, which knows FTYPE, SPINODES, META_UUID, BIGTIME, NEEDSREPAIR and
#: NREXT64 (bits 0-5) and refuses any other incompat bit ("unknown filesystem").
XFS_INCOMPAT_EXCHRANGE = 0x40

CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
              "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}


@dataclass(frozen=True)
class Variant:
    """One image: how it differs from the base, and how it ends when booted (boot-test's
    outcome with ``firmware`` on a virtio disk, under TCG)."""

    name: str
    description: str
    layout: str = "mbr"  # mbr | mbr-root-not-last | gpt-uefi | mbr-lvm
    fs: str = "ext4"
    firmware: str = "bios"
    expected_boot: str = "login"
    fstab_root: str = "uuid"  # uuid | /dev/sda1
    fstab_missing: bool = False
    console: bool = True
    cloud_init: bool = True
    #: None: Debian's default (MODULES=most); else MODULES=list with these modules only.
    initramfs_modules: tuple[str, ...] | None = None
    lvm_hook: bool = True
    #: After the install: "uuid-changed" (tune2fs -U), "xfs-exchrange" (an incompat bit).
    post: str | None = None


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("base", "Debian 12 cloud image: MBR, ext4 root by UUID, GRUB in the MBR, serial "
            "console, cloud-init"),
    Variant("xfs", "Root filesystem on XFS", fs="xfs"),
    Variant("lvm", "Root on LVM (VG debian-vg, LV root), lvm2 in the initramfs",
            layout="mbr-lvm"),
    Variant("uefi", "GPT + ESP, GRUB for UEFI (\\EFI\\BOOT\\BOOTX64.EFI), boots under OVMF",
            layout="gpt-uefi", firmware="uefi"),
    Variant("no-cloud-init", "cloud-init purged", cloud_init=False),
    Variant("fstab-sda", "fstab names the root /dev/sda1 (a virtio disk is vda)",
            fstab_root="/dev/sda1"),
    Variant("no-console", "No serial console on the kernel command line (VGA only)",
            console=False),
    Variant("uuid-changed", "Root filesystem UUID changed after install (tune2fs -U): "
            "grub.cfg, the kernel's root= and fstab name the old one", post="uuid-changed",
            expected_boot="initramfs-shell"),
    Variant("fstab-missing", "fstab names a filesystem no disk has, without nofail",
            fstab_missing=True, expected_boot="emergency-mode"),
    Variant("no-virtio", "initramfs made with MODULES=list (ext4 only): no virtio driver",
            initramfs_modules=("ext4",), expected_boot="initramfs-shell"),
    Variant("lvm-no-hook", "Root on LVM, initramfs made without the lvm2 hook",
            layout="mbr-lvm", lvm_hook=False, expected_boot="initramfs-shell"),
    Variant("xfs-grub-unreadable", "/boot on an XFS with an incompat feature (exchange-range) "
            "this GRUB cannot read", fs="xfs", post="xfs-exchrange",
            expected_boot="grub-error"),
    Variant("root-not-last", "Root partition followed by a swap partition (cannot grow)",
            layout="mbr-root-not-last"),
)}


def cache_dir() -> pathlib.Path:
    """Where trees and images are kept between runs (``DISKKIT_TEST_CACHE``)."""
    d = pathlib.Path(os.environ.get("DISKKIT_TEST_CACHE", "/var/cache/diskkit-tests"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def apt_mirror(root: pathlib.Path = pathlib.Path("/")) -> str:
    """The Debian archive apt uses on this machine (/etc/apt/sources.list and
    sources.list.d, one-line or deb822 format): the first ``deb`` source for bookworm whose
    path ends in /debian."""
    files = [root / "etc/apt/sources.list",
             *sorted((root / "etc/apt/sources.list.d").glob("*.list")),
             *sorted((root / "etc/apt/sources.list.d").glob("*.sources"))]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == SUITE and m.group(1).rstrip("/").endswith("/debian"):
                return m.group(1)
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
            if ("deb" in fields.get("Types", "").split()
                    and SUITE in fields.get("Suites", "").split()):
                for uri in fields.get("URIs", "").split():
                    if uri.rstrip("/").endswith("/debian"):
                        return uri
    return "http://deb.debian.org/debian"


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def tree_key() -> str:
    """Changes when what makes the tree changes."""
    return _key(SUITE, ",".join(PACKAGES), HOSTNAME, inspect.getsource(_configure_tree))


def image_key() -> str:
    """Changes when this module changes (the tree's key included)."""
    return _key(tree_key(), inspect.getsource(sys.modules[__name__]))


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    """An exclusive lock: two test sessions never build the same thing at once."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _chroot(root: pathlib.Path, script: str, timeout: float = 600) -> str:
    return run(["chroot", str(root), "/bin/sh", "-ec", script], env=CHROOT_ENV,
               timeout=timeout).stdout


def _configure_tree(root: pathlib.Path) -> None:
    """What a Debian cloud image sets up once, independent of the disk: hostname, hosts,
    GRUB's defaults (serial console, short timeout), no package caches."""
    (root / "etc/hostname").write_text(HOSTNAME + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n")
    default = root / "etc/default/grub"
    text = default.read_text()
    settings = {
        "GRUB_TIMEOUT": "1",
        "GRUB_CMDLINE_LINUX_DEFAULT": '""',
        "GRUB_CMDLINE_LINUX": '"console=tty0 console=ttyS0,115200n8"',
        "GRUB_TERMINAL": '"console serial"',
        "GRUB_SERIAL_COMMAND": '"serial --speed=115200"',
        "GRUB_DISABLE_OS_PROBER": "true",
    }
    for k, v in settings.items():
        text, n = re.subn(rf"^#?{k}=.*$", f"{k}={v}", text, flags=re.M)
        if not n:
            text += f"{k}={v}\n"
    default.write_text(text)
    (root / "etc/machine-id").write_text("")
    with contextlib.suppress(FileNotFoundError):
        (root / "var/lib/dbus/machine-id").unlink()
    _chroot(root, "apt-get clean; rm -rf /var/lib/apt/lists/*")


def build_tree(cache: pathlib.Path | None = None) -> pathlib.Path:
    """The configured debootstrap tree as a tarball (built once; downloaded .debs are kept in
    ``CACHE/debs`` so a rebuild does not download them again)."""
    cache = cache or cache_dir()
    tar = cache / f"debian12-tree-{tree_key()}.tar"
    with _locked(cache / "debian-tree.lock"):
        if tar.exists():
            return tar
        work = cache / f"tree-{tree_key()}.tmp"
        if work.exists():
            shutil.rmtree(work)
        debs = cache / "debs"
        debs.mkdir(exist_ok=True)
        try:
            run(["debootstrap", "--arch=amd64", f"--cache-dir={debs}",
                 "--include=" + ",".join(PACKAGES), SUITE, str(work), apt_mirror()],
                timeout=2400, env={"DEBIAN_FRONTEND": "noninteractive"})
            _configure_tree(work)
            part = tar.with_suffix(".part")
            run(["tar", "--numeric-owner", "--xattrs", "-C", str(work), "-cf", str(part), "."],
                timeout=900)
            part.rename(tar)
            _drop_stale(cache, "debian12-tree-", tree_key())
        finally:
            if work.exists():
                run(["rm", "-rf", "--one-file-system", str(work)], timeout=600)
    return tar


# ---------------------------------------------------------------------------------------
# Disks


@dataclass(frozen=True)
class _Layout:
    sfdisk: str
    root: tuple[int, int]  # offset, size of the partition holding root (PV for LVM)
    esp: tuple[int, int] | None = None
    swap: tuple[int, int] | None = None
    root_partition: int = 1


def _layout(kind: str) -> _Layout:
    last = DISK_SIZE - MiB  # keep the last MiB free (the backup GPT lives there)
    if kind == "mbr":
        return _Layout("label: dos\nlabel-id: 0xd15c0de1\nstart=2048, type=83, bootable\n",
                       (MiB, DISK_SIZE - MiB))
    if kind == "mbr-lvm":
        return _Layout("label: dos\nlabel-id: 0xd15c0de2\nstart=2048, type=8e, bootable\n",
                       (MiB, DISK_SIZE - MiB))
    if kind == "mbr-root-not-last":
        root = 1536 * MiB
        return _Layout("label: dos\nlabel-id: 0xd15c0de3\n"
                       f"start=2048, size={root // 512}, type=83, bootable\n"
                       f"start={(MiB + root) // 512}, type=82\n",
                       (MiB, root), swap=(MiB + root, DISK_SIZE - MiB - root))
    if kind == "gpt-uefi":
        esp = 128 * MiB
        return _Layout("label: gpt\nlabel-id: D15C0DE4-0000-4000-8000-000000000001\n"
                       f"start=2048, size={esp // 512}, type={ESP_GUID}, name=esp\n"
                       f"start={(MiB + esp) // 512}, size={(last - MiB - esp) // 512}, "
                       f"type={LINUX_GUID}, name=root\n",
                       (MiB + esp, last - MiB - esp), esp=(MiB, esp), root_partition=2)
    raise ValueError(kind)


@contextlib.contextmanager
def _loop(image: pathlib.Path, offset: int = 0, size: int | None = None) -> Iterator[str]:
    args = ["losetup", "-f", "--show", "--offset", str(offset)]
    if size is not None:
        args += ["--sizelimit", str(size)]
    dev = run([*args, str(image)], timeout=30).stdout.strip()
    try:
        yield dev
    finally:
        run(["losetup", "-d", dev], timeout=30, check=False)


@contextlib.contextmanager
def _mounted(dev: str, mnt: pathlib.Path, *opts: str) -> Iterator[pathlib.Path]:
    mnt.mkdir(parents=True, exist_ok=True)
    run(["mount", *opts, dev, str(mnt)], timeout=60)
    try:
        yield mnt
    finally:
        run(["umount", str(mnt)], timeout=120)


_LVM_CONFIG = ('devices {{ filter=["a|^{dev}$|","r|.*|"] use_devicesfile=0 '
               "obtain_device_list_from_udev=0 }} global {{ activation=0 }} "
               "backup {{ backup=0 archive=0 }} activation {{ udev_sync=0 udev_rules=0 }}")


def _lvm(dev: str, *args: str) -> str:
    return run(["lvm", args[0], "--config", _LVM_CONFIG.format(dev=dev), *args[1:]],
               timeout=60).stdout


def _make_lv(image: pathlib.Path, pv: tuple[int, int]) -> tuple[int, int]:
    """A PV over ``pv``, VG debian-vg, one linear LV ``root``; its byte range in ``image``."""
    with _loop(image, *pv) as dev:
        _lvm(dev, "pvcreate", "-q", dev)
        _lvm(dev, "vgcreate", "-q", VG, dev)
        _lvm(dev, "lvcreate", "-q", "-an", "--zero", "n", "-L", f"{LV_SIZE // MiB}M", "-n",
             LV, VG)
        pe_start = json.loads(_lvm(dev, "pvs", "--reportformat", "json", "--units", "b",
                                   "--nosuffix", "-o", "pe_start"))["report"][0]["pv"][0]
        seg = json.loads(_lvm(dev, "lvs", "--reportformat", "json", "--units", "b",
                              "--nosuffix", "-o", "lv_name,seg_pe_ranges,vg_extent_size"))
    lv = next(s for s in seg["report"][0]["lv"] if s["lv_name"] == LV)
    first = int(lv["seg_pe_ranges"].split(":")[1].split("-")[0])
    return pv[0] + int(pe_start["pe_start"]) + first * int(lv["vg_extent_size"]), LV_SIZE


@contextlib.contextmanager
def _chroot_mounts(root: pathlib.Path, nodes: dict[str, str], root_name: str,
                   uuid: str) -> Iterator[None]:
    """/proc, /sys and a private /dev (a tmpfs holding only the nodes the tools need, plus
    /dev/disk/by-uuid/UUID for grub-mkconfig's root=UUID= choice) in the chroot.
    ``nodes``: {name in the chroot: host loop device}. The loops get the names the guest
    will see (vda, vda1): grub-probe finds a device by its number, and grub-mkconfig's
    10_linux gives up on a root device called /dev/loopN."""
    mounted: list[pathlib.Path] = []
    try:
        for fstype, where in (("proc", "proc"), ("sysfs", "sys"), ("tmpfs", "dev")):
            target = root / where
            target.mkdir(exist_ok=True)
            run(["mount", "-t", fstype, fstype, str(target)], timeout=30)
            mounted.append(target)
        dev = root / "dev"
        for name, (major, minor) in {"null": (1, 3), "zero": (1, 5), "random": (1, 8),
                                     "urandom": (1, 9), "tty": (5, 0)}.items():
            os.mknod(dev / name, 0o20666, os.makedev(major, minor))
        for name, host in nodes.items():
            os.mknod(dev / name, 0o60660, os.stat(host).st_rdev)
        (dev / "disk/by-uuid").mkdir(parents=True)
        (dev / "disk/by-uuid" / uuid).symlink_to(f"../../{root_name}")
        (dev / "pts").mkdir()
        (dev / "shm").mkdir()
        yield
    finally:
        for target in reversed(mounted):
            run(["umount", "-l", str(target)], timeout=60, check=False)


def _fstab(v: Variant, lay: _Layout) -> str:
    opts = "errors=remount-ro" if v.fs == "ext4" else "defaults"
    if v.layout == "mbr-lvm":
        root = f"/dev/mapper/{VG.replace('-', '--')}-{LV}"
    elif v.fstab_root == "uuid":
        root = f"UUID={ROOT_UUID}"
    else:
        root = v.fstab_root
    lines = ["# /etc/fstab: static file system information.",
             "# <file system> <mount point> <type> <options> <dump> <pass>",
             f"{root} / {v.fs} {opts} 0 1"]
    if lay.esp:
        esp = f"{ESP_VOLID[:4]}-{ESP_VOLID[4:]}"
        lines.append(f"UUID={esp} /boot/efi vfat umask=0077 0 1")
    if lay.swap:
        lines.append(f"UUID={SWAP_UUID} none swap sw 0 0")
    if v.fstab_missing:
        lines.append(f"UUID={MISSING_UUID} /srv/data ext4 defaults 0 2")
    return "\n".join(lines) + "\n"


def _customise(root: pathlib.Path, v: Variant) -> None:
    """The variant's changes inside the installed system, then a new initramfs (made by
    update-initramfs in the chroot) and grub.cfg (grub-mkconfig in the chroot)."""
    default = root / "etc/default/grub"
    if not v.console:
        text = default.read_text()
        text = re.sub(r'^GRUB_CMDLINE_LINUX=.*$', 'GRUB_CMDLINE_LINUX=""', text, flags=re.M)
        text = re.sub(r'^GRUB_TERMINAL=.*$', 'GRUB_TERMINAL="console"', text, flags=re.M)
        default.write_text(text)
    if not v.cloud_init:
        _chroot(root, "dpkg --purge cloud-init")
    if v.initramfs_modules is not None:
        conf = root / "etc/initramfs-tools/initramfs.conf"
        conf.write_text(re.sub(r"^MODULES=.*$", "MODULES=list", conf.read_text(), flags=re.M))
        (root / "etc/initramfs-tools/modules").write_text("\n".join(v.initramfs_modules)
                                                            + "\n")
    if not v.lvm_hook:
        for hook in ("usr/share/initramfs-tools/hooks/lvm2",
                     "usr/share/initramfs-tools/scripts/local-top/lvm2",
                     "usr/share/initramfs-tools/scripts/local-block/lvm2"):
            with contextlib.suppress(FileNotFoundError):
                (root / hook).unlink()
    _chroot(root, "update-initramfs -u -k all", timeout=900)


def _grub_cfg(root: pathlib.Path, v: Variant) -> None:
    _chroot(root, "grub-mkconfig -o /boot/grub/grub.cfg", timeout=300)
    if v.layout == "mbr-lvm":
        cfg = root / "boot/grub/grub.cfg"
        mapper = f"/dev/mapper/{VG.replace('-', '--')}-{LV}"
        cfg.write_text(cfg.read_text().replace(f"root=UUID={ROOT_UUID}", f"root={mapper}"))


def _bios_core(root: pathlib.Path, v: Variant, image: pathlib.Path) -> None:
    """What grub-install --target=i386-pc does for a /boot on the disk it installs to: the
    modules in /boot/grub/i386-pc, a core.img made by the image's grub-mkimage with the
    prefix on the boot disk's partition (or LV) and the modules to read it, then boot.img +
    core.img written by grub-bios-setup (to the MBR and the gap after it)."""
    fsmod = "xfs" if v.fs == "xfs" else "ext2"
    if v.layout == "mbr-lvm":
        prefix = f"(lvm/{VG.replace('-', '--')}-{LV})/boot/grub"
        mods = ["biosdisk", "part_msdos", "lvm", fsmod]
    else:
        prefix = "(,msdos1)/boot/grub"
        mods = ["biosdisk", "part_msdos", fsmod]
    _chroot(root, "mkdir -p /boot/grub/i386-pc && cp /usr/lib/grub/i386-pc/*.mod "
                  "/usr/lib/grub/i386-pc/*.lst /usr/lib/grub/i386-pc/boot.img "
                  "/boot/grub/i386-pc/ && "
                  "grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img "
                  f"-p '{prefix}' {' '.join(mods)} && "
                  "grub-editenv /boot/grub/grubenv create")
    from sample_images.recipes._disk import _loop_mounted_dir

    with tempfile.TemporaryDirectory(prefix="diskkit-grub-") as t:
        tmp = pathlib.Path(t)
        # grub-bios-setup wants boot.img and core.img on a device in its device map.
        with _loop_mounted_dir(tmp) as (d, loop):
            for name in ("boot.img", "core.img"):
                shutil.copy(root / "boot/grub/i386-pc" / name, d / name)
            dmap = tmp / "device.map"
            dmap.write_text(f"(hd0) {image}\n(hd1) {loop}\n")
            run([str(root / "usr/lib/grub/i386-pc/grub-bios-setup"), "-d", str(d), "-m",
                 str(dmap), "--skip-fs-probe", str(image)], timeout=120)


def _efi_core(root: pathlib.Path, image: pathlib.Path, esp: tuple[int, int]) -> None:
    """What grub-install --target=x86_64-efi --removable does with /boot on another
    filesystem than the ESP: modules in /boot/grub/x86_64-efi, a core image whose embedded
    config finds /boot/grub by the root filesystem's UUID, as \\EFI\\BOOT\\BOOTX64.EFI on a
    FAT32 ESP (mkfs.vfat + mtools: no mount)."""
    (root / "boot/efi").mkdir(parents=True, exist_ok=True)
    (root / "boot/grub/load.cfg").write_text(
        f"search.fs_uuid {ROOT_UUID} root hd0,gpt2\nset prefix=($root)'/boot/grub'\n")
    _chroot(root, "mkdir -p /boot/grub/x86_64-efi && cp /usr/lib/grub/x86_64-efi/*.mod "
                  "/usr/lib/grub/x86_64-efi/*.lst /boot/grub/x86_64-efi/ && "
                  "grub-mkimage -O x86_64-efi -o /boot/grub/x86_64-efi/core.efi "
                  "-c /boot/grub/load.cfg -p '' part_gpt ext2 search_fs_uuid && "
                  "grub-editenv /boot/grub/grubenv create")
    with tempfile.TemporaryDirectory(prefix="diskkit-esp-") as t:
        fat = pathlib.Path(t) / "esp.img"
        run(["truncate", "-s", str(esp[1]), str(fat)], timeout=10)
        run(["mkfs.vfat", "-F", "32", "-n", "EFI", "-i", ESP_VOLID, str(fat)], timeout=60)
        for d in ("::/EFI", "::/EFI/BOOT"):
            run(["mmd", "-i", str(fat), d], timeout=10)
        run(["mcopy", "-i", str(fat), str(root / "boot/grub/x86_64-efi/core.efi"),
             "::/EFI/BOOT/BOOTX64.EFI"], timeout=30)
        run(["dd", f"if={fat}", f"of={image}", "bs=1M", f"seek={esp[0]}", "oflag=seek_bytes",
             "conv=notrunc,sparse", "status=none"], timeout=120)


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as XFS checksums its metadata."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _xfs_set_incompat(image: pathlib.Path, offset: int, bit: int) -> None:
    """Set an incompat feature bit in the XFS primary superblock at ``offset`` and recompute
    its CRC (xfs_db refuses to write bits its own xfsprogs does not know)."""
    with open(image, "r+b") as f:
        f.seek(offset)
        sb = bytearray(f.read(512))
        if sb[:4] != b"XFSB":
            raise ValueError("no XFS superblock at the root offset")
        incompat = int.from_bytes(sb[216:220], "big") | bit
        sb[216:220] = incompat.to_bytes(4, "big")
        sectsize = int.from_bytes(sb[102:104], "big")
        f.seek(offset)
        sector = bytearray(f.read(sectsize))
        sector[:512] = sb
        sector[224:228] = b"\0\0\0\0"
        sector[224:228] = _crc32c(bytes(sector)).to_bytes(4, "little")
        f.seek(offset)
        f.write(sector)


def build_image(name: str, cache: pathlib.Path | None = None) -> pathlib.Path:
    """The qcow2 of variant ``name`` (see :data:`VARIANTS`), built once and cached."""
    v = VARIANTS[name]
    cache = cache or cache_dir()
    out = cache / f"debian12-{name}-{image_key()}.qcow2"
    if out.exists():
        return out
    tar = build_tree(cache)
    with _locked(cache / f"debian-{name}.lock"):
        if out.exists():
            return out
        with tempfile.TemporaryDirectory(prefix=f"build-{name}-", dir=cache) as t:
            tmp = pathlib.Path(t)
            raw = tmp / "disk.raw"
            run(["truncate", "-s", str(DISK_SIZE), str(raw)], timeout=10)
            lay = _layout(v.layout)
            run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(raw)],
                input=lay.sfdisk, timeout=30)
            root_region = _make_lv(raw, lay.root) if v.layout == "mbr-lvm" else lay.root
            if lay.swap:
                with _loop(raw, *lay.swap) as dev:
                    run(["mkswap", "-U", SWAP_UUID, dev], timeout=60)
            with _loop(raw) as disk, _loop(raw, *root_region) as part:
                if v.fs == "xfs":
                    run(["mkfs.xfs", "-q", "-f", "-m", f"uuid={ROOT_UUID}", part],
                        timeout=120)
                else:
                    run(["mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, part], timeout=120)
                mnt = tmp / "mnt"
                # grub-probe (in the chroot) names the root by the source in mountinfo:
                # mount it from a node whose path exists in the chroot too.
                root_name = f"vda{lay.root_partition}"
                nodes = pathlib.Path(tempfile.mkdtemp(prefix="diskkit-dev-", dir="/tmp"))
                source = nodes / root_name
                os.mknod(source, 0o60600, os.stat(part).st_rdev)
                try:
                    with _mounted(str(source), mnt):
                        run(["tar", "--numeric-owner", "--xattrs", "-C", str(mnt), "-xf",
                             str(tar)], timeout=900)
                        (mnt / "etc/fstab").write_text(_fstab(v, lay))
                        inner = mnt / str(nodes).lstrip("/")
                        inner.mkdir(parents=True)
                        os.mknod(inner / root_name, 0o60600, os.stat(part).st_rdev)
                        with _chroot_mounts(mnt, {"vda": disk, root_name: part}, root_name,
                                            ROOT_UUID):
                            _customise(mnt, v)
                            _grub_cfg(mnt, v)
                            facts = _tree_facts(mnt)
                            if lay.esp:
                                _efi_core(mnt, raw, lay.esp)
                        shutil.rmtree(inner)
                        if not lay.esp:
                            _bios_core(mnt, v, raw)
                        run(["sync"], timeout=120)
                finally:
                    shutil.rmtree(nodes)
                if v.post == "uuid-changed":
                    run(["tune2fs", "-U", CHANGED_UUID, part], timeout=60)
            if v.post == "xfs-exchrange":
                _xfs_set_incompat(raw, root_region[0], XFS_INCOMPAT_EXCHRANGE)
            facts["blkid"] = _blkid(raw, {"root": root_region, "esp": lay.esp,
                                          "swap": lay.swap})
            facts["root_offset"] = root_region[0]
            part_out = tmp / "out.qcow2"
            run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw),
                 str(part_out)], timeout=900)
            shutil.move(str(part_out), out)
            out.with_suffix(".json").write_text(json.dumps(
                {"variant": asdict(v), "facts": facts}, indent=1, sort_keys=True))
        _drop_stale(cache, f"debian12-{name}-", image_key())
    return out


def _drop_stale(cache: pathlib.Path, prefix: str, key: str) -> None:
    """Remove what older versions of this recipe left for the same variant (the cache would
    otherwise grow by 700 MB per variant at each change)."""
    for f in cache.glob(f"{prefix}*"):
        rest = f.name[len(prefix):]
        if re.fullmatch(r"[0-9a-f]{12}(\.[a-z0-9.]+)", rest) and not rest.startswith(key):
            f.unlink(missing_ok=True)


def facts_of(image: pathlib.Path) -> dict[str, Any]:
    """The ground truth recorded when ``image`` was built (see :func:`_tree_facts`)."""
    return dict(json.loads(image.with_suffix(".json").read_text())["facts"])


def _tree_facts(root: pathlib.Path) -> dict[str, Any]:
    """What the installed system holds, read by Debian's own tools in the chroot (not by
    diskkit): kernels, each initramfs's file list (lsinitramfs) and compression, the kernel
    command lines of grub.cfg, fstab, os-release, hostname, the dpkg package count."""
    kernels = sorted(p.name[len("vmlinuz-"):] for p in (root / "boot").glob("vmlinuz-*"))
    initramfs: dict[str, Any] = {}
    for initrd in sorted((root / "boot").glob("initrd.img-*")):
        listing = _chroot(root, f"lsinitramfs /boot/{initrd.name}", timeout=300)
        modules = sorted({re.sub(r"\.ko(\.[a-z]+)?$", "", line.rsplit("/", 1)[-1])
                          for line in listing.splitlines() if re.search(r"\.ko(\.\w+)?$", line)})
        programs = sorted({line.rsplit("/", 1)[-1] for line in listing.splitlines()
                           if re.search(r"(^|/)s?bin/[^/]+$", line)})
        initramfs[initrd.name] = {"magic": initrd.read_bytes()[:6].hex(), "modules": modules,
                                  "programs": programs, "files": len(listing.splitlines())}
    cfg = (root / "boot/grub/grub.cfg").read_text()
    return {
        "kernels": kernels,
        "initramfs": initramfs,
        "grub_linux_lines": [ln.strip() for ln in cfg.splitlines()
                             if ln.strip().startswith("linux")],
        "fstab": (root / "etc/fstab").read_text(),
        "os_release": (root / "etc/os-release").read_text()
        if (root / "etc/os-release").is_file() and not (root / "etc/os-release").is_symlink()
        else (root / "usr/lib/os-release").read_text(),
        "hostname": (root / "etc/hostname").read_text().strip(),
        "packages": sum(1 for ln in _chroot(root, "dpkg-query -W -f='${db:Status-Abbrev}\\n'")
                        .splitlines() if ln.startswith("ii")),
        "cloud_init": (root / "usr/bin/cloud-init").exists(),
        "modules_builtin": sorted(
            re.sub(r"\.ko$", "", ln.rsplit("/", 1)[-1])
            for k in kernels
            for ln in (root / f"lib/modules/{k}/modules.builtin").read_text().splitlines()),
    }


def _blkid(raw: pathlib.Path, regions: dict[str, tuple[int, int] | None],
           ) -> dict[str, dict[str, str]]:
    """util-linux blkid's low-level probe (-p) of each region of the finished disk."""
    out: dict[str, dict[str, str]] = {}
    for name, region in regions.items():
        if region is None:
            continue
        res = run(["blkid", "-p", "-O", str(region[0]), "-S", str(region[1]), "-o", "export",
                   str(raw)], timeout=60, check=False)
        out[name] = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    return out


def main(argv: list[str]) -> int:
    """``python -m sample_images.recipes.debian [VARIANT...]``: build and print the paths."""
    for name in argv or ["base"]:
        print(build_image(name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
