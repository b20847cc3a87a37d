"""The rules: from :class:`~diskkit.diagnose.facts.Facts` to a verdict, its reason and the
findings, cause first. Each rule follows what the firmware does (../shared/notes/boot.md):
SeaBIOS checks only 55 AA at 0x1FE of the first disk's sector 0 (src/boot.c) and then runs
whatever code is there; OVMF looks for \\EFI\\BOOT\\BOOTX64.EFI on FAT filesystems (GPT, El
Torito, MBR partitions; BmBoot.c); a CD-ROM boots through El Torito (src/cdrom.c)."""

from __future__ import annotations

import os

from diskkit.boot import GrubInfo
from diskkit.boot.loaders import MbrStep
from diskkit.diagnose import fixes
from diskkit.diagnose.facts import Facts, is_container, is_kind
from diskkit.findings import Evidence, Finding, Severity
from diskkit.formats import registry
from diskkit.formats.registry import Kind

Verdict = tuple[bool | None, str, list[Finding]]

#: MBR code that loads the active partition's boot sector (and nothing else).
CHAINLOADERS = ("windows", "syslinux", "libparted", "msdos", "generic-mbr", "install-mbr",
                "freedos", "reactos", "mbldr")


def _s0(f: Facts, note: str = "sector 0 (first 16 bytes)") -> Evidence:
    return Evidence(note, 0, f.sector0[:16], "disk")


def _sig(f: Facts) -> Evidence:
    found = f.sector0[510:512]
    return Evidence("bytes at 0x1FE: SeaBIOS boots only when they are 55 AA, else it says "
                    "'Boot failed: not a bootable disk'", 0x1FE, found, "disk")


def _finding(code: str, message: str, evidence: list[Evidence], fix: str,
             severity: Severity = Severity.CRITICAL, **details: object) -> Finding:
    return Finding(code, severity, message, tuple(evidence), fix, dict(details))


def universal(f: Facts) -> Verdict | None:
    """Causes whatever the firmware: not a disk at all, or nothing on it."""
    fmt = f.detection.format
    if f.format == "raw" and is_kind(fmt, Kind.COMPRESSED):
        return False, f"the volume holds a {fmt} file, not a disk", [_finding(
            "compressed-image", f"the bytes are a {fmt}-compressed file sent as a raw disk: "
            "sector 0 is the compression header, not boot code", [_s0(f), _sig(f)],
            fixes.compressed(fmt), format=fmt)]
    if f.format == "raw" and is_kind(fmt, Kind.ARCHIVE):
        return False, f"the volume holds a {fmt} archive, not a disk", [_finding(
            "archive-image", f"the bytes are a {fmt} archive sent as a raw disk",
            [_s0(f), _sig(f)], fixes.archive(fmt), format=fmt)]
    if f.format == "raw" and is_container(f.detection):
        return False, f"{fmt} bytes in a raw volume: the firmware reads the {fmt} header as " \
            "sector 0", [_finding(
                "container-as-raw", f"a {fmt} image was written as it is into a raw volume "
                f"(uploaded with disk_format=raw): sector 0 is the {fmt} header "
                f"({f.sector0[:4]!r}), no 55 AA, so the firmware finds nothing to boot",
                [_s0(f, f"sector 0: the {fmt} magic"), _sig(f)], fixes.container_as_raw(fmt),
                format=fmt)]
    missing = _missing_backing(f)
    if missing is not None:
        name, where = missing
        return False, f"qemu will not start: the backing file {name!r} does not exist", [_finding(
            "backing-file-missing", f"the {f.format} image names a backing file {name!r} "
            f"({where} on this host), which does not exist: qemu refuses to start the VM "
            "('Could not open backing file ... No such file or directory'); no firmware runs",
            [Evidence("backing file name in the image header", 8, None, "disk")],
            "give the image its backing file at that path (or rebase it onto the right one: "
            "qemu-img rebase -u -b BACKING -F FMT IMAGE), or use a flattened image",
            backing_file=name)]
    if f.disk is None:
        return None, f"cannot tell: {f.problem or 'the disk could not be opened'}", []
    if f.blank:
        scope = "nothing was ever written to it" if f.allocated == 0 else \
            "every allocated byte reads as zeros" if f.allocated <= (64 << 20) else \
            "the first 64 MiB of allocated data read as zeros"
        return False, "the volume is blank", [_finding(
            "blank-disk", f"the disk ({f.disk.size} bytes, {f.allocated} allocated) is blank: "
            f"{scope}, so sector 0 has no 55 AA and no boot code",
            [_s0(f), _sig(f)], fixes.BLANK, allocated=f.allocated)]
    return None


