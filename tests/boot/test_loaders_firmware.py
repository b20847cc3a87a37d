"""Boot code judged by what it does (issue 13 item 6), checked against real firmware.

Each case is built at test time from the loaders Debian ships (syslinux-common's mbr.bin,
altmbr.bin, gptmbr.bin, isolinux's isohdpfx.bin and isolinux.bin, GRUB's El Torito image
from grub-mkimage, the SYSLINUX boot sector from ``syslinux --install``), with
sfdisk/sgdisk/mkfs.fat/xorriso,
never with diskkit. The ground truth is a real boot under SeaBIOS (TCG, until the loader:
a few seconds each, all in one module fixture); the test asserts that diagnose's verdict on
the boot loader equals what the firmware did.
"""

from __future__ import annotations

import pathlib
import shutil
import struct
from collections.abc import Callable
from typing import Any

import pytest

from diskkit.runner import run

SYSLINUX_MBR = pathlib.Path("/usr/lib/syslinux/mbr")
ISOLINUX = pathlib.Path("/usr/lib/ISOLINUX")
BIOS_MODULES = pathlib.Path("/usr/lib/syslinux/modules/bios")
MiB = 1 << 20

pytestmark = pytest.mark.skipif(
    not (SYSLINUX_MBR / "altmbr.bin").exists() or shutil.which("syslinux") is None
    or shutil.which("install-mbr") is None
    or shutil.which("qemu-system-x86_64") is None,
    reason="needs syslinux, syslinux-common, isolinux and qemu (scripts/setup.sh)")


def _sh(*argv: str | pathlib.Path, timeout: float = 60) -> None:
    run([str(a) for a in argv], timeout=timeout)


