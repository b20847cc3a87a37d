"""initramfs parsing against archives made by the real cpio and compressors, checked against
initramfs-tools' own lsinitramfs; and the bounds."""

from __future__ import annotations

import pathlib

import pytest

from diskkit.guest.initramfs import list_initramfs, summarize
from diskkit.runner import run
from tests.guest.os_build import COMPRESSORS, compress, cpio_newc, make_initramfs

MODULES = ["block/virtio_blk.ko", "scsi/virtio_scsi.ko.xz", "nvme/host/nvme.ko.zst",
           "ata/ahci.ko", "fs/xfs.ko", "md/dm-mod.ko"]


def lsinitramfs(path: pathlib.Path) -> set[str]:
    """Entry names as initramfs-tools lists them."""
    out = run(["lsinitramfs", str(path)], timeout=120).stdout
    return {line for line in out.splitlines() if line}


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_listing_equals_lsinitramfs(tmp_path: pathlib.Path, kind: str) -> None:
    img = make_initramfs(tmp_path / "initrd.img", "6.1.0-9-amd64", MODULES, compression=kind,
                         extra_files={"usr/sbin/lvm": b"lvm", "scripts/local-top/lvm2": b""})
    listing = list_initramfs(img.read_bytes())
    assert not listing.problem, listing.problem
    assert [s.compression for s in listing.segments] == [None, kind]
    assert listing.names() == lsinitramfs(img)
    facts = summarize(listing)
    want = {pathlib.PurePath(m).name.split(".ko")[0].replace("-", "_") for m in MODULES}
    assert set(facts.modules) == want
    assert facts.drivers["virtio_blk"] and facts.drivers["dm_mod"]
    assert not facts.drivers["ata_piix"] and not facts.drivers["ext4"]
    assert facts.lvm and facts.generator == "initramfs-tools"
    assert facts.module_versions == ("6.1.0-9-amd64",)


def test_uncompressed_and_no_microcode(tmp_path: pathlib.Path) -> None:
    img = make_initramfs(tmp_path / "i", "5.10.0-1", ["block/virtio_blk.ko"], compression=None,
                         microcode=False)
    listing = list_initramfs(img.read_bytes())
    # (lsinitramfs wants a compressed archive after a stored one: GNU cpio lists this one)
    out = run(["cpio", "-it", "--quiet"], input=img.read_bytes(), binary=True, timeout=60)
    assert listing.names() == {n for n in out.stdout.decode().splitlines() if n}
    assert [s.compression for s in listing.segments] == [None]


def test_host_initramfs_equals_lsinitramfs() -> None:
    """This machine's own initramfs (built by update-initramfs) lists as lsinitramfs does."""
    imgs = sorted(pathlib.Path("/boot").glob("initrd.img-*"))
    if not imgs:
        pytest.skip("no initramfs in /boot")
    listing = list_initramfs(imgs[-1].read_bytes())
    assert not listing.problem
    assert listing.names() == lsinitramfs(imgs[-1])


def test_entry_bound(tmp_path: pathlib.Path) -> None:
    tree = tmp_path / "t"
    for i in range(50):
        (tree / f"d{i}").mkdir(parents=True)
    data = compress(cpio_newc(tree), "gzip")
    listing = list_initramfs(data, max_entries=10)
    assert listing.truncated and len(listing.entries) == 10


def test_output_bound_stops_a_bomb(tmp_path: pathlib.Path) -> None:
    """64 MiB of zeros inside the archive: decompression stops at the output bound."""
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "zeros").write_bytes(b"\0" * (64 << 20))
    data = compress(cpio_newc(tree), "zstd")
    assert len(data) < 1 << 20
    listing = list_initramfs(data, max_output=8 << 20)
    assert listing.truncated and "decompressed" in listing.problem


@pytest.mark.parametrize("blob", [b"070701" + b"Z" * 200, b"\x1f\x8b\x08\x00garbage" * 10,
                                  b"\x28\xb5\x2f\xfd" + b"\xff" * 64, b"hello world" * 30,
                                  b"070701" + b"0" * 104])
def test_garbage_is_a_problem_not_an_exception(blob: bytes) -> None:
    listing = list_initramfs(blob)
    assert listing.problem


def test_truncated_archive(tmp_path: pathlib.Path) -> None:
    img = make_initramfs(tmp_path / "i", "6.1", MODULES, compression="gzip")
    data = img.read_bytes()
    listing = list_initramfs(data[: len(data) - 200])
    assert listing.problem or listing.truncated
    assert len(listing.entries) >= 5  # the microcode archive and what came before the cut


def test_crypt_and_mdadm_tools(tmp_path: pathlib.Path) -> None:
    img = make_initramfs(tmp_path / "i", "6.1", ["md/dm-crypt.ko"], compression="xz",
                         extra_files={"usr/sbin/cryptsetup": b"", "sbin/mdadm": b""})
    facts = summarize(list_initramfs(img.read_bytes()))
    assert facts.crypt and facts.mdadm and not facts.lvm
    assert facts.drivers["dm_crypt"] and not facts.drivers["dm_mod"]
