"""MBR and GPT tables built with sfdisk/sgdisk, checked against sfdisk --json and pyparted."""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import shutil
import struct
import zlib

import parted
import pytest

from diskkit.errors import ImageError
from diskkit.layout import inspect_layout
from diskkit.readers.base import BytesReader
from diskkit.runner import run
from tests.helpers import write_at
from tests.layout.tools import MiB, blank, inspect, sfdisk_json, sfdisk_write

ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS = "21686148-6449-6E6F-744E-656564454649"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"

MBR_SCRIPT = """label: dos
start=2048, size=16384, type=83, bootable
start=18432, size=8192, type=82
start=26624, type=5
start=28672, size=4096, type=83
start=34816, size=4096, type=7
start=40960, size=4096, type=8e
"""
GPT_SCRIPT = f"""label: gpt
start=2048, size=2048, type={BIOS}, name="BIOS boot"
start=4096, size=20480, type={ESP}, name="EFI System Partition"
start=24576, size=65536, type={LINUX}, name="root \u00e9t\u00e9"
start=90112, size=16384, type={SWAP}, name=swap, attrs="LegacyBIOSBootable"
"""


@pytest.fixture(scope="module")
def mbr_img(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    img = blank(tmp_path_factory.mktemp("mbr") / "mbr.img", 32 * MiB)
    sfdisk_write(img, MBR_SCRIPT)
    return img


@pytest.fixture(scope="module")
def gpt_img(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    img = blank(tmp_path_factory.mktemp("gpt") / "gpt.img", 64 * MiB)
    sfdisk_write(img, GPT_SCRIPT)
    return img


def _check_against_sfdisk(img: pathlib.Path | str, layout_parts: tuple) -> None:
    ref = sfdisk_json(img)
    assert [p["number"] for p in ref["partitions"]] == [p.number for p in layout_parts]
    for mine, theirs in zip(layout_parts, ref["partitions"], strict=True):
        assert mine.start == theirs["start_bytes"]
        assert mine.size == theirs["size_bytes"]
        if ref["label"] == "dos":
            assert mine.type == f"0x{int(theirs['type'], 16):02x}"
            assert mine.bootable == theirs.get("bootable", False)
        else:
            assert mine.type == theirs["type"]
            assert mine.uuid == theirs["uuid"]
            assert mine.name == theirs.get("name", "")


def _check_against_parted(img: pathlib.Path, layout_parts: tuple, ss: int = 512) -> None:
    disk = parted.newDisk(parted.getDevice(str(img)))
    theirs = {p.number: p for p in disk.partitions}
    assert sorted(theirs) == [p.number for p in layout_parts]
    for mine in layout_parts:
        p = theirs[mine.number]
        assert mine.start == p.geometry.start * ss
        # libparted gives an extended partition its real length; logicals the same as sfdisk.
        assert mine.size == p.geometry.length * ss
        if disk.type == "gpt":
            assert mine.name == p.name


def test_mbr_with_logical_partitions(mbr_img: pathlib.Path) -> None:
    layout = inspect(mbr_img)
    assert layout.table == "mbr"
    assert [p.kind for p in layout.partitions] == [
        "primary", "primary", "extended", "logical", "logical", "logical"]
    assert [p.number for p in layout.partitions] == [1, 2, 3, 5, 6, 7]
    assert layout.partitions[0].type_name == "Linux"
    assert layout.partitions[4].type_name == "HPFS/NTFS/exFAT"
    assert layout.findings == ()
    _check_against_sfdisk(mbr_img, layout.partitions)
    _check_against_parted(mbr_img, layout.partitions)


def test_gpt_esp_bios_linux_swap(gpt_img: pathlib.Path) -> None:
    layout = inspect(gpt_img)
    assert layout.table == "gpt" and layout.sector_size == 512
    assert layout.pmbr == "protective"
    assert [p.type_name for p in layout.partitions] == [
        "BIOS boot", "EFI System", "Linux filesystem", "Linux swap"]
    assert layout.partitions[2].name == "root \u00e9t\u00e9"
    assert [p.bootable for p in layout.partitions] == [False, False, False, True]
    assert layout.findings == ()
    ref = sfdisk_json(gpt_img)
    assert layout.disk_id == ref["id"]
    _check_against_sfdisk(gpt_img, layout.partitions)
    _check_against_parted(gpt_img, layout.partitions)


def test_gpt_4096_byte_sectors(tmp_path: pathlib.Path) -> None:
    img = blank(tmp_path / "4kn.img", 64 * MiB)
    dev = run(["losetup", "-f", "--show", "--sector-size", "4096", str(img)]).stdout.strip()
    try:
        sfdisk_write(pathlib.Path(dev), f"label: gpt\nstart=256, size=2560, type={ESP}\n"
                     f"start=2816, type={LINUX}, name=data\n")
        ref_parts = sfdisk_json(dev)
    finally:
        run(["losetup", "-d", dev], check=False)
    assert ref_parts["sectorsize"] == 4096
    layout = inspect(img)
    assert layout.sector_size == 4096 and layout.table == "gpt"
    assert [(p.start, p.size) for p in layout.partitions] == [
        (p["start_bytes"], p["size_bytes"]) for p in ref_parts["partitions"]]
    assert layout.findings == ()


def test_hybrid_mbr(gpt_img: pathlib.Path, tmp_path: pathlib.Path) -> None:
    img = tmp_path / "hybrid.img"
    shutil.copy(gpt_img, img)
    run(["sgdisk", "-h", "2", str(img)])
    nested = sfdisk_json_nested(img)
    assert sorted(p["type"] for p in nested) == ["ee", "ef"]
    layout = inspect(img)
    assert layout.pmbr == "hybrid"
    assert "mbr-hybrid" in {f.code for f in layout.findings}
    _check_against_sfdisk(img, layout.partitions)


def sfdisk_json_nested(img: pathlib.Path) -> list[dict]:
    """The MBR next to a GPT, as sfdisk reads it (--label-nested dos)."""
    import json

    out = run(["sfdisk", "--json", "--label-nested", "dos", str(img)]).stdout
    return json.loads(out)["partitiontable"]["partitions"]


def test_grown_disk_backup_not_at_end(gpt_img: pathlib.Path, tmp_path: pathlib.Path) -> None:
    img = tmp_path / "grown.img"
    shutil.copy(gpt_img, img)
    os.truncate(img, 96 * MiB)  # as after "openstack volume extend"
    layout = inspect(img)
    codes = {f.code for f in layout.findings}
    assert "gpt-backup-header-not-at-end" in codes
    # sfdisk reads the same partitions from it
    _check_against_sfdisk(img, layout.partitions)
    # sgdisk -e moves the backup to the end: the finding goes away
    run(["sgdisk", "-e", str(img)])
    assert inspect(img).findings == ()


def test_backup_header_missing(gpt_img: pathlib.Path, tmp_path: pathlib.Path) -> None:
    img = tmp_path / "nobackup.img"
    shutil.copy(gpt_img, img)
    write_at(img, 64 * MiB - 512, b"\0" * 512)
    codes = {f.code for f in inspect(img).findings}
    assert "gpt-backup-header-missing" in codes
    res = run(["sgdisk", "-v", str(img)], check=False)
    assert "backup" in (res.stdout + res.stderr).lower()


def test_bad_crcs(gpt_img: pathlib.Path, tmp_path: pathlib.Path) -> None:
    img = tmp_path / "crc.img"
    shutil.copy(gpt_img, img)
    write_at(img, 1024 + 200, b"\x01")  # a byte of the entry array (partition 2's area)
    layout = inspect(img)
    assert "gpt-entries-crc-mismatch" in {f.code for f in layout.findings}
    write_at(img, 512 + 40, b"\x07")  # first usable LBA in the primary header
    layout = inspect(img)
    assert "gpt-header-crc-mismatch" in {f.code for f in layout.findings}
    # the backup header (intact) is used: the partitions are still there
    assert [p.number for p in layout.partitions] == [1, 2, 3, 4]
    res = run(["sgdisk", "-v", str(img)], check=False)
    assert "crc" in (res.stdout + res.stderr).lower()


def test_ebr_loop_stops_with_finding(mbr_img: pathlib.Path, tmp_path: pathlib.Path) -> None:
    img = tmp_path / "loop.img"
    shutil.copy(mbr_img, img)
    # the second EBR (of logical 6) links back to the first EBR: relative offset 0
    ext_start = 26624
    first_ebr = pathlib.Path(img).read_bytes()[ext_start * 512 : ext_start * 512 + 512]
    link_rel = struct.unpack_from("<I", first_ebr, 0x1BE + 16 + 8)[0]
    second = (ext_start + link_rel) * 512
    write_at(img, second + 0x1BE + 16 + 8, struct.pack("<I", 0))
    layout = inspect(img)
    assert "mbr-ebr-loop" in {f.code for f in layout.findings}
    assert [p.number for p in layout.partitions] == [1, 2, 3, 5, 6]


def test_partition_past_end_of_truncated_image(mbr_img: pathlib.Path,
                                               tmp_path: pathlib.Path) -> None:
    img = tmp_path / "trunc.img"
    shutil.copy(mbr_img, img)
    os.truncate(img, 8 * MiB)
    layout = inspect(img)
    assert "partition-beyond-disk" in {f.code for f in layout.findings}


def test_hostile_tables_never_crash(gpt_img: pathlib.Path, mbr_img: pathlib.Path) -> None:
    rng = random.Random(3)
    for base in (gpt_img, mbr_img):
        head = bytearray(base.read_bytes()[: 64 * 1024])
        for _ in range(300):
            data = bytearray(head)
            for _ in range(rng.randint(1, 12)):
                pos = rng.choice([rng.randrange(0x1BE, 0x200), rng.randrange(512, 1024 + 512),
                                  rng.randrange(len(data))])
                data[pos] = rng.randrange(256)
            with contextlib.suppress(ImageError):
                inspect_layout(BytesReader(bytes(data)))


def _fix_header_crc(data: bytearray) -> None:
    hsize = struct.unpack_from("<I", data, 512 + 12)[0]
    if 92 <= hsize <= 512:
        data[512 + 16 : 512 + 20] = b"\0" * 4
        data[512 + 16 : 512 + 20] = struct.pack("<I", zlib.crc32(bytes(data[512 : 512 + hsize])))


def test_hostile_gpt_headers_with_valid_crc(gpt_img: pathlib.Path) -> None:
    head = bytearray(gpt_img.read_bytes()[: 64 * 1024])
    huge = bytearray(head)
    huge[512 + 80 : 512 + 84] = struct.pack("<I", 0xFFFFFFFF)  # entries: 4 G x 128 bytes
    _fix_header_crc(huge)
    with pytest.raises(ImageError):
        inspect_layout(BytesReader(bytes(huge)))
    rng = random.Random(7)
    for _ in range(300):
        data = bytearray(head)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(512 + 8, 512 + 92)] = rng.randrange(256)
        _fix_header_crc(data)
        with contextlib.suppress(ImageError):
            inspect_layout(BytesReader(bytes(data)))


def test_primary_gpt_wiped_backup_used(gpt_img: pathlib.Path, tmp_path: pathlib.Path) -> None:
    img = tmp_path / "wiped.img"
    shutil.copy(gpt_img, img)
    write_at(img, 512, b"\0" * 512)  # the primary header gone, the protective MBR left
    layout = inspect(img)
    assert layout.table == "gpt"
    assert "gpt-header-crc-mismatch" in {f.code for f in layout.findings}
    # sfdisk also falls back to the backup header and lists the same partitions
    _check_against_sfdisk(img, layout.partitions)
    write_at(img, 64 * MiB - 512, b"\0" * 512)  # and the backup
    layout = inspect(img)
    assert layout.table == "mbr"
    assert "gpt-missing" in {f.code for f in layout.findings}