def _put(img: pathlib.Path, offset: int, data: bytes) -> None:
    with open(img, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _syslinux_fat(tmp: pathlib.Path, name: str, size: int = 16 * MiB) -> pathlib.Path:
    """A FAT16 filesystem with SYSLINUX installed (its boot sector + ldlinux.sys/.c32)."""
    fat = tmp / f"{name}.fat"
    _sh("truncate", "-s", str(size), fat)
    _sh("mkfs.fat", "-F", "16", "-n", "SYSLNX", fat)
    _sh("syslinux", "--install", fat)
    return fat


def _msdos_disk(tmp: pathlib.Path, name: str, script: str, mbr: pathlib.Path,
                fat_at: int | None) -> pathlib.Path:
    """A 64 MiB MBR disk: ``script`` for sfdisk, ``mbr`` boot code over bytes 0..len-1, a
    SYSLINUX FAT written at byte ``fat_at``."""
    img = tmp / f"{name}.img"
    _sh("truncate", "-s", str(64 * MiB), img)
    run(["sfdisk", "--no-reread", "--no-tell-kernel", str(img)], input=script.encode(),
        timeout=30)
    if fat_at is not None:
        _put(img, fat_at, _syslinux_fat(tmp, name).read_bytes())
    _put(img, 0, mbr.read_bytes())
    return img


_TWO_PARTS = "label: dos\nstart=2048, size=32768, type=6\nstart=40960, size=32768, type=6\n"
_P2 = 40960 * 512


def case_altmbr_p2(tmp: pathlib.Path) -> pathlib.Path:
    """altmbr.bin, byte 0x1B7 = 2, no partition active: boots partition 2."""
    img = _msdos_disk(tmp, "altmbr-p2", _TWO_PARTS, SYSLINUX_MBR / "altmbr.bin", _P2)
    _put(img, 0x1B7, b"\x02")
    return img


def case_altmbr_empty_slot(tmp: pathlib.Path) -> pathlib.Path:
    """altmbr.bin, byte 0x1B7 = 3 (an empty slot), partition 2 active: Missing OS."""
    img = _msdos_disk(tmp, "altmbr-empty", _TWO_PARTS.replace(
        "size=32768, type=6\n", "size=32768, type=6, bootable\n", 2).replace(
        "start=2048, size=32768, type=6, bootable", "start=2048, size=32768, type=6"),
        SYSLINUX_MBR / "altmbr.bin", _P2)
    _put(img, 0x1B7, b"\x03")
    return img


def case_mbr_active_p2(tmp: pathlib.Path) -> pathlib.Path:
    """mbr.bin, partition 2 active and holding SYSLINUX: boots."""
    script = "label: dos\nstart=2048, size=32768, type=6\n" \
        "start=40960, size=32768, type=6, bootable\n"
    return _msdos_disk(tmp, "mbr-active", script, SYSLINUX_MBR / "mbr.bin", _P2)


def case_mbr_no_active(tmp: pathlib.Path) -> pathlib.Path:
    """mbr.bin, SYSLINUX in partition 2, nothing active: Missing operating system."""
    return _msdos_disk(tmp, "mbr-none", _TWO_PARTS, SYSLINUX_MBR / "mbr.bin", _P2)


def _install_mbr(tmp: pathlib.Path, name: str, script: str, *args: str) -> pathlib.Path:
    img = _msdos_disk(tmp, name, script, SYSLINUX_MBR / "mbr.bin", _P2)
    _sh("install-mbr", "--force", *args, img)  # its own code and parameter block
    return img


def case_installmbr_default_p2(tmp: pathlib.Path) -> pathlib.Path:
    """install-mbr --partition 2, nothing active: loads partition 2 after its timeout."""
    return _install_mbr(tmp, "imbr-p2", _TWO_PARTS, "--partition", "2", "--timeout", "9")


def case_installmbr_default_active_none(tmp: pathlib.Path) -> pathlib.Path:
    """install-mbr's default D (the active partition), nothing active: its prompt waits."""
    return _install_mbr(tmp, "imbr-d", _TWO_PARTS, "--timeout", "9")


def case_superfloppy_syslinux(tmp: pathlib.Path) -> pathlib.Path:
    """No partition table: the whole disk is a FAT with SYSLINUX's boot sector at sector 0."""
    return _syslinux_fat(tmp, "superfloppy", 32 * MiB)


def case_superfloppy_mkfs_stub(tmp: pathlib.Path) -> pathlib.Path:
    """The whole disk is a FAT straight from mkfs.fat: its stub says it is not bootable."""
    fat = tmp / "stub.fat"
    _sh("truncate", "-s", str(32 * MiB), fat)
    _sh("mkfs.fat", "-F", "16", fat)
    return fat


def _gpt_disk(tmp: pathlib.Path, name: str, legacy_bootable: bool,
              size: int = 64 * MiB) -> pathlib.Path:
    img = tmp / f"{name}.img"
    _sh("truncate", "-s", str(size), img)
    _sh("sgdisk", "-n", "1:2048:+16M", "-t", "1:8300", img)
    if legacy_bootable:
        _sh("sgdisk", "--attributes=1:set:2", img)
    _put(img, 2048 * 512, _syslinux_fat(tmp, name).read_bytes())
    _put(img, 0, (SYSLINUX_MBR / "gptmbr.bin").read_bytes())
    return img


def case_gptmbr_legacy_bootable(tmp: pathlib.Path) -> pathlib.Path:
    """gptmbr.bin, partition 1 with attribute bit 2 (no MBR active flag): boots."""
    return _gpt_disk(tmp, "gpt-legacy", True)


def case_gptmbr_no_attribute(tmp: pathlib.Path) -> pathlib.Path:
    """gptmbr.bin, partition 1 holds SYSLINUX but lacks attribute bit 2: Missing OS."""
    return _gpt_disk(tmp, "gpt-plain", False)


def case_gptmbr_partition_beyond_end(tmp: pathlib.Path) -> pathlib.Path:
    """gptmbr.bin, the legacy bootable partition lies past the end of the (truncated) disk."""
    img = tmp / "gpt-beyond.img"
    _sh("truncate", "-s", str(64 * MiB), img)
    _sh("sgdisk", "-n", "1:2048:+8M", "-n", "2:40960:+16M", "-A", "2:set:2", img)
    _put(img, 0, (SYSLINUX_MBR / "gptmbr.bin").read_bytes())
    # The disk shrinks to 16 MiB (a volume created smaller than the image): partition 2
    # (starting at 20 MiB) is no longer there.
    with open(img, "r+b") as f:
        f.truncate(16 * MiB)
    return img


def _iso(tmp: pathlib.Path, name: str, boot: pathlib.Path, boot_name: str) -> pathlib.Path:
    root = tmp / f"{name}-root"
    (root / "isolinux").mkdir(parents=True)
    shutil.copy(boot, root / "isolinux" / boot_name)
    ldlinux = BIOS_MODULES / "ldlinux.c32"
    if ldlinux.exists():
        shutil.copy(ldlinux, root / "isolinux" / "ldlinux.c32")
    iso = tmp / f"{name}.iso"
    _sh("xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-isohybrid-mbr",
        ISOLINUX / "isohdpfx.bin", "-b", f"isolinux/{boot_name}", "-c", "isolinux/boot.cat",
        "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", root, timeout=120)
    return iso


def case_isohdpfx_isolinux(tmp: pathlib.Path) -> pathlib.Path:
    """isohdpfx.bin + isolinux.bin (which carries the hybrid entry): boots as a disk."""
    return _iso(tmp, "iso-isolinux", ISOLINUX / "isolinux.bin", "isolinux.bin")


def case_isohdpfx_grub_eltorito(tmp: pathlib.Path) -> pathlib.Path:
    """isohdpfx.bin, but the El Torito boot file is GRUB's eltorito.img (no hybrid
    signature): 'isolinux.bin missing or corrupt.' as a disk."""
    eltorito = tmp / "eltorito.img"  # what grub-mkrescue puts in an ISO for BIOS
    _sh("grub-mkimage", "-O", "i386-pc-eltorito", "-p", "/boot/grub", "-o", eltorito,
        "biosdisk", "iso9660")
    return _iso(tmp, "iso-grub", eltorito, "eltorito.img")


# --- GRUB core.img: what it has built in, where its prefix points ---------------------------

_GRUB_UUID = "0b0070c0-de00-4a11-9e55-000000000b07"
_GRUB_CFG = "echo DISKKIT-BOOT-OK\nsleep 30\n"


def _grub_disk(tmp: pathlib.Path, name: str, modules: list[str], prefix: str, *,
               tree_modules: bool = True, config: str | None = None,
               shrink_to: int | None = None) -> pathlib.Path:
    """A 64 MiB MBR disk, p1 ext4 (UUID _GRUB_UUID) with /boot/grub/grub.cfg (+ the i386-pc
    modules unless ``tree_modules`` is False), p2 ext2 at 40 MiB holding the same tree;
    core.img made by grub-mkimage with ``modules``, ``prefix`` and ``config`` (a load.cfg),
    set up by grub-bios-setup; then cut to ``shrink_to`` bytes."""
    from tests.boot.conftest import grub_install, grub_tree

    work = tmp / name
    work.mkdir()
    img = work / "disk.img"
    _sh("truncate", "-s", str(64 * MiB), img)
    run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(img)], input=(
        b"label: dos\nstart=2048, size=40960, type=83, bootable\n"
        b"start=81920, size=32768, type=83\n"), timeout=30)
    root = work / "root"
    grub_tree(root, _GRUB_CFG, with_modules=tree_modules)
    _sh("mkfs.ext4", "-q", "-F", "-U", _GRUB_UUID, "-E", f"offset={2048 * 512}", "-d", root,
        img, f"{40960 // 2}k", timeout=120)
    _sh("mkfs.ext2", "-q", "-F", "-E", f"offset={81920 * 512}", "-d", root, img,
        f"{32768 // 2}k", timeout=120)
    extra: tuple[str, ...] = ()
    if config is not None:
        cfg = work / "load.cfg"
        cfg.write_text(config)
        extra = ("-c", str(cfg))
    grub_install(work, img, prefix, modules, extra)
    if shrink_to is not None:
        with open(img, "r+b") as f:
            f.truncate(shrink_to)
    return img


