"""Filesystems made with the real mkfs tools, identified by diskkit and by ``blkid -p``."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest

from diskkit.runner import run
from tests.helpers import write_at
from tests.layout.tools import MiB, blank, blkid, inspect, sfdisk_write

LUKS_PBKDF = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]


def _luks(version: int) -> Callable[[pathlib.Path], None]:
    def build(img: pathlib.Path) -> None:
        key = img.with_suffix(".key")
        key.write_bytes(b"secret")
        extra = ["--label", "cryptlabel"] if version == 2 else []
        run(["cryptsetup", "luksFormat", "-q", "--type", f"luks{version}", *LUKS_PBKDF,
             *extra, "--key-file", str(key), str(img)], timeout=120)
    return build


def _squashfs(img: pathlib.Path) -> None:
    src = img.parent / "sqsrc"
    src.mkdir()
    (src / "hello").write_text("hello\n")
    img.unlink()
    run(["mksquashfs", str(src), str(img), "-quiet", "-noappend"], timeout=60)


def _iso(img: pathlib.Path) -> None:
    src = img.parent / "isosrc"
    src.mkdir()
    (src / "readme.txt").write_text("iso\n")
    img.unlink()
    run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "DISKKIT_ISO", "-o", str(img), str(src)],
        timeout=60)


# name -> (size, builder, expected diskkit details subset)
CASES: dict[str, tuple[int, Callable[[pathlib.Path], None], dict]] = {
    "ext2": (8 * MiB, lambda p: run(["mkfs.ext2", "-q", "-F", "-L", "e2", str(p)]), {}),
    "ext3": (8 * MiB, lambda p: run(["mkfs.ext3", "-q", "-F", "-L", "e3", str(p)]),
             {"has_journal": True}),
    "ext4": (16 * MiB, lambda p: run(["mkfs.ext4", "-q", "-F", "-L", "root-fs", str(p)]),
             {"needs_recovery": False}),
    "xfs": (300 * MiB, lambda p: run(["mkfs.xfs", "-q", "-f", "-L", "xfslab", str(p)]), {}),
    "btrfs": (128 * MiB, lambda p: run(["mkfs.btrfs", "-q", "-f", "-L", "btr", str(p)]), {}),
    "fat12": (2 * MiB, lambda p: run(["mkfs.vfat", "-F", "12", "-n", "SMALL", str(p)]),
              {"fat_bits": 12}),
    "fat16": (32 * MiB, lambda p: run(["mkfs.vfat", "-F", "16", "-n", "MIDDLE", str(p)]),
              {"fat_bits": 16}),
    "fat32": (64 * MiB, lambda p: run(["mkfs.vfat", "-F", "32", "-n", "EFI", str(p)]),
              {"fat_bits": 32}),
    "ntfs": (16 * MiB, lambda p: run(["mkntfs", "-q", "-F", "-f", "-L", "Windows", str(p)]),
             {}),
    "swap": (8 * MiB, lambda p: run(["mkswap", "-L", "swaplab", str(p)]), {"version": 1}),
    "luks1": (8 * MiB, _luks(1), {"version": 1}),
    "luks2": (20 * MiB, _luks(2), {"version": 2}),
    "squashfs": (1 * MiB, _squashfs, {}),
    "iso9660": (1 * MiB, _iso, {}),
}


@pytest.fixture(scope="module")
def fs_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    out = {}
    for name, (size, build, _) in CASES.items():
        d = tmp_path_factory.mktemp(name)
        img = blank(d / f"{name}.img", size)
        build(img)
        out[name] = img
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_unpartitioned_filesystem_matches_blkid(name: str,
                                                fs_images: dict[str, pathlib.Path]) -> None:
    img = fs_images[name]
    ref = blkid(img)
    layout = inspect(img)
    assert layout.table is None
    assert len(layout.filesystems) == 1
    fs = layout.filesystems[0]
    assert fs.location == "disk" and fs.offset == 0
    assert fs.type == ref["TYPE"]
    assert fs.uuid == ref.get("UUID")
    assert fs.label == ref.get("LABEL")
    for key, value in CASES[name][2].items():
        assert fs.details[key] == value
    if name in ("ext2", "ext3", "ext4", "btrfs", "swap", "fat16", "fat32"):
        assert fs.size == img.stat().st_size  # the mkfs tools fill the file
    if name == "ntfs":  # NTFS keeps its backup boot sector after the volume
        assert fs.size == img.stat().st_size - 512
    if name in ("squashfs", "iso9660"):
        assert 0 < fs.size <= img.stat().st_size


def test_xfs_size_against_xfs_db(fs_images: dict[str, pathlib.Path]) -> None:
    out = run(["xfs_db", "-r", "-c", "sb 0", "-c", "p dblocks blocksize",
               str(fs_images["xfs"])]).stdout
    vals = dict(line.split(" = ") for line in out.strip().splitlines())
    fs = inspect(fs_images["xfs"]).filesystems[0]
    assert fs.size == int(vals["dblocks"]) * int(vals["blocksize"])


def test_ext4_journal_needs_recovery(fs_images: dict[str, pathlib.Path],
                                     tmp_path: pathlib.Path) -> None:
    img = tmp_path / "dirty.img"
    img.write_bytes(fs_images["ext4"].read_bytes())
    incompat = bytearray(img.read_bytes()[1024 + 0x60 : 1024 + 0x64])
    incompat[0] |= 0x4  # EXT3_FEATURE_INCOMPAT_RECOVER, as a crash leaves it
    write_at(img, 1024 + 0x60, bytes(incompat))
    # the independent tool sees it too
    assert "needs_recovery" in run(["dumpe2fs", "-h", str(img)], check=False).stdout
    layout = inspect(img)
    assert layout.filesystems[0].details["needs_recovery"] is True
    assert "ext-journal-needs-recovery" in {f.code for f in layout.findings}


def test_filesystems_on_partitions(tmp_path: pathlib.Path) -> None:
    """Filesystems made in place at partition offsets (mkfs.ext4 -E offset=, mkfs.vfat
    --offset, mkswap / mkfs.xfs on loop devices with --offset/--sizelimit)."""
    img = blank(tmp_path / "parts.img", 64 * MiB)
    sfdisk_write(img, "label: dos\nstart=2048, size=32768, type=ef\n"
                      "start=34816, size=40960, type=83\nstart=75776, size=16384, type=82\n"
                      "start=92160, type=5\nstart=94208, size=20480, type=7\n")
    run(["mkfs.vfat", "-F", "16", "-n", "ESP", "--offset", "2048", str(img), "16384"])
    run(["mkfs.ext4", "-q", "-F", "-L", "data", "-E", f"offset={34816 * 512}", str(img),
         "20M"])
    for start, size, argv in ((75776, 16384, ["mkswap", "-L", "sw"]),
                              (94208, 20480, ["mkntfs", "-q", "-F", "-f", "-L", "win"])):
        dev = run(["losetup", "-f", "--show", "--offset", str(start * 512), "--sizelimit",
                   str(size * 512), str(img)]).stdout.strip()
        try:
            run([*argv, dev], timeout=60)
        finally:
            run(["losetup", "-d", dev], check=False)
    layout = inspect(img)
    assert [f.location for f in layout.filesystems] == [
        "partition 1", "partition 2", "partition 3", "partition 5"]
    for fs in layout.filesystems:
        part = layout.partition(int(fs.location.split()[1]))
        assert part is not None and fs.offset == part.start
        ref = blkid(img, fs.offset, part.size)
        assert (fs.type, fs.uuid, fs.label) == (ref["TYPE"], ref.get("UUID"),
                                                ref.get("LABEL"))


def test_corrupted_superblocks_never_crash(fs_images: dict[str, pathlib.Path]) -> None:
    import random

    from diskkit.layout.filesystems import PROBES
    from diskkit.readers.base import BytesReader

    rng = random.Random(5)
    for name in ("ext4", "fat12", "fat32", "ntfs", "swap", "luks2", "btrfs", "iso9660"):
        with open(fs_images[name], "rb") as f:
            head = bytearray(f.read(96 * 1024))
        for _ in range(60):
            data = bytearray(head)
            for _ in range(rng.randint(1, 10)):
                data[rng.randrange(0, 2048) if rng.random() < 0.7
                     else rng.randrange(len(data))] = rng.randrange(256)
            for probe_fn in PROBES:  # every probe on every damaged image: None or a Probe
                probe_fn(BytesReader(bytes(data)))


def test_hybrid_iso_from_grub_mkrescue(tmp_path: pathlib.Path) -> None:
    """A hybrid ISO is an ISO 9660 volume on the whole disk AND a GPT with an ESP."""
    from tests.layout.tools import sfdisk_json

    src = tmp_path / "src" / "boot" / "grub"
    src.mkdir(parents=True)
    (src / "grub.cfg").write_text("menuentry x { true }\n")
    iso = tmp_path / "rescue.iso"
    run(["grub-mkrescue", "-o", str(iso), str(tmp_path / "src")], timeout=300)
    layout = inspect(iso)
    ref = sfdisk_json(iso)
    assert layout.table == ref["label"] == "gpt"
    assert [(p.number, p.start, p.size, p.type, p.name) for p in layout.partitions] == [
        (p["number"], p["start_bytes"], p["size_bytes"], p["type"], p.get("name", ""))
        for p in ref["partitions"]]
    whole = blkid(iso)
    disk_fs = next(f for f in layout.filesystems if f.location == "disk")
    assert (disk_fs.type, disk_fs.uuid, disk_fs.label) == (
        whole["TYPE"], whole["UUID"], whole["LABEL"])
    esp = next(p for p in layout.partitions if p.type_name == "EFI System")
    esp_fs = next(f for f in layout.filesystems if f.location == f"partition {esp.number}")
    ref_esp = blkid(iso, esp.start, esp.size)
    assert (esp_fs.type, esp_fs.uuid) == (ref_esp["TYPE"], ref_esp["UUID"])


def test_isohybrid_partition_at_zero(tmp_path: pathlib.Path) -> None:
    """syslinux's isohybrid MBR: partition 1 starts at 0 and is the ISO itself (listed once)."""
    from tests.layout.tools import sfdisk_json

    src = tmp_path / "src" / "isolinux"
    src.mkdir(parents=True)
    (src / "isolinux.bin").write_bytes(pathlib.Path("/usr/lib/ISOLINUX/isolinux.bin")
                                       .read_bytes())
    iso = tmp_path / "hybrid.iso"
    run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "HYB", "-isohybrid-mbr",
         "/usr/lib/ISOLINUX/isohdpfx.bin", "-b", "isolinux/isolinux.bin", "-c",
         "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
         "-o", str(iso), str(tmp_path / "src")], timeout=120)
    layout = inspect(iso)
    ref = sfdisk_json(iso)
    assert layout.table == "mbr"
    assert [(p.number, p.start, p.size, p.bootable) for p in layout.partitions] == [
        (p["number"], p["start_bytes"], p["size_bytes"], p.get("bootable", False))
        for p in ref["partitions"]]
    assert [(f.type, f.location, f.label) for f in layout.filesystems] == [
        ("iso9660", "disk", blkid(iso)["LABEL"])]