def _missing_backing(f: Facts) -> tuple[str, str] | None:
    """(name, host path) of a backing file the image names and the host lacks: qemu
    (block.c bdrv_open_backing_file) resolves a relative name against the image's directory
    and will not start without it. Only a stat of the path: nothing is opened."""
    if f.target.kind != "file" or not f.target.path or registry.get(f.format).raw_bytes:
        return None
    for x in f.detection.findings:
        name = x.details.get("backing_file") if x.code == "qcow2-backing-file" else None
        if not isinstance(name, str) or not name or ":" in name.split("/", 1)[0]:
            continue  # no name, or a protocol (nbd:, rbd:, json:): not a host file
        where = os.path.join(os.path.dirname(os.path.abspath(f.target.path)), name)
        if not os.path.lexists(where):
            return name, where
    return None


def _no_code(f: Facts, cause: str) -> Finding:
    existing = [x for x in (f.boot.findings if f.boot else ()) if x.code == "no-boot-code"]
    if existing:
        return existing[0]
    return _finding("no-boot-code", cause, [_s0(f), _sig(f)], fixes.NO_BOOT_CODE,
                    Severity.ERROR)


def bios_disk(f: Facts) -> Verdict:
    """SeaBIOS, the target as the first hard disk."""
    b = f.boot
    if not f.signature:
        if b is not None and b.eltorito is not None and b.eltorito.catalog_present:
            return False, "an ISO attached as a disk: its sector 0 is empty", [_finding(
                "iso-as-disk", "this is a plain (non-hybrid) ISO 9660 image attached as a "
                "disk: its first 32 KiB (system area) are zeros, there is no 55 AA, and BIOS "
                "firmware boots CDs only from a CD-ROM drive (El Torito)",
                [_sig(f), Evidence("ISO 9660 volume descriptor ('CD001')", 0x8001, b"CD001",
                                   "disk")], fixes.ISO_AS_DISK)]
        return False, "no 55 AA boot signature in sector 0", [_finding(
            "no-boot-signature", "sector 0 has no 55 AA signature: SeaBIOS says 'Boot "
            "failed: not a bootable disk' and moves on", [_s0(f), _sig(f)],
            fixes.NO_SIGNATURE)]
    if b is None or b.mbr is None:
        return None, f"cannot tell: {f.problem or 'boot code not read'}", []
    mbr = b.mbr
    if mbr.code_zero:
        if any(e.removable_x64 for e in b.esp):
            esp = next(e for e in b.esp if e.removable_x64)
            return False, "UEFI-only disk on BIOS firmware", [_finding(
                "uefi-only-image", "a UEFI-only disk: sector 0 is a protective/empty MBR "
                f"without boot code, the loader is \\EFI\\BOOT\\BOOTX64.EFI in {esp.where}; "
                "SeaBIOS runs the empty code and nothing boots",
                [_s0(f, "MBR code area: all zeros"), Evidence(
                    f"EFI system partition ({esp.where}) with \\EFI\\BOOT\\BOOTX64.EFI",
                    esp.offset, None, "disk")], fixes.UEFI_ONLY)]
        return False, "sector 0 has the signature but no boot code", [_no_code(
            f, "sector 0 has 55 AA but its code area is all zeros: SeaBIOS jumps to it and "
            "nothing happens")]
    judged = _by_loader_rules(f)
    if judged is not None:
        return judged
    blocking = [x for x in b.findings if (x.code.startswith("grub-") and x.severity >=
                Severity.ERROR) or x.code == "grub-normal-mod-missing"]
    if mbr.loader == "grub2":
        g = next((g for g in b.grub if g.where == "mbr"), None)
        judged = _grub_verdict(f, g) if g is not None else None
        if judged is not None:
            return judged
        if blocking:
            return False, "GRUB starts but cannot reach its modules and config", blocking
        g = next((g for g in b.grub if g.where == "mbr"), None)
        if g is None or g.target is None or g.target.exists is None:
            return None, "cannot tell: GRUB's prefix could not be followed", []
        return True, (f"GRUB 2 in the MBR, core.img at sector {g.core.sector}, prefix "
                      f"{g.core.prefix} found on this disk"), []
    if mbr.loader == "isohybrid":
        if b.eltorito is not None and b.eltorito.bios_bootable:
            return True, "hybrid ISO: ISOLINUX's isohybrid MBR loads the El Torito boot " \
                "image", []
        return None, "cannot tell: isohybrid MBR without a BIOS El Torito image", []
    if mbr.loader in CHAINLOADERS:
        return _chainload(f)
    if mbr.loader == "mkfs-fat-stub":
        return False, "mkfs.fat's stub prints 'This is not a bootable disk'", [_no_code(
            f, "sector 0 is a FAT boot sector made by mkfs.fat: its code only prints 'This "
            "is not a bootable disk'")]
    return None, f"cannot tell: {mbr.description} is not followed by diskkit", []


