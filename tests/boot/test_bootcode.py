"""Boot code identification against sectors written by the real tools: syslinux's MBRs,
isohybrid MBRs, libparted, GRUB's boot.img, syslinux --install and mkfs.vfat boot sectors."""

from __future__ import annotations

import os
import pathlib

import pytest

from diskkit.boot import inspect_boot
from diskkit.boot.bootcode import identify
from diskkit.readers.raw import FileReader
from diskkit.runner import run
from tests.boot.conftest import dd, sfdisk_partitions

SYSLINUX_MBR = pathlib.Path("/usr/lib/syslinux/mbr")
ISOLINUX = pathlib.Path("/usr/lib/ISOLINUX")
GRUB_PC = pathlib.Path("/usr/lib/grub/i386-pc")


def _disk(tmp: pathlib.Path, code: pathlib.Path | None) -> pathlib.Path:
    """A partitioned 8 MiB disk (sfdisk) with the first 440 bytes of ``code`` dd'd on it,
    as syslinux's documentation says to install mbr.bin (dd bs=440 count=1 conv=notrunc)."""
    img = tmp / "disk.img"
    run(["truncate", "-s", "8M", str(img)], timeout=10)
    run(["sfdisk", "-q", str(img)], input="label: dos\nstart=2048, type=c, bootable\n",
        timeout=30)
    if code is not None:
        run(["dd", f"if={code}", f"of={img}", "bs=440", "count=1", "conv=notrunc",
             "status=none"], timeout=10)
    return img


@pytest.mark.parametrize(("source", "loader", "words"), [
    (SYSLINUX_MBR / "mbr.bin", "syslinux", "mbr.bin"),
    (SYSLINUX_MBR / "gptmbr.bin", "syslinux", "gptmbr.bin"),
    (SYSLINUX_MBR / "altmbr.bin", "syslinux", "altmbr.bin"),
    (ISOLINUX / "isohdpfx.bin", "isohybrid", "isohybrid"),
    (ISOLINUX / "isohdppx.bin", "isohybrid", "partition support"),
    (GRUB_PC / "boot.img", "grub2", "GRUB 2"),
    (None, "none", "no boot code"),
])
def test_mbr_code_written_by_tools(tmp_path, source, loader, words):
    img = _disk(tmp_path, source)
    with FileReader(str(img)) as r:
        code = identify(r.read(0, 512))
    assert code.loader == loader and words in code.description
    assert code.signature  # sfdisk wrote 55 AA
    assert code.code_zero == (source is None)


def test_libparted_mbr(tmp_path):
    img = tmp_path / "p.img"
    run(["truncate", "-s", "8M", str(img)], timeout=10)
    run(["parted", "-s", str(img), "mklabel", "msdos"], timeout=30)
    with FileReader(str(img)) as r:
        assert identify(r.read(0, 512)).loader == "libparted"


def test_unknown_code_hash_matches_sha256sum(tmp_path):
    img = _disk(tmp_path, None)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x90\x90" + os.urandom(438))
    run(["dd", f"if={junk}", f"of={img}", "conv=notrunc", "status=none"], timeout=10)
    want = run(["sh", "-c", f"head -c 440 {img} | sha256sum"], timeout=10).stdout.split()[0]
    with FileReader(str(img)) as r:
        code = identify(r.read(0, 512))
    assert code.loader == "unknown" and code.sha256 == want


@pytest.mark.parametrize(("mkfs", "loader"), [("syslinux", "syslinux"),
                                               ("mkfs.vfat", "mkfs-fat-stub"),
                                               ("mkfs.ext4", "none")])
def test_partition_boot_sectors(tmp_path, mkfs, loader):
    img = _disk(tmp_path, SYSLINUX_MBR / "mbr.bin")
    parts, table = sfdisk_partitions(img)
    fs = tmp_path / "fs.img"
    if mkfs == "mkfs.ext4":
        run(["mkfs.ext4", "-q", "-F", str(fs), "4M"], timeout=60)
    else:
        run(["mkfs.vfat", "-C", str(fs), "4096"], timeout=30)
        if mkfs == "syslinux":
            run(["syslinux", "--install", str(fs)], timeout=60)
    dd(fs, img, parts[0].start)
    with FileReader(str(img)) as r:
        info = inspect_boot(r, partitions=parts, table=table)
    assert info.mbr.loader == "syslinux"
    (vbr,) = info.vbrs
    assert (vbr.where, vbr.offset, vbr.loader) == ("partition 1", parts[0].start, loader)
    if mkfs == "syslinux":
        assert "4.03 or later" in vbr.description  # syslinux 6.04 on Debian 12


def test_identify_never_fails_on_garbage():
    for n in (0, 1, 100, 511, 512, 4096):
        for _ in range(50):
            code = identify(os.urandom(n))
            assert code.loader and len(code.sha256) == 64
            identify(os.urandom(n), vbr=True)
