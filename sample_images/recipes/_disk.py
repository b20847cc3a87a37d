"""Helpers for the boot samples: partitioned disks, filesystems filled from a folder, GRUB 2
for BIOS written by grub-bios-setup, a FAT ESP, all on image files (no mount of the disk
itself; grub-bios-setup only needs its own folder on a scratch loop-mounted filesystem)."""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

from diskkit.runner import run

MiB = 1 << 20
GRUB_PC = pathlib.Path("/usr/lib/grub/i386-pc")
#: grub-bios-setup is not on PATH in Debian (grub-pc-bin ships it here).
GRUB_BIOS_SETUP = str(GRUB_PC / "grub-bios-setup")
#: What a sample's grub.cfg prints: boot-test sees it on the screen ("boot loader reached").
MARKER = "DISKKIT-BOOT-OK"
#: For GRUB for BIOS: the serial console too (normal mode clears the VGA screen after it).
GRUB_CFG = (f"serial --unit=0 --speed=115200\nterminal_output --append serial\n"
            f"echo {MARKER}\n")
#: For GRUB for UEFI: OVMF already copies its console to the serial port.
GRUB_EFI_CFG = f"echo {MARKER}\n"


def blank(path: pathlib.Path, size: int) -> None:
    """A sparse file of ``size`` bytes."""
    run(["truncate", "-s", str(size), str(path)], timeout=10)


def partition(path: pathlib.Path, script: str) -> None:
    """Write a partition table with sfdisk (its script syntax)."""
    run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(path)], input=script,
        timeout=30)


def mkfs_ext(img: pathlib.Path, offset: int, size: int, root: pathlib.Path | None,
             fstype: str = "ext2") -> None:
    """mkfs.ext* inside ``img`` at byte ``offset`` (-E offset), filled from ``root`` (-d)."""
    args = [f"mkfs.{fstype}", "-q", "-F", "-E", f"offset={offset}"]
    if root is not None:
        args += ["-d", str(root)]
    run([*args, str(img), f"{size // 1024}k"], timeout=120)


def grub_tree(root: pathlib.Path, cfg: str | None = GRUB_CFG) -> None:
    """``/boot/grub`` under ``root``: grub.cfg and the i386-pc modules normal mode needs."""
    g = root / "boot" / "grub"
    (g / "i386-pc").mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        (g / "grub.cfg").write_text(cfg)
    for pattern in ("*.mod", "*.lst"):
        for m in GRUB_PC.glob(pattern):
            shutil.copy(m, g / "i386-pc" / m.name)


@contextlib.contextmanager
def _loop_mounted_dir(tmp: pathlib.Path) -> Iterator[tuple[pathlib.Path, str]]:
    """A scratch ext2 filesystem, loop-mounted: grub-bios-setup wants the folder holding
    boot.img and core.img to live on a device it finds in its device map."""
    aux = tmp / "aux.img"
    blank(aux, 4 * MiB)
    run(["mkfs.ext2", "-q", "-F", str(aux)], timeout=30)
    mnt = tmp / "mnt"
    mnt.mkdir()
    loop = run(["losetup", "-f", "--show", str(aux)], timeout=30).stdout.strip()
    try:
        run(["mount", loop, str(mnt)], timeout=30)
        try:
            yield mnt, loop
        finally:
            run(["umount", str(mnt)], timeout=30)
    finally:
        run(["losetup", "-d", loop], timeout=30)


def grub_install(img: pathlib.Path, prefix: str, modules: list[str]) -> None:
    """grub-mkimage a core.img (i386-pc) with ``prefix`` and ``modules``, then
    grub-bios-setup writes boot.img to sector 0 and core.img to the MBR gap or the GPT BIOS
    boot partition of ``img``."""
    with tempfile.TemporaryDirectory(prefix="diskkit-grub-") as t:
        tmp = pathlib.Path(t)
        core = tmp / "core.img"
        run(["grub-mkimage", "-O", "i386-pc", "-p", prefix, "-o", str(core), *modules],
            timeout=60)
        with _loop_mounted_dir(tmp) as (d, loop):
            shutil.copy(GRUB_PC / "boot.img", d / "boot.img")
            shutil.copy(core, d / "core.img")
            dmap = tmp / "device.map"
            dmap.write_text(f"(hd0) {img}\n(hd1) {loop}\n")
            run([GRUB_BIOS_SETUP, "-d", str(d), "-m", str(dmap), "--skip-fs-probe",
                 str(img)], timeout=60)


def dd(src: pathlib.Path, dst: pathlib.Path, offset: int) -> None:
    """Copy ``src`` into ``dst`` at byte ``offset`` without truncating ``dst``."""
    run(["dd", f"if={src}", f"of={dst}", "bs=1M", f"seek={offset}", "oflag=seek_bytes",
         "conv=notrunc,sparse", "status=none"], timeout=120)


def fat_esp(path: pathlib.Path, size: int, files: dict[str, pathlib.Path]) -> None:
    """A FAT filesystem image holding ``files`` ({"/EFI/BOOT/BOOTX64.EFI": source})."""
    blank(path, size)
    run(["mkfs.vfat", "-n", "ESP", str(path)], timeout=30)
    made: set[str] = set()
    for dest in files:
        parts = dest.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in made:
                run(["mmd", "-i", str(path), "::" + d], timeout=10)
                made.add(d)
    for dest, src in files.items():
        run(["mcopy", "-i", str(path), str(src), "::" + dest], timeout=30)