def _by_loader_rules(f: Facts) -> Verdict | None:
    """Sector 0's code judged by what it does (docs/boot-loaders.md): a filesystem boot sector
    at sector 0 (superfloppy) runs its loader; an MBR loader with its own rules follows them."""
    b = f.boot
    assert b is not None and b.mbr is not None
    mbr = b.mbr
    if mbr.superfloppy and mbr.loader not in ("mkfs-fat-stub", "grub2"):
        return True, f"the whole disk is one filesystem whose boot sector is {mbr.description}: " \
            "SeaBIOS runs that boot loader directly", []
    if b.mbr_step is not None:  # the loader's own rules (diskkit.boot.loaders)
        return _follow_step(f, b.mbr_step)
    return None


def _chainload(f: Facts) -> Verdict:
    """MBR code that loads the active partition's boot sector."""
    b = f.boot
    assert b is not None and b.mbr is not None
    active = [p for p in getattr(f.layout, "partitions", ()) if p.bootable]
    extra = []
    if b.mbr.loader == "windows":
        extra.append(_finding("windows-virtio-drivers", "Windows boot code: if the guest "
                              "lacks virtio drivers it stops with INACCESSIBLE_BOOT_DEVICE "
                              "after the boot manager", [_s0(f)], fixes.WINDOWS_VIRTIO,
                              Severity.INFO))
    if not active:
        return False, "the MBR code loads the active partition, and none is active", [
            _finding("no-active-partition", f"{b.mbr.description} boots the active "
                     "partition, and no partition is marked active: it stops with "
                     "'Missing operating system' or similar",
                     [Evidence("partition table", 0x1BE, f.sector0[0x1BE:0x1FE], "disk")],
                     "mark the boot partition active: sfdisk --activate /dev/vda 1 (or parted "
                     "set 1 boot on)", Severity.ERROR), *extra]
    return _vbr_verdict(f, active[0].number, active[0].start, extra)


