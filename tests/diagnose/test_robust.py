"""Malformed and odd inputs: diagnose gives a verdict or a DiskkitError, never a crash; the
facts it reports match independent tools (sfdisk --json, mdir, xorriso)."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import random
from typing import Any

import pytest

from diskkit.diagnose import diagnose
from diskkit.errors import DiskkitError
from diskkit.runner import run


@pytest.mark.parametrize("size", [0, 1, 100, 511, 512, 4096, 40000])
def test_short_and_random_files(tmp_path: pathlib.Path, size: int) -> None:
    rng = random.Random(size)
    for i in range(5):
        p = tmp_path / f"r{i}.img"
        data = bytearray(rng.randbytes(size))
        if size >= 512 and i % 2:
            data[510:512] = b"\x55\xaa"
        p.write_bytes(bytes(data))
        try:
            d = diagnose(str(p), "raw")
        except DiskkitError:
            continue
        assert d.will_boot in (True, False, None)
        if d.will_boot is False:
            assert d.findings and d.findings[0].fix


def test_truncated_sample_disks(boot_samples: dict[str, Any], tmp_path: pathlib.Path) -> None:
    """Every sample cut at a few places: still a verdict or a clean error."""
    for name, entry in boot_samples.items():
        src = pathlib.Path(entry["path"])
        if os.stat(src).st_size > 256 << 20:
            continue
        data = src.read_bytes()
        for cut in (513, 40 * 1024, 1 << 20, len(data) // 2):
            p = tmp_path / f"{name}.{cut}"
            p.write_bytes(data[:cut])
            with contextlib.suppress(DiskkitError):
                diagnose(str(p), "raw")


def test_facts_match_sfdisk(boot_samples: dict[str, Any]) -> None:
    for name in ("boot-grub-mbr.img", "boot-grub-gpt.img", "boot-uefi-only.img",
                 "boot-lvm-root.img"):
        path = boot_samples[name]["path"]
        table = json.loads(run(["sfdisk", "--json", path], timeout=30).stdout)
        label = {"dos": "mbr", "gpt": "gpt"}[table["partitiontable"]["label"]]
        assert diagnose(path, "raw").facts["partition_table"] == label


def test_grub_prefix_is_the_one_grub_mkimage_was_given(boot_samples: dict[str, Any]) -> None:
    for name, prefix in (("boot-grub-mbr.img", "(hd0,msdos1)/boot/grub"),
                         ("boot-grub-prefix-elsewhere.img", "(hd0,msdos3)/boot/grub"),
                         ("boot-lvm-root.img", "(lvm/vg0-root)/boot/grub")):
        assert diagnose(boot_samples[name]["path"], "raw").facts["grub_prefixes"] == [prefix]


def test_uefi_loader_is_where_mtools_sees_it(boot_samples: dict[str, Any]) -> None:
    path = boot_samples["boot-uefi-only.img"]["path"]
    listing = run(["mdir", "-b", "-i", f"{path}@@1048576", "::/EFI/BOOT"], timeout=30).stdout
    assert "BOOTX64.EFI" in listing.upper()
    d = diagnose(path, "raw", firmware="uefi")
    assert d.will_boot is True
    assert any(x.upper().endswith("BOOTX64.EFI") for x in d.facts["uefi_loaders"])


def test_eltorito_matches_xorriso(boot_samples: dict[str, Any]) -> None:
    for name in ("boot-plain-iso-volume.raw", "boot-hybrid-iso-volume.raw"):
        path = boot_samples[name]["path"]
        rep = run(["xorriso", "-indev", path, "-report_el_torito", "plain"], timeout=60)
        has_bios = any(line.startswith("El Torito boot img :") and " BIOS " in line
                       for line in rep.stdout.splitlines())
        d = diagnose(path, "raw", media="cdrom")
        assert d.facts["eltorito"]["bios_bootable"] is has_bios is True
        assert d.will_boot is True