def case_grub_reads_normal_from_ext4(tmp: pathlib.Path) -> pathlib.Path:
    """core.img with biosdisk part_msdos ext2, prefix (hd0,msdos1)/boot/grub: normal mode."""
    return _grub_disk(tmp, "grub-ok", ["biosdisk", "part_msdos", "ext2"],
                      "(hd0,msdos1)/boot/grub")


def case_grub_without_the_fs_module(tmp: pathlib.Path) -> pathlib.Path:
    """core.img without ext2: the prefix's ext4 is an unknown filesystem: grub rescue>."""
    return _grub_disk(tmp, "grub-nofs", ["biosdisk", "part_msdos"], "(hd0,msdos1)/boot/grub")


def case_grub_normal_built_in(tmp: pathlib.Path) -> pathlib.Path:
    """No modules under the prefix, but normal is built into core.img: normal mode."""
    return _grub_disk(tmp, "grub-builtin", ["biosdisk", "part_msdos", "ext2", "normal", "echo",
                                            "sleep"], "(hd0,msdos1)/boot/grub",
                      tree_modules=False)


def case_grub_normal_nowhere(tmp: pathlib.Path) -> pathlib.Path:
    """No modules under the prefix and normal not built in: grub rescue>."""
    return _grub_disk(tmp, "grub-nonormal", ["biosdisk", "part_msdos", "ext2"],
                      "(hd0,msdos1)/boot/grub", tree_modules=False)