def _vbr_verdict(f: Facts, number: int, start: int, extra: list[Finding],
                 how: str = "") -> Verdict:
    """The MBR code hands over to the boot sector of partition ``number``."""
    b = f.boot
    assert b is not None and b.mbr is not None
    how = how or b.mbr.description
    vbr = next((v for v in b.vbrs if v.offset == start), None)
    if vbr is None or vbr.code_zero or not vbr.signature:
        return False, "the partition it loads has no boot code", [_finding(
            "vbr-no-boot-code", f"{how}: partition {number}, whose boot "
            "sector has no boot code or no 55 AA", [Evidence(
                f"boot sector of partition {number}", start,
                None, "disk")], fixes.NO_BOOT_CODE, Severity.ERROR), *extra]
    where = f"partition {number}"
    broken = [x for x in b.findings if x.code.startswith("grub-")
              and x.details.get("where", where) == where and x.severity >= Severity.ERROR]
    g = next((g for g in b.grub if g.where == where), None)
    judged = _grub_verdict(f, g) if vbr.loader == "grub2" and g is not None else None
    if judged is not None:
        return judged[0], f"{how} loads {where}: {judged[1]}", [*judged[2], *extra]
    if vbr.loader == "grub2" and broken:
        return False, f"GRUB in {where} cannot reach its modules and config", [*broken, *extra]
    if not vbr.known:
        return None, f"cannot tell: {how} loads {where}, whose boot code is " \
            "not one diskkit knows", extra
    return True, f"{how} loads {where}: {vbr.description}", extra


def _grub_verdict(f: Facts, g: GrubInfo) -> Verdict | None:
    """GRUB's core.img judged by what it does at start-up (diskkit.boot.grubcore)."""
    v = g.verdict
    if v is None or v.boots is None:
        return None
    if v.boots:
        return True, f"GRUB 2 in the {g.where}, core.img at sector {g.core.sector}: {v.reason}", []
    same = [x for x in (f.boot.findings if f.boot else ()) if x.code == v.code]
    return False, f"GRUB starts but stops at 'grub rescue>': {v.reason}", same or [_finding(
        v.code or "grub-core-img-missing", f"GRUB's core.img (sector {g.core.sector}, "
        f"modules {', '.join(g.core.modules) or 'none'}): {v.reason}",
        [Evidence(f"boot.img in the {g.where} points at sector {g.core.sector}",
                  g.core.offset, None, "disk")], v.fix or fixes.NO_BOOT_CODE, Severity.ERROR,
        prefix=v.prefix, modules=list(g.core.modules)), *_layout_findings(f)]


#: Layout findings that decide a verdict: diagnose lists them after its own cause.
LAYOUT_DECIDING = ("gpt-protective-mbr-missing", "protective-mbr-invalid",
                   "partition-beyond-disk")


def _layout_findings(f: Facts) -> list[Finding]:
    return [x for x in getattr(f.layout, "findings", ()) or () if x.code in LAYOUT_DECIDING]


def _follow_step(f: Facts, step: MbrStep) -> Verdict:
    """The MBR code's next step, by the loader's own rules (docs/boot-loaders.md)."""
    b = f.boot
    assert b is not None and b.mbr is not None
    if step.boots is None:
        return None, f"cannot tell: {b.mbr.description}: {step.reason}", []
    if step.boots is False:
        said = f" and prints '{step.message}'" if step.message else ""
        return False, f"{b.mbr.description} stops: {step.reason}", [_finding(
            step.code or "boot-code-stops", f"{b.mbr.description} {step.rule}; here "
            f"{step.reason}: it stops{said}", [_s0(f, "MBR boot code and its parameters"),
                                              Evidence("partition table", 0x1BE,
                                                       f.sector0[0x1BE:0x1FE], "disk")],
            step.fix or fixes.NO_BOOT_CODE, Severity.ERROR, loader=step.loader,
            rule=step.rule), *_layout_findings(f)]
    if step.partition is not None and step.offset is not None:
        return _vbr_verdict(f, step.partition, step.offset, [],
                            f"{b.mbr.description} ({step.reason})")
    return True, f"{b.mbr.description}: {step.reason}", []


