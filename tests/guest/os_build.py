"""Build guest trees, initramfs images, grub.cfg files and disks at test time with the real
tools (cpio, gzip/zstd/xz/lz4/bzip2/lzma, GRUB's own grub.d scripts, grub-editenv,
mkfs.ext4 -d, sfdisk), for the guest OS tests."""

from __future__ import annotations

import os
import pathlib
import shutil

from diskkit.runner import run

COMPRESSORS = {
    "gzip": ["gzip", "-c", "-9"],
    "zstd": ["zstd", "-q", "-c", "-19"],
    "xz": ["xz", "-c", "--check=crc32"],
    "lz4": ["lz4", "-l", "-c", "-q"],
    "bzip2": ["bzip2", "-c"],
    "lzma": ["lzma", "-c"],
}


def cpio_newc(tree: pathlib.Path) -> bytes:
    """A cpio newc archive of ``tree`` made by the real cpio (as initramfs-tools does)."""
    return run(["sh", "-c", "find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0"],
               cwd=str(tree), binary=True, timeout=120).stdout


def compress(data: bytes, kind: str) -> bytes:
    """``data`` compressed by the real tool for ``kind``."""
    return run(COMPRESSORS[kind], input=data, binary=True, timeout=120).stdout


def make_initramfs(path: pathlib.Path, version: str, modules: list[str], *,
                   compression: str | None = "zstd", microcode: bool = True,
                   extra_files: dict[str, bytes] | None = None) -> pathlib.Path:
    """An initramfs like initramfs-tools builds: an optional uncompressed early-microcode
    archive, then the main archive (modules under usr/lib/modules/VERSION) compressed."""
    work = path.parent / (path.name + ".d")
    shutil.rmtree(work, ignore_errors=True)
    main = work / "main"
    moddir = main / "usr/lib/modules" / version / "kernel/drivers"
    moddir.mkdir(parents=True)
    for m in modules:
        (moddir / m).parent.mkdir(parents=True, exist_ok=True)
        (moddir / m).write_bytes(b"\x7fELF fake module " + m.encode())
    for name, data in (extra_files or {}).items():
        f = main / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    (main / "scripts").mkdir(exist_ok=True)
    (main / "init").write_text("#!/bin/sh\n")
    body = cpio_newc(main)
    if compression:
        body = compress(body, compression)
    out = b""
    if microcode:
        mc = work / "early" / "kernel/x86/microcode"
        mc.mkdir(parents=True)
        (mc / "GenuineIntel.bin").write_bytes(b"\0" * 1000)
        out = cpio_newc(work / "early")
    path.write_bytes(out + body)
    shutil.rmtree(work)
    return path


def grub_mkconfig(env: dict[str, str]) -> str:
    """grub.cfg as grub-mkconfig writes it: GRUB's own /etc/grub.d/00_header and 10_linux run
    with the variables grub-mkconfig exports (``env``); the kernels are this host's /boot."""
    base = {"GRUB_DISTRIBUTOR": "Debian", "GRUB_TIMEOUT": "5", "pkgdatadir": "/usr/share/grub",
            "grub_probe": "/bin/false"}
    base.update(env)
    script = "sh /etc/grub.d/00_header && sh /etc/grub.d/10_linux"
    return run(["sh", "-c", script], env=base, timeout=120).stdout


def host_kernel() -> str:
    """The version of a kernel installed in this host's /boot (grub.d scripts list those)."""
    names = sorted(n for n in os.listdir("/boot") if n.startswith("vmlinuz-"))
    return names[-1][len("vmlinuz-"):]


def grub_editenv(path: pathlib.Path, **values: str) -> pathlib.Path:
    """A grubenv made by the real grub-editenv."""
    run(["grub-editenv", str(path), "create"], timeout=30)
    if values:
        run(["grub-editenv", str(path), "set", *[f"{k}={v}" for k, v in values.items()]],
            timeout=30)
    return path


def dpkg_status_sample(n: int) -> str:
    """The first ``n`` paragraphs of this host's real dpkg status file."""
    paras = pathlib.Path("/var/lib/dpkg/status").read_text().split("\n\n")
    return "\n\n".join(p for p in paras[:n] if p.strip()) + "\n"


def write(root: pathlib.Path, rel: str, text: str | bytes) -> pathlib.Path:
    """Write ``root``/``rel`` (parents made)."""
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def link(root: pathlib.Path, rel: str, target: str) -> None:
    """A symlink ``root``/``rel`` -> ``target`` (stored as given)."""
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, p)


def debian_tree(root: pathlib.Path, *, hostname: str = "guest1",
                version: str = "6.1.0-99-cloud-amd64", packages: int = 40,
                cloud_init: bool = True) -> pathlib.Path:
    """A small Debian-like root: this host's real /etc/os-release and dash binary, part of its
    real dpkg status, a kernel with an initramfs made by cpio+zstd, cloud-init config, units
    enabled by symlinks the way deb-systemd-helper makes them."""
    write(root, "etc/os-release", pathlib.Path("/etc/os-release").read_text())
    write(root, "etc/debian_version", pathlib.Path("/etc/debian_version").read_text())
    write(root, "etc/hostname", f"{hostname}\n")
    write(root, "usr/bin/dash", pathlib.Path("/usr/bin/dash").read_bytes())
    link(root, "bin", "usr/bin")
    link(root, "usr/bin/sh", "dash")
    write(root, "usr/bin/apt-get", b"")
    write(root, "var/lib/dpkg/status", dpkg_status_sample(packages))
    write(root, f"boot/vmlinuz-{version}", b"MZ fake kernel")
    make_initramfs(root / f"boot/initrd.img-{version}", version,
                   ["block/virtio_blk.ko", "scsi/virtio_scsi.ko", "fs/ext4.ko",
                    "md/dm-mod.ko"])
    write(root, f"usr/lib/modules/{version}/modules.builtin",
          "kernel/drivers/ata/ahci.ko\nkernel/fs/xfs/xfs.ko\nkernel/crypto/sha256.ko\n")
    link(root, "lib", "usr/lib")
    write(root, "etc/initramfs-tools/initramfs.conf", "# conf\nMODULES=dep\nBUSYBOX=auto\n")
    write(root, "etc/fstab", "# /etc/fstab\nUUID=11111111-2222-3333-4444-555555555555 / ext4 "
          "errors=remount-ro 0 1\n")
    write(root, "usr/sbin/sshd", b"")
    write(root, "lib/systemd/system/ssh.service", "[Unit]\n")
    link(root, "etc/systemd/system/multi-user.target.wants/ssh.service",
         "/lib/systemd/system/ssh.service")
    link(root, "etc/systemd/system/sshd.service", "/lib/systemd/system/ssh.service")
    if cloud_init:
        write(root, "usr/bin/cloud-init", b"")
        write(root, "etc/cloud/cloud.cfg", "cloud_init_modules:\n - seed_random\n - growpart\n"
              " - resizefs\ndatasource_list: [ NoCloud, ConfigDrive, OpenStack, None ]\n")
        write(root, "etc/cloud/cloud.cfg.d/90_dpkg.cfg",
              "# to update this file, run dpkg-reconfigure cloud-init\n"
              "datasource_list: [ NoCloud, OpenStack, None ]\n")
        for unit in ("cloud-init-local.service", "cloud-init.service", "cloud-config.service",
                     "cloud-final.service"):
            write(root, f"lib/systemd/system/{unit}", "[Unit]\n")
            link(root, f"etc/systemd/system/cloud-init.target.wants/{unit}",
                 f"/lib/systemd/system/{unit}")
        write(root, "usr/bin/growpart", b"")
    return root