_LOAD_CFG = "search.fs_uuid {uuid} root\nset prefix=($root)'/boot/grub'\n"


def case_grub_load_cfg_uuid(tmp: pathlib.Path) -> pathlib.Path:
    """grub-install's load.cfg: search.fs_uuid finds p1, the prefix follows: normal mode."""
    return _grub_disk(tmp, "grub-uuid", ["biosdisk", "part_msdos", "ext2", "search_fs_uuid"],
                      "/boot/grub", config=_LOAD_CFG.format(uuid=_GRUB_UUID))


def case_grub_load_cfg_uuid_gone(tmp: pathlib.Path) -> pathlib.Path:
    """load.cfg searches for a UUID no filesystem has: no prefix, grub rescue>."""
    return _grub_disk(tmp, "grub-uuid-gone", ["biosdisk", "part_msdos", "ext2",
                                              "search_fs_uuid"], "/boot/grub",
                      config=_LOAD_CFG.format(uuid="5e1f0c3a-9d2b-4e7a-8c61-0d15c0de1299"))


def case_grub_prefix_partition_beyond_end(tmp: pathlib.Path) -> pathlib.Path:
    """The prefix is on p2 (starting at 40 MiB) of a disk cut to 32 MiB: grub rescue>."""
    return _grub_disk(tmp, "grub-beyond", ["biosdisk", "part_msdos", "ext2"],
                      "(hd0,msdos2)/boot/grub", shrink_to=32 * MiB)


def _memdisk_grub(tmp: pathlib.Path, name: str, with_normal: bool) -> pathlib.Path:
    """core.img with a tar memdisk as its prefix ((memdisk)/boot/grub, as
    grub-mkstandalone makes): the tar holds grub.cfg, and normal.mod with the modules it
    needs (moddep.lst) when ``with_normal``."""
    from tests.boot.conftest import GRUB_PC, grub_install

    work = tmp / name
    tree = work / "memdisk" / "boot" / "grub"
    (tree / "i386-pc").mkdir(parents=True)
    (tree / "grub.cfg").write_text(_GRUB_CFG)
    if with_normal:
        deps = {}
        for line in (GRUB_PC / "moddep.lst").read_text().splitlines():
            mod, _, needs = line.partition(":")
            deps[mod.strip()] = needs.split()
        todo, seen = ["normal", "echo", "sleep"], set()
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += deps.get(m, [])
        for m in seen:
            shutil.copy(GRUB_PC / f"{m}.mod", tree / "i386-pc" / f"{m}.mod")
    tar = work / "memdisk.tar"
    _sh("tar", "-C", work / "memdisk", "-cf", tar, "boot")
    img = work / "disk.img"
    _sh("truncate", "-s", str(16 * MiB), img)
    run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(img)],
        input=b"label: dos\nstart=2048, size=8192, type=83\n", timeout=30)
    grub_install(work, img, "(memdisk)/boot/grub", ["biosdisk", "memdisk", "tar"],
                 ("-m", str(tar)))
    return img


def case_grub_memdisk_holds_normal(tmp: pathlib.Path) -> pathlib.Path:
    """Prefix (memdisk)/boot/grub, the memdisk tar holds normal.mod: normal mode."""
    return _memdisk_grub(tmp, "grub-memdisk", True)


