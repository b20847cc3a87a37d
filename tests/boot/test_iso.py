"""El Torito and hybrid ISOs from xorriso and grub-mkrescue, and third-party boot media from
Debian packages (grub-rescue-pc, ipxe, memtest86+), compared with xorriso's own report."""

from __future__ import annotations

import os
import pathlib
import re

import pytest

from diskkit.boot import inspect_boot
from diskkit.boot.eltorito import inspect_iso, is_iso
from diskkit.errors import CommandError
from diskkit.readers.raw import FileReader
from diskkit.runner import run
from tests.boot.conftest import sfdisk_partitions

ISOLINUX = pathlib.Path("/usr/lib/ISOLINUX")
LDLINUX = pathlib.Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
CACHE = pathlib.Path(os.environ.get("DISKKIT_TEST_CACHE", "/var/tmp/diskkit-test-cache"))
EMUL = {"none": "no-emulation", "fd1.2": "floppy-1.2M", "fd1.4": "floppy-1.44M",
        "fd2.8": "floppy-2.88M", "hd": "hard-disk"}
PLATFORM = {"BIOS": "x86", "UEFI": "efi", "PPC": "powerpc", "Mac": "mac"}


def xorriso_report(iso: pathlib.Path) -> dict:
    """El Torito entries and the system-area summary as xorriso reports them."""
    out = run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain",
               "-report_system_area", "plain"], timeout=60).stdout
    entries, catalog, summary = [], None, ""
    for line in out.splitlines():
        if m := re.match(r"El Torito catalog\s*:\s*(\d+)", line):
            catalog = int(m.group(1))
        elif line.startswith("El Torito boot img :"):
            f = line.split(":", 1)[1].split()
            entries.append((PLATFORM.get(f[1], f[1]), f[2] == "y", EMUL.get(f[3], f[3]),
                            int(f[4], 16), int(f[6]), int(f[7])))
        elif line.startswith("System area summary:"):
            summary = line.split(":", 1)[1]
    return {"entries": entries, "catalog": catalog, "summary": summary.split()}


def _check_against_xorriso(iso: pathlib.Path):
    rep = xorriso_report(iso)
    with FileReader(str(iso)) as r:
        assert is_iso(r)
        elt = inspect_iso(r)
    got = [(e.platform, e.bootable, e.media, e.load_segment, e.sector_count, e.load_rba)
           for e in elt.entries]
    assert got == rep["entries"]
    assert elt.catalog_lba == rep["catalog"]
    assert elt.hybrid_mbr == ("MBR" in rep["summary"])
    assert elt.hybrid_gpt == ("GPT" in rep["summary"])
    return elt


@pytest.fixture(scope="module")
def iso_tree(tmp_path_factory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("isotree")
    root = tmp / "root"
    (root / "isolinux").mkdir(parents=True)
    for f in (ISOLINUX / "isolinux.bin", LDLINUX):
        (root / "isolinux" / f.name).write_bytes(f.read_bytes())
    loader = tmp / "bootx64.efi"
    run(["grub-mkimage", "-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o", str(loader), "fat"],
        timeout=60)
    efi = root / "efiboot.img"
    run(["mkfs.vfat", "-C", str(efi), "2048"], timeout=30)
    run(["mmd", "-i", str(efi), "::/EFI", "::/EFI/BOOT"], timeout=10)
    run(["mcopy", "-i", str(efi), str(loader), "::/EFI/BOOT/BOOTX64.EFI"], timeout=10)
    (root / "README.TXT").write_text("diskkit test ISO\n")
    return root


BIOS = ["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot",
        "-boot-load-size", "4", "-boot-info-table"]
EFI = ["-e", "efiboot.img", "-no-emul-boot"]
HYBRID = ["-isohybrid-mbr", str(ISOLINUX / "isohdpfx.bin"), *BIOS, "-eltorito-alt-boot",
          *EFI, "-isohybrid-gpt-basdat"]


@pytest.mark.parametrize(("name", "args"), [("bios", BIOS), ("efi", EFI), ("hybrid", HYBRID),
                                            ("data", [])])
def test_xorriso_isos(tmp_path, iso_tree, name, args):
    iso = tmp_path / f"{name}.iso"
    run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), *args, str(iso_tree)],
        timeout=120)
    elt = _check_against_xorriso(iso)
    parts, table = sfdisk_partitions(iso) if name == "hybrid" else ([], None)
    with FileReader(str(iso)) as r:
        info = inspect_boot(r, partitions=parts, table=table)
    codes = [f.code for f in info.findings]
    if name == "data":
        assert not elt.catalog_present and "no-boot-code" in codes
    if name == "bios":
        assert elt.bios_bootable and info.mbr.code_zero and "no-boot-code" not in codes
    if name == "efi":
        assert elt.validation_platform == "efi" and not elt.bios_bootable
        assert "eltorito-not-bios-bootable" in codes
    if name in ("efi", "hybrid"):
        (e,) = elt.efi_entries
        assert e.efi is not None and e.efi.removable_x64
    if name == "hybrid":
        assert info.mbr.loader == "isohybrid"
        assert [x.where for x in info.esp] == ["partition 2"] and info.esp[0].removable_x64


