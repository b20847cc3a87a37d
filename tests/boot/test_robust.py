"""Damaged and truncated images: inspect_boot reports what it can, never crashes with
IndexError/struct.error (only DiskkitError may escape, and none is expected here)."""

from __future__ import annotations

import random
import shutil

from diskkit.boot import inspect_boot
from diskkit.readers.base import BytesReader
from tests.boot.conftest import grub_install, sfdisk_partitions

MiB = 1 << 20


def test_random_damage_and_truncation(tmp_path, msdos_base):
    img = tmp_path / "disk.img"
    shutil.copy(msdos_base, img)
    grub_install(tmp_path, img, "(hd0,msdos1)/boot/grub", ["biosdisk", "part_msdos", "ext2"])
    parts, table = sfdisk_partitions(img)
    whole = img.read_bytes()
    rng = random.Random(20261123)
    hot = [(0, 512), (512, 512), (1024, 60 * 1024), (parts[0].start, 8 * 1024 * 64)]
    errors = 0
    for _ in range(150):
        data = bytearray(whole[:parts[1].start])
        for _flip in range(rng.randint(1, 40)):
            start, length = rng.choice(hot)
            pos = start + rng.randrange(length)
            data[pos] = rng.randrange(256)
        cut = rng.choice([len(data), 512, 700, 4096, 40000, parts[0].start + 4096,
                          rng.randrange(len(data))])
        info = inspect_boot(BytesReader(bytes(data[:cut])), partitions=parts, table=table)
        info.to_dict()
        errors += bool(info.grub and info.grub[0].core.error)
    assert errors > 0  # the damage did reach core.img sometimes: the test is not vacuous