def case_grub_memdisk_without_normal(tmp: pathlib.Path) -> pathlib.Path:
    """The same, the tar without normal.mod: grub rescue>."""
    return _memdisk_grub(tmp, "grub-memdisk-bare", False)


# --- UEFI (OVMF): protective MBR, sector size, shim ---------------------------------------

SHIM = pathlib.Path("/usr/lib/shim/shimx64.efi")


def _grub_efi(tmp: pathlib.Path) -> pathlib.Path:
    """A GRUB for x86_64-efi with normal built in: it reaches its grub> prompt by itself."""
    out = tmp / "grubx64.efi"
    if not out.exists():
        _sh("grub-mkimage", "-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o", out, "normal",
            "part_gpt", "fat", "echo")
    return out


def _esp_disk(tmp: pathlib.Path, name: str, files: dict[str, pathlib.Path], *,
              sector_size: int = 512) -> pathlib.Path:
    """A 64 MiB GPT disk (sfdisk, ``sector_size``) whose ESP (FAT) holds ``files`` under
    /EFI/BOOT."""
    img = tmp / f"{name}.img"
    _sh("truncate", "-s", str(64 * MiB), img)
    script = b"label: gpt\nstart=1MiB, size=32MiB, type=uefi\n"
    if sector_size == 512:
        run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(img)], input=script,
            timeout=30)
    else:  # sfdisk takes the sector size of the device: a loop device with that block size
        loop = run(["losetup", "-f", "--show", "-b", str(sector_size), str(img)],
                   timeout=30).stdout.strip()
        try:
            run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", loop], input=script,
                timeout=30)
        finally:
            run(["losetup", "-d", loop], timeout=30)
    fat = tmp / f"{name}.fat"
    _sh("truncate", "-s", str(32 * MiB), fat)
    _sh("mkfs.fat", "-F", "16", fat)
    _sh("mmd", "-i", fat, "::/EFI", "::/EFI/BOOT")
    for target, src in files.items():
        _sh("mcopy", "-i", fat, src, f"::/EFI/BOOT/{target}")
    _put(img, 1 * MiB, fat.read_bytes())
    return img


def case_uefi_grub_with_protective_mbr(tmp: pathlib.Path) -> pathlib.Path:
    """GRUB as BOOTX64.EFI on a GPT with its protective MBR: boots."""
    return _esp_disk(tmp, "efi-pmbr", {"BOOTX64.EFI": _grub_efi(tmp)})


def case_uefi_grub_without_protective_mbr(tmp: pathlib.Path) -> pathlib.Path:
    """The same disk with sector 0 zeroed (no 0xEE entry): OVMF ignores the GPT."""
    img = _esp_disk(tmp, "efi-nopmbr", {"BOOTX64.EFI": _grub_efi(tmp)})
    _put(img, 0, bytes(512))
    return img


def case_uefi_gpt_4k_on_512(tmp: pathlib.Path) -> pathlib.Path:
    """A GPT written for 4 KiB sectors, attached with 512-byte sectors: no partition table."""
    return _esp_disk(tmp, "efi-4k", {"BOOTX64.EFI": _grub_efi(tmp)}, sector_size=4096)


def case_uefi_shim_with_grub(tmp: pathlib.Path) -> pathlib.Path:
    """shim as BOOTX64.EFI with grubx64.efi beside it (Secure Boot off): GRUB starts."""
    return _esp_disk(tmp, "shim-grub", {"BOOTX64.EFI": SHIM, "grubx64.efi": _grub_efi(tmp)})


def case_uefi_shim_alone(tmp: pathlib.Path) -> pathlib.Path:
    """shim as BOOTX64.EFI and nothing beside it: 'Failed to open ...grubx64.efi'."""
    return _esp_disk(tmp, "shim-alone", {"BOOTX64.EFI": SHIM})


