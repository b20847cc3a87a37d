"""Labels and UUIDs of guest filesystems exactly as util-linux's ``blkid -p`` reports them,
on images built at test time: a FAT label from the root directory's volume entry over the boot
sector's, an ISO's Joliet label merged with the primary descriptor's, UDF's logical volume
identifier; both through :func:`open_filesystem` and the layout probe."""

from __future__ import annotations

import os
import pathlib
import struct

import pytest

from diskkit.errors import HostError
from diskkit.guest.fs import open_filesystem
from diskkit.layout.filesystems import probe
from diskkit.readers.raw import FileReader
from diskkit.runner import run, which

pytestmark = pytest.mark.skipif(not which("blkid"), reason="blkid needed")


def blkid(img: pathlib.Path, tag: str) -> str | None:
    out = run(["blkid", "-p", "-o", "value", "-s", tag, str(img)], timeout=30,
              check=False).stdout
    return out.rstrip("\n") or None


def _check(img: pathlib.Path, fstype: str, readable: bool = True) -> None:
    want = (blkid(img, "TYPE"), blkid(img, "LABEL"), blkid(img, "UUID"))
    with FileReader(str(img)) as r:
        p = probe(r)
        assert p is not None
        assert (p.type, p.label, p.uuid) == want
        assert p.type == fstype
        if readable:
            with open_filesystem(r) as fs:
                assert (fs.fstype, fs.label, fs.uuid) == want


def _tree(tmp: pathlib.Path) -> pathlib.Path:
    src = tmp / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_bytes(b"guest\n")
    return src


@pytest.mark.parametrize("bits", [12, 16, 32])
def test_fat_label_from_the_root_directory(tmp_path, bits) -> None:
    if not which("mlabel"):
        pytest.skip("mtools needed")
    img = tmp_path / "fat.img"
    size_kib = {12: 2048, 16: 32768, 32: 65536}[bits]
    run(["mkfs.vfat", "-C", "-F", str(bits), "-n", "BOOTLBL", str(img), str(size_kib)],
        timeout=60)
    run(["mlabel", "-i", str(img), "::RootLabel"], timeout=30)
    # mlabel writes both; put the boot sector's back, so the two differ.
    at = 71 if bits == 32 else 43
    with open(img, "r+b") as f:
        f.seek(at)
        f.write(b"BOOTLBL    ")
    assert blkid(img, "LABEL_FATBOOT") == "BOOTLBL"
    assert blkid(img, "LABEL") == "ROOTLABEL"
    _check(img, "vfat")


def test_fat_no_name_and_no_root_label(tmp_path) -> None:
    img = tmp_path / "fat.img"
    run(["mkfs.vfat", "-C", "-F", "16", str(img), "32768"], timeout=60)
    assert blkid(img, "LABEL") is None
    _check(img, "vfat")


@pytest.mark.parametrize("kind", ["ext4", "xfs", "ntfs", "btrfs"])
def test_linux_and_ntfs_labels(tmp_path, kind) -> None:
    if not which(f"mkfs.{kind}") and not (kind == "ntfs" and which("mkntfs")):
        pytest.skip(f"mkfs.{kind} needed")
    img = tmp_path / f"{kind}.img"
    run(["truncate", "-s", "320M", str(img)], timeout=10)
    label = {"ext4": "root-fs", "xfs": "xfsroot", "ntfs": "Windows Data", "btrfs": "btr"}[kind]
    argv = {"ext4": ["mkfs.ext4", "-q", "-F", "-L", label],
            "xfs": ["mkfs.xfs", "-q", "-L", label],
            "ntfs": ["mkntfs", "-q", "-F", "-f", "-L", label],
            "btrfs": ["mkfs.btrfs", "-q", "-L", label]}[kind]
    run([*argv, str(img)], timeout=120)
    assert blkid(img, "LABEL") == label
    _check(img, kind, readable=kind != "btrfs")


def test_iso_label_merges_joliet_with_the_primary(tmp_path) -> None:
    img = tmp_path / "cd.iso"
    run(["xorriso", "-as", "mkisofs", "-quiet", "-J", "-R", "-V", "My Long ISO Label",
         "-o", str(img), str(_tree(tmp_path))], timeout=60)
    # The primary descriptor in upper case and longer than Joliet's 16 characters: blkid
    # takes Joliet's case for the 16 characters Joliet holds ("My Long ISO Labe") and the
    # primary's bytes after them.
    with open(img, "r+b") as f:
        f.seek(0x8000 + 40)
        f.write(b"MY LONG ISO LABEL WITH MORE TEXT")
    assert blkid(img, "LABEL") == "My Long ISO LabeL WITH MORE TEXT"
    _check(img, "iso9660")


def test_iso_label_joliet_only_where_they_disagree(tmp_path) -> None:
    img = tmp_path / "cd.iso"
    run(["xorriso", "-as", "mkisofs", "-quiet", "-J", "-V", "Données été",
         "-o", str(img), str(_tree(tmp_path))], timeout=60)
    with open(img, "r+b") as f:
        f.seek(0x8000 + 40)
        f.write(b"DONNEES_ETE".ljust(32))
    _check(img, "iso9660")
    assert blkid(img, "LABEL") is not None


@pytest.mark.parametrize("blocksize", ["512", "2048"])
def test_udf_label_and_uuid(tmp_path, blocksize) -> None:
    if not which("mkudffs"):
        pytest.skip("udftools needed")
    img = tmp_path / "udf.img"
    run(["truncate", "-s", "32M", str(img)], timeout=10)
    run(["mkudffs", "--label=Archive Lábel", f"--blocksize={blocksize}", "--media-type=hd",
         str(img)], timeout=60)
    assert blkid(img, "LABEL") == "Archive Lábel"
    _check(img, "udf", readable=False)
    with FileReader(str(img)) as r, pytest.raises(HostError) as info:
        open_filesystem(r)
    assert info.value.code == "fs-unsupported"


def test_udf_bridge_image_reads_in_process(tmp_path) -> None:
    if not which("genisoimage"):
        pytest.skip("genisoimage needed")
    img = tmp_path / "bridge.iso"
    run(["genisoimage", "-quiet", "-udf", "-J", "-R", "-V", "BRIDGE", "-o", str(img),
         str(_tree(tmp_path))], timeout=60)
    _check(img, "udf")
    with FileReader(str(img)) as r, open_filesystem(r) as fs:
        assert fs.read("/etc/hostname") == b"guest\n"


def test_fat32_root_label_chain_is_bounded(tmp_path) -> None:
    """A FAT32 root directory cluster that links to itself: the label search stops (99
    clusters, as libblkid) instead of looping."""
    img = tmp_path / "fat32.img"
    run(["mkfs.vfat", "-C", "-F", "32", "-n", "LOOPY", str(img), "65536"], timeout=60)
    with open(img, "r+b") as f:
        boot = f.read(512)
        reserved = struct.unpack_from("<H", boot, 14)[0]
        root = struct.unpack_from("<I", boot, 44)[0]
        f.seek(reserved * 512 + root * 4)
        f.write(struct.pack("<I", root))  # root -> root
    _check(img, "vfat")
    assert os.path.getsize(img) > 0