def uefi_disk(f: Facts) -> Verdict:
    """OVMF, the target as a disk: \\EFI\\BOOT\\BOOTX64.EFI on a FAT filesystem."""
    b = f.boot
    if b is None:
        return None, f"cannot tell: {f.problem or 'boot facts not read'}", []
    u = b.uefi_step  # the disk-level rules of edk2 and shim (diskkit.boot.uefi)
    if u is not None and u.boots is False:
        layout = _layout_findings(f)
        return False, u.reason, [_finding(
            u.code or "no-uefi-loader", u.reason, [_s0(f, "sector 0 (protective MBR)")],
            u.fix or fixes.UEFI_ONLY, Severity.ERROR), *layout]
    found = [e for e in b.esp if e.removable_x64]
    if b.eltorito is not None:
        found += [x.efi for x in b.eltorito.efi_entries if x.efi and x.efi.removable_x64]
    if u is not None and u.boots and (found or u.loader == "startup.nsh"):
        return True, u.reason, []
    if found:
        return True, f"\\EFI\\BOOT\\BOOTX64.EFI found in {found[0].where}", []
    no_loader = [x for x in b.findings if x.code == "esp-without-removable-loader"]
    if no_loader:
        return False, "an EFI system partition without the removable-media loader", \
            no_loader
    if f.signature and b.mbr is not None and not b.mbr.code_zero:
        return False, "a BIOS-only disk on UEFI firmware", [_finding(
            "bios-only-image", f"a BIOS-only disk ({b.mbr.description} in sector 0, no EFI "
            "system partition): UEFI firmware finds no \\EFI\\BOOT\\BOOTX64.EFI and says "
            "'No bootable option or device was found' (or starts its shell)",
            [_s0(f, "BIOS boot code in sector 0")], fixes.BIOS_ONLY)]
    return False, "no UEFI loader on this disk", [_finding(
        "no-uefi-loader", "no FAT filesystem on this disk holds \\EFI\\BOOT\\BOOTX64.EFI",
        [_s0(f)], fixes.UEFI_ONLY.replace("boot it with UEFI firmware", "install a UEFI "
                                          "loader (grub-install --removable)"),
        Severity.ERROR)]


def cdrom(f: Facts, firmware: str) -> Verdict:
    """The target as a CD-ROM (El Torito)."""
    e = f.boot.eltorito if f.boot else None
    if e is None or not e.catalog_present:
        return False, "not a bootable CD: no El Torito boot catalog", [_finding(
            "cdrom-not-bootable", "attached as a CD-ROM, but there is no ISO 9660 El Torito "
            "boot record at sector 17: SeaBIOS says 'Could not read from CDROM (code 4/5)'",
            [Evidence("sector 17 of the CD (byte 0x8800)", 0x8800, None, "disk")],
            fixes.CDROM, Severity.ERROR)]
    if firmware == "uefi":
        ok = [x for x in e.efi_entries if x.efi and x.efi.removable_x64]
        if ok:
            return True, "El Torito EFI image with \\EFI\\BOOT\\BOOTX64.EFI", []
        return False, "no EFI boot image in the El Torito catalog", [_finding(
            "cdrom-not-bootable", "the El Torito catalog has no EFI image holding "
            "\\EFI\\BOOT\\BOOTX64.EFI: OVMF cannot boot this CD",
            [Evidence("boot catalog", (e.catalog_lba or 0) * 2048, None, "disk")],
            fixes.CDROM, Severity.ERROR)]
    if e.bios_bootable:
        return True, f"El Torito: bootable x86 default entry at ISO sector " \
            f"{e.entries[0].load_rba}", []
    found = [x for x in f.boot.findings if x.code == "eltorito-not-bios-bootable"] \
        if f.boot else []
    return False, "the El Torito catalog has no bootable x86 default entry", found or [
        _finding("cdrom-not-bootable", "the El Torito catalog is not BIOS-bootable",
                 [], fixes.CDROM, Severity.ERROR)]
