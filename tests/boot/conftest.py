"""Real images for the boot tests, built at test time with grub-mkimage, grub-bios-setup,
sfdisk/sgdisk, mkfs, mtools, syslinux and xorriso. Expensive ones are session-scoped."""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
from collections.abc import Iterator

import pytest

from diskkit.layout.model import Partition
from diskkit.runner import run

GRUB_PC = pathlib.Path("/usr/lib/grub/i386-pc")
GRUB_BIOS_SETUP = str(GRUB_PC / "grub-bios-setup")
MiB = 1 << 20


def sfdisk_partitions(img: pathlib.Path) -> tuple[list[Partition], str]:
    """Partitions of ``img`` as ``sfdisk --json`` gives them (the independent source)."""
    data = json.loads(run(["sfdisk", "--json", str(img)], timeout=30).stdout)["partitiontable"]
    ss = data.get("sectorsize", 512)
    out = []
    for p in data.get("partitions", []):
        number = int(p["node"][len(str(img)):])
        t = p["type"]
        t = f"0x{int(t, 16):02x}" if len(t) <= 2 else t.upper()
        kind = "extended" if t in ("0x05", "0x0f", "0x85") else "primary"
        if data["label"] == "dos" and number >= 5:
            kind = "logical"
        out.append(Partition(number, p["start"] * ss, p["size"] * ss, t,
                             bootable=bool(p.get("bootable")), kind=kind))
    return out, {"dos": "mbr", "gpt": "gpt"}[data["label"]]


def dd(src: pathlib.Path, dst: pathlib.Path, offset: int) -> None:
    """Copy ``src`` into ``dst`` at byte ``offset`` (dd conv=notrunc)."""
    run(["dd", f"if={src}", f"of={dst}", "bs=512", f"seek={offset // 512}", "conv=notrunc",
         "status=none"], timeout=60)


def mkfs_ext(img: pathlib.Path, offset: int, size: int, root: pathlib.Path | None,
             fstype: str = "ext4") -> None:
    """mkfs.ext* inside ``img`` at ``offset`` (-E offset), populated from ``root`` (-d)."""
    args = [f"mkfs.{fstype}", "-q", "-F", "-E", f"offset={offset}"]
    if root is not None:
        args += ["-d", str(root)]
    run([*args, str(img), f"{size // 1024}k"], timeout=120)


@contextlib.contextmanager
def grub_dir(tmp: pathlib.Path, core: pathlib.Path) -> Iterator[pathlib.Path]:
    """A directory holding boot.img and core.img on a loop-mounted scratch ext2 filesystem:
    grub-bios-setup insists on finding the device its directory lives on in its device map."""
    aux = tmp / "aux.img"
    run(["truncate", "-s", "4M", str(aux)], timeout=10)
    run(["mkfs.ext2", "-q", "-F", str(aux)], timeout=30)
    mnt = tmp / "auxmnt"
    mnt.mkdir(exist_ok=True)
    loop = run(["losetup", "-f", "--show", str(aux)], timeout=30).stdout.strip()
    try:
        run(["mount", loop, str(mnt)], timeout=30)
        try:
            shutil.copy(GRUB_PC / "boot.img", mnt / "boot.img")
            shutil.copy(core, mnt / "core.img")
            yield mnt
        finally:
            run(["umount", str(mnt)], timeout=30)
    finally:
        run(["losetup", "-d", loop], timeout=30)


def grub_install(tmp: pathlib.Path, img: pathlib.Path, prefix: str, modules: list[str],
                 extra: tuple[str, ...] = ()) -> pathlib.Path:
    """grub-mkimage a core.img with ``prefix`` and ``modules``, grub-bios-setup it onto
    ``img``. Returns the core.img file (to compare with what is read back)."""
    core = tmp / "core.img"
    run(["grub-mkimage", "-O", "i386-pc", "-p", prefix, "-o", str(core), *extra, *modules],
        timeout=60)
    with grub_dir(tmp, core) as d:
        dmap = tmp / "device.map"
        loop = run(["findmnt", "-n", "-o", "SOURCE", str(d)], timeout=10).stdout.strip()
        dmap.write_text(f"(hd0) {img}\n(hd1) {loop}\n")
        run([GRUB_BIOS_SETUP, "-d", str(d), "-m", str(dmap), "--skip-fs-probe", str(img)],
            timeout=60)
    return core


def grub_tree(root: pathlib.Path, cfg: str | None, with_modules: bool = True) -> None:
    """/boot/grub (grub.cfg and the i386-pc modules) under ``root``."""
    g = root / "boot" / "grub"
    (g / "i386-pc").mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        (g / "grub.cfg").write_text(cfg)
    if with_modules:
        for m in GRUB_PC.glob("*.mod"):
            shutil.copy(m, g / "i386-pc" / m.name)
        for m in GRUB_PC.glob("*.lst"):
            shutil.copy(m, g / "i386-pc" / m.name)


GRUB_CFG = ("serial --unit=0 --speed=115200\nterminal_output serial\n"
            "echo DISKKIT-GRUB-CFG-OK\nhalt\n")


@pytest.fixture(scope="session")
def msdos_base(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A 64 MiB MBR disk: p1 ext4 with /boot/grub (grub.cfg + modules), p2 ext2 empty,
    logical p5 in an extended p3. No boot code yet."""
    tmp = tmp_path_factory.mktemp("msdos")
    img = tmp / "base.img"
    run(["truncate", "-s", "64M", str(img)], timeout=10)
    run(["sfdisk", "-q", str(img)], input=(
        "label: dos\nstart=2048, size=40960, type=83, bootable\n"
        "start=43008, size=20480, type=83\nstart=63488, type=5\n"
        "start=65536, size=20480, type=83\n"), timeout=30)
    root = tmp / "root"
    grub_tree(root, GRUB_CFG)
    mkfs_ext(img, 2048 * 512, 40960 * 512, root)
    mkfs_ext(img, 43008 * 512, 20480 * 512, None, "ext2")
    return img
