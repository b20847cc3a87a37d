"""GRUB 2 for BIOS written for real (grub-mkimage + grub-bios-setup), followed by diskkit and
checked against the core.img file itself, GRUB's moddep.lst, and a real SeaBIOS boot."""

from __future__ import annotations

import contextlib
import pathlib
import shutil

import pytest

from diskkit.boot import inspect_boot
from diskkit.boot.grub import assemble, boot_img_pointer, follow_core, read_blocklists
from diskkit.errors import CommandTimeout
from diskkit.readers.base import BytesReader
from diskkit.readers.raw import FileReader
from diskkit.runner import run
from tests.boot.conftest import GRUB_PC, grub_install, sfdisk_partitions

MODULES = ["biosdisk", "part_msdos", "ext2", "serial", "echo", "halt"]


def _closure(mods: list[str]) -> set[str]:
    """The modules grub-mkimage adds: ``mods`` and their dependencies from moddep.lst."""
    deps: dict[str, list[str]] = {}
    for line in (GRUB_PC / "moddep.lst").read_text().splitlines():
        name, _, rest = line.partition(":")
        deps[name.strip()] = rest.split()
    seen: set[str] = set()
    todo = list(mods)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(deps.get(m, []))
    return seen


def _install(tmp_path: pathlib.Path, base: pathlib.Path, prefix: str,
             modules: list[str] = MODULES) -> tuple[pathlib.Path, pathlib.Path]:
    img = tmp_path / "disk.img"
    shutil.copy(base, img)
    core = grub_install(tmp_path, img, prefix, modules)
    return img, core


def _inspect(img: pathlib.Path):
    parts, table = sfdisk_partitions(img)
    with FileReader(str(img)) as r:
        return inspect_boot(r, partitions=parts, table=table)


def test_core_img_read_back_equals_grub_mkimage_output(tmp_path, msdos_base):
    img, core_file = _install(tmp_path, msdos_base, "(hd0,msdos1)/boot/grub")
    want = core_file.read_bytes()
    with FileReader(str(img)) as r:
        lba, drive = boot_img_pointer(r.read(0, 512))
        diskboot = r.read(lba * 512, 512)
        got = assemble(r, diskboot, read_blocklists(diskboot))
    assert drive == 0xFF
    assert got is not None
    # grub-bios-setup patches two things (util/setup.c): the blocklists at the end of
    # diskboot.img and the Reed-Solomon redundancy length at 0x10 of the decompressor.
    assert got[:0x1F4] == want[:0x1F4]
    assert got[512:512 + 0x10] == want[512:512 + 0x10]
    assert got[512 + 0x14:len(want)] == want[512 + 0x14:]


def test_prefix_and_modules_match_grub_mkimage(tmp_path, msdos_base):
    img, _ = _install(tmp_path, msdos_base, "(hd0,msdos1)/boot/grub")
    info = _inspect(img)
    assert info.mbr.loader == "grub2" and info.mbr.signature
    (g,) = info.grub
    assert g.core.error is None
    assert g.core.prefix == "(hd0,msdos1)/boot/grub"
    assert set(g.core.modules) == _closure(MODULES)
    assert g.core_location == "mbr-gap"
    t = g.target
    assert (t.kind, t.partition_number, t.exists, t.filesystem) == ("partition", 1, True, "ext")
    assert t.grub_cfg is True and t.normal_mod is True
    assert not [f for f in info.findings if f.code.startswith("grub-")]


@pytest.mark.parametrize(("prefix", "code", "number"), [
    ("(hd0,msdos4)/boot/grub", "grub-prefix-partition-missing", 4),
    ("(,msdos2)/boot/grub", "grub-cfg-missing", 2),
    ("(hd0,gpt1)/boot/grub", "grub-prefix-partition-missing", 1),
    ("(hd1,msdos1)/boot/grub", "grub-prefix-partition-missing", None),
])
def test_prefix_pointing_elsewhere_is_a_finding(tmp_path, msdos_base, prefix, code, number):
    img, _ = _install(tmp_path, msdos_base, prefix)
    info = _inspect(img)
    (g,) = info.grub
    assert g.core.prefix == prefix
    assert g.target.partition_number == number
    assert code in [f.code for f in info.findings]


def test_logical_partition_prefix(tmp_path, msdos_base):
    img, _ = _install(tmp_path, msdos_base, "(,msdos5)/grub")
    (g,) = _inspect(img).grub
    assert g.target.exists is True and g.target.offset == 65536 * 512
    assert g.target.filesystem is None  # p5 was never formatted


def test_core_img_overwritten_is_a_finding(tmp_path, msdos_base):
    img, _ = _install(tmp_path, msdos_base, "(hd0,msdos1)/boot/grub")
    run(["dd", "if=/dev/zero", f"of={img}", "bs=512", "seek=1", "count=1", "conv=notrunc",
         "status=none"], timeout=30)
    info = _inspect(img)
    assert info.grub[0].core.error
    assert "grub-core-img-missing" in [f.code for f in info.findings]


def test_damaged_core_never_raises(tmp_path, msdos_base):
    img, _ = _install(tmp_path, msdos_base, "(hd0,msdos1)/boot/grub")
    data = bytearray(img.read_bytes()[:2 << 20])
    for pos in range(0x400, 0x400 + 8000, 7):  # scribble over the compressed part
        data[pos] ^= 0x5A
    core = follow_core(BytesReader(bytes(data)), 1, 0xFF)
    assert core.error is not None and core.prefix is None
    data[0x3FC:0x3FE] = b"\xff\xff"  # a blocklist far larger than any core.img
    assert "implausible" in follow_core(BytesReader(bytes(data)), 1, 0xFF).error


@pytest.mark.slow
def test_seabios_boots_it_and_grub_reads_the_cfg_we_found(tmp_path, msdos_base):
    """Ground truth: SeaBIOS + the real GRUB find the same grub.cfg we reported."""
    img, _ = _install(tmp_path, msdos_base, "(hd0,msdos1)/boot/grub")
    info = _inspect(img)
    assert info.grub[0].target.grub_cfg is True
    serial = tmp_path / "serial.log"
    # grub.cfg ends with "halt" (ACPI power off): qemu exits; the timeout is the safety net.
    with contextlib.suppress(CommandTimeout):
        run(["qemu-system-x86_64", "-accel", "tcg", "-m", "128", "-display", "none",
             "-no-reboot", "-drive", f"file={img},format=raw,if=ide",
             "-serial", f"file:{serial}", "-monitor", "none"], timeout=60, check=False)
    assert "DISKKIT-GRUB-CFG-OK" in serial.read_text(errors="replace")