def _shell_disk(tmp: pathlib.Path, name: str, script: str) -> pathlib.Path:
    """An ESP without \\EFI\\BOOT\\BOOTX64.EFI: GRUB as \\EFI\\debian\\grubx64.efi and a
    \\startup.nsh holding ``script``."""
    img = _esp_disk(tmp, name, {})
    nsh = tmp / f"{name}.nsh"
    nsh.write_text(script)
    fat = tmp / f"{name}.fat"  # _esp_disk's FAT, written again with the other files
    _sh("mmd", "-i", fat, "::/EFI/debian")
    _sh("mcopy", "-i", fat, _grub_efi(tmp), "::/EFI/debian/grubx64.efi")
    _sh("mcopy", "-i", fat, nsh, "::/startup.nsh")
    _put(img, 1 * MiB, fat.read_bytes())
    return img


def case_uefi_shell_startup_nsh(tmp: pathlib.Path) -> pathlib.Path:
    """No removable loader; startup.nsh starts \\EFI\\debian\\grubx64.efi: GRUB runs."""
    return _shell_disk(tmp, "nsh-ok", "FS0:\r\n\\EFI\\debian\\grubx64.efi\r\n")


def case_uefi_shell_startup_nsh_wrong_path(tmp: pathlib.Path) -> pathlib.Path:
    """startup.nsh names a loader that is not there: the shell prompt, nothing boots."""
    return _shell_disk(tmp, "nsh-bad", "FS0:\r\n\\EFI\\fedora\\grubx64.efi\r\n")


CASES: dict[str, Callable[[pathlib.Path], pathlib.Path]] = {
    name[len("case_"):].replace("_", "-"): fn for name, fn in dict(globals()).items()
    if name.startswith("case_")}


@pytest.fixture(scope="module")
def firmware_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every case built and booted once under SeaBIOS as a virtio disk (until the loader)."""
    import os

    from diskkit.boottest.run import boot_test

    os.environ["DISKKIT_ACCEL"] = "tcg"
    tmp = tmp_path_factory.mktemp("loaders")
    out: dict[str, dict[str, Any]] = {}
    for name, build in CASES.items():
        img = build(tmp)
        b = boot_test(str(img), "raw", firmware=_firmware(name), timeout=60, accel="tcg")
        out[name] = {"path": img, "boot": b}
    return out


def _firmware(name: str) -> str:
    return "uefi" if name.startswith("uefi-") else "bios"


def _verdict(path: pathlib.Path, name: str = "") -> Any:
    from diskkit.diagnose import diagnose

    return diagnose(str(path), "raw", firmware=_firmware(name))


@pytest.mark.parametrize("name", sorted(CASES))
def test_diagnose_agrees_with_seabios(name: str, firmware_runs: dict[str, dict[str, Any]]
                                      ) -> None:
    run_ = firmware_runs[name]
    boot = run_["boot"]
    assert boot.outcome != "timeout", f"{name}: SeaBIOS gave no answer: {boot.screen!r}"
    d = _verdict(run_["path"], name)
    facts = (boot.outcome, boot.messages, boot.screen[-300:])
    assert d.will_boot is not None, f"{name}: diagnose cannot tell ({d.reason}); boot {facts}"
    assert d.will_boot == boot.booted, \
        f"{name}: diagnose {d.will_boot} ({d.reason}), SeaBIOS {facts}"


def test_each_mechanism_has_a_positive_and_a_negative_case(
        firmware_runs: dict[str, dict[str, Any]]) -> None:
    """The cases are not all one-sided: each loader boots in one case and stops in another,
    by the firmware's own account."""
    by_loader: dict[str, set[bool | None]] = {}
    for name, r in firmware_runs.items():
        by_loader.setdefault(name.split("-")[0], set()).add(r["boot"].booted)
    assert by_loader == {k: {True, False} for k in by_loader}, by_loader


def test_the_stopping_message_is_the_loaders_own(firmware_runs: dict[str, dict[str, Any]]
                                                 ) -> None:
    """diagnose names what the loader prints when it stops; the firmware's screen shows it."""
    wrong = []
    for name, r in firmware_runs.items():
        if r["boot"].booted is not False or name.startswith(("uefi-", "installmbr-")):
            continue  # OVMF's shell, install-mbr's prompt: no message of their own
        screen = r["boot"].screen + r["boot"].console
        if name.startswith("superfloppy-"):  # mkfs.fat's stub, in its own words
            if "This is not a bootable disk" not in screen:
                wrong.append((name, "This is not a bootable disk", screen[-300:]))
            continue
        if name.startswith("grub-"):  # core.img's own end: GRUB's rescue shell
            if "grub rescue>" not in screen or "rescue" not in _verdict(r["path"]).reason:
                wrong.append((name, "grub rescue>", screen[-300:]))
            continue
        step = _step(r["path"])
        said = step.message.rstrip(".") if step is not None and step.message else None
        if said is None or said not in screen:
            wrong.append((name, said, screen[-300:]))
    assert not wrong, wrong