def test_grub_mkrescue_iso(tmp_path):
    tree = tmp_path / "tree"
    (tree / "boot" / "grub").mkdir(parents=True)
    (tree / "boot" / "grub" / "grub.cfg").write_text("echo hello\n")
    iso = tmp_path / "rescue.iso"
    run(["grub-mkrescue", "-o", str(iso), str(tree)], timeout=180)
    elt = _check_against_xorriso(iso)
    assert [e.platform for e in elt.entries] == ["x86", "efi"]
    with FileReader(str(iso)) as r:
        info = inspect_boot(r)
    assert info.mbr.loader == "grub2"
    (g,) = info.grub  # boot_hybrid.img's pointer at 0x1B0 leads to a real core.img
    assert g.core.error is None and g.core.prefix is not None and "iso9660" in g.core.modules
    # The prefix has no device: GRUB's root is the boot device, the ISO 9660 filesystem,
    # where grub-mkrescue put our grub.cfg and the i386-pc modules.
    t = g.target
    assert (t.kind, t.filesystem, t.grub_cfg, t.normal_mod) == ("disk", "iso9660", True, True)
    # Its GPT has no BIOS boot partition, and needs none: core.img is in the ISO filesystem.
    from diskkit.layout import inspect_layout

    with FileReader(str(iso)) as r:
        full = inspect_boot(r, inspect_layout(r))
    assert full.table == "gpt" and full.bios_boot_partition is None
    assert "bios-boot-partition-missing" not in [f.code for f in full.findings]


def _third_party() -> pathlib.Path:
    """The ISOs of grub-rescue-pc, ipxe and memtest86+, downloaded once into CACHE."""
    x = CACHE / "x"
    if (x / "usr/lib/ipxe/ipxe.iso").exists():
        return x
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        run(["apt-get", "download", "grub-rescue-pc", "ipxe", "memtest86+"], cwd=str(CACHE),
            timeout=300)
    except CommandError as exc:
        pytest.skip(f"apt-get download failed (no package mirror reachable?): {exc}")
    for deb in CACHE.glob("*.deb"):
        run(["dpkg", "-x", str(deb), str(x)], timeout=120)
    return x


@pytest.mark.parametrize("rel", ["usr/lib/grub-rescue/grub-rescue-cdrom.iso",
                                 "usr/lib/ipxe/ipxe.iso",
                                 "usr/lib/memtest86+/memtest86+x64.iso"])
def test_third_party_isos(rel):
    iso = _third_party() / rel
    elt = _check_against_xorriso(iso)
    assert elt.bios_bootable
    parts, table = sfdisk_partitions(iso)
    with FileReader(str(iso)) as r:
        info = inspect_boot(r, partitions=parts, table=table)
    assert info.mbr.signature and info.mbr.loader != "unknown"
    if "grub-rescue" in rel:
        assert info.grub and info.grub[0].core.error is None
    for e in elt.efi_entries:
        assert e.efi is not None and e.efi.removable_x64


def test_udf_flag(tmp_path):
    import pycdlib

    iso = tmp_path / "udf.iso"
    made = pycdlib.PyCdlib()
    made.new(udf="2.60")
    made.add_fp(__import__("io").BytesIO(b"x" * 10), 10, "/A.;1", udf_path="/a")
    made.write(str(iso))
    made.close()
    with FileReader(str(iso)) as r:
        assert inspect_iso(r).udf is True
