"""Readiness findings that need no OS: a partition past the end of the disk, and a
filesystem larger than its partition (built with sfdisk and mkfs.ext4, checked with their
own tools)."""

from __future__ import annotations

import pathlib

from diskkit.runner import run
from diskkit.validate import validate

MI = 1 << 20


def _sfdisk(img: pathlib.Path, script: str) -> None:
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(img)], input=script,
        timeout=30)


def test_partition_past_the_end_of_the_disk(tmp_path: pathlib.Path) -> None:
    img = tmp_path / "cut.raw"
    with open(img, "wb") as f:
        f.truncate(256 * MI)
    _sfdisk(img, "label: dos\nstart=2048, size=200MiB, type=83\n")
    with open(img, "r+b") as f:
        f.truncate(64 * MI)  # the copy lost its tail
    v = validate(str(img), disk_format="raw")
    f = next(x for x in v.readiness if x.code == "partition-past-disk")
    assert f.blocking and v.exit_code == 1
    assert "partition 1" in f.evidence[0].note


def test_filesystem_larger_than_its_partition(tmp_path: pathlib.Path) -> None:
    fs = tmp_path / "fs.ext4"
    with open(fs, "wb") as f:
        f.truncate(64 * MI)
    run(["mkfs.ext4", "-q", "-F", str(fs)], timeout=60)
    img = tmp_path / "disk.raw"
    with open(img, "wb") as f:
        f.truncate(128 * MI)
    _sfdisk(img, "label: dos\nstart=2048, size=32MiB, type=83\n")
    with open(img, "r+b") as f, open(fs, "rb") as src:
        f.seek(MI)
        f.write(src.read())
    blocks = run(["dumpe2fs", "-h", str(fs)], timeout=30).stdout
    count = next(int(ln.split(":")[1]) for ln in blocks.splitlines()
                 if ln.startswith("Block count:"))
    bsize = next(int(ln.split(":")[1]) for ln in blocks.splitlines()
                 if ln.startswith("Block size:"))
    assert count * bsize == 64 * MI  # ground truth: the superblock says 64 MiB
    v = validate(str(img), disk_format="raw")
    f = next(x for x in v.readiness if x.code == "filesystem-larger-than-partition")
    assert f.blocking and v.exit_code == 1 and str(64 * MI) in f.message