def _step(path: pathlib.Path) -> Any:
    from diskkit.boot import inspect_boot
    from diskkit.layout import inspect_layout
    from diskkit.readers.raw import FileReader

    with FileReader(str(path)) as r:
        return inspect_boot(r, inspect_layout(r)).mbr_step


def test_altmbr_reads_the_byte_at_0x1b7() -> None:
    """The rule is read from the byte, not from the active flag (pure, no firmware)."""
    from diskkit.boot.bootcode import identify
    from diskkit.boot.loaders import variant

    code = (SYSLINUX_MBR / "altmbr.bin").read_bytes().ljust(510, b"\0") + b"\x55\xaa"
    assert variant(identify(code), code) == "syslinux-altmbr"
    gpt = (SYSLINUX_MBR / "gptmbr.bin").read_bytes().ljust(510, b"\0") + b"\x55\xaa"
    assert variant(identify(gpt), gpt) == "syslinux-gptmbr"
    iso = (ISOLINUX / "isohdpfx.bin").read_bytes().ljust(510, b"\0") + b"\x55\xaa"
    assert variant(identify(iso), iso) == "isohdpfx"
    assert struct.unpack_from("<I", (ISOLINUX / "isolinux.bin").read_bytes(), 64)[0] == \
        0x7078C0FB


def _qemu_starts(image: pathlib.Path) -> tuple[bool, str]:
    """Does qemu-system-x86_64 start with this qcow2 as its disk? (-S: no CPU runs; it is
    stopped by its timeout when it did start)."""
    from diskkit.errors import CommandError

    try:
        run(["timeout", "3", "qemu-system-x86_64", "-nodefaults", "-display", "none", "-S",
             "-machine", "accel=tcg", "-drive", f"file={image},format=qcow2,if=virtio,"
             "readonly=on"], timeout=30)
    except CommandError as exc:
        return exc.returncode == 124, f"{exc} {exc.stderr}"
    return True, ""


def test_missing_backing_file_is_why_qemu_will_not_start(tmp_path: pathlib.Path) -> None:
    from diskkit.diagnose import diagnose

    base, child = tmp_path / "base.qcow2", tmp_path / "child.qcow2"
    _sh("qemu-img", "create", "-q", "-f", "qcow2", base, "64M")
    _sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", child)
    started, _ = _qemu_starts(child)
    assert started  # the backing file is there: qemu starts
    assert "backing-file-missing" not in [x.code for x in diagnose(str(child)).findings]
    base.unlink()
    started, said = _qemu_starts(child)
    assert not started and "base.qcow2" in said  # qemu's own refusal names the file
    d = diagnose(str(child))
    assert d.will_boot is False and d.cause is not None
    assert d.cause.code == "backing-file-missing" and "qemu will not start" in d.reason


@pytest.mark.parametrize(("name", "layout_code"), [
    ("gptmbr-partition-beyond-end", "partition-beyond-disk"),
    ("grub-prefix-partition-beyond-end", "partition-beyond-disk"),
    ("uefi-grub-without-protective-mbr", "gpt-protective-mbr-missing"),
])
def test_diagnose_shows_the_deciding_layout_finding(name: str, layout_code: str,
                                                    tmp_path: pathlib.Path) -> None:
    """The layout finding behind the verdict is listed with diagnose's own cause (the boots
    themselves are compared in test_diagnose_agrees_with_seabios)."""
    from diskkit.layout import inspect_layout
    from diskkit.readers.raw import FileReader

    img = CASES[name](tmp_path)
    with FileReader(str(img)) as r:
        assert layout_code in [x.code for x in inspect_layout(r).findings]  # what layout says
    d = _verdict(img, name)
    codes = [x.code for x in d.findings]
    assert d.will_boot is False and layout_code in codes, codes
