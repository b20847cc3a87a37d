"""Boot findings: facts of :class:`diskkit.boot.BootInfo` that stop a disk from booting.

Codes (docs/findings.md, "Boot"): no-boot-code, grub-core-img-missing,
grub-prefix-partition-missing, grub-cfg-missing, grub-normal-mod-missing,
bios-boot-partition-missing, esp-without-removable-loader, eltorito-not-bios-bootable,
unknown-boot-code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diskkit.findings import Evidence, Finding, Severity

if TYPE_CHECKING:
    from diskkit.boot import BootInfo, GrubInfo

_GRUB_FIX = ("reinstall GRUB onto this disk from the guest (grub-install /dev/vda && "
             "update-grub), or from a rescue system")


def _grub_findings(g: GrubInfo) -> list[Finding]:
    out: list[Finding] = []
    ev = Evidence(f"boot.img in the {g.where} points at sector {g.core.sector}",
                  g.core.offset, None, "disk")
    if not g.core.found or g.core.error:
        out.append(Finding(
            "grub-core-img-missing", Severity.ERROR,
            f"GRUB's boot.img in the {g.where} points at sector {g.core.sector}, but no usable "
            f"core.img is there: {g.core.error or 'not found'}",
            (ev,), _GRUB_FIX, {"where": g.where, "sector": g.core.sector}))
        return out
    t = g.target
    if t is None:
        return out
    if t.exists is False:
        out.append(Finding(
            "grub-prefix-partition-missing", Severity.ERROR,
            f"GRUB's prefix {t.prefix!r} names a volume that is not on this disk: {t.note}",
            (ev,), _GRUB_FIX, {"prefix": t.prefix, "kind": t.kind}))
    elif t.exists and t.grub_cfg is False:
        sev = Severity.WARNING
        out.append(Finding(
            "grub-cfg-missing", sev,
            f"GRUB's prefix {t.prefix!r} exists but holds no grub.cfg: GRUB stops at its "
            "command line", (ev,), "run update-grub (grub-mkconfig -o "
            f"{t.path.rstrip('/')}/grub.cfg) in the guest", {"prefix": t.prefix}))
    if t.exists and t.normal_mod is False:
        out.append(Finding(
            "grub-normal-mod-missing", Severity.WARNING,
            f"no i386-pc/normal.mod under GRUB's prefix {t.prefix!r}: GRUB drops to the "
            "'grub rescue>' prompt", (ev,), _GRUB_FIX, {"prefix": t.prefix}))
    return out


def boot_findings(info: BootInfo) -> list[Finding]:
    """The findings of ``info`` (pure)."""
    out: list[Finding] = []
    mbr = info.mbr
    uefi_ok = any(e.removable_x64 for e in info.esp)
    iso = info.eltorito
    if mbr is not None and (mbr.code_zero or not mbr.signature) and not uefi_ok \
            and not (iso and iso.catalog_present):
        out.append(Finding(
            "no-boot-code", Severity.ERROR,
            "sector 0 holds no boot code" + ("" if mbr.signature else " and no 55 AA signature")
            + ", and there is no UEFI loader or El Torito catalog: no firmware can boot it",
            (Evidence("MBR code area and signature", 0, bytes.fromhex(mbr.first_bytes), "disk"),),
            "install a boot loader (grub-install), or write an image that has one",
            {"signature": mbr.signature}))
    if mbr is not None and mbr.loader == "unknown":
        out.append(Finding(
            "unknown-boot-code", Severity.INFO,
            f"unknown MBR boot code (sha256 {mbr.sha256[:16]}...)",
            (Evidence("first bytes of the MBR", 0, bytes.fromhex(mbr.first_bytes), "disk"),),
            None, {"sha256": mbr.sha256}))
    for g in info.grub:
        out.extend(_grub_findings(g))
    # A hybrid ISO (grub-mkrescue) keeps core.img inside its ISO 9660 filesystem, written
    # once: it needs no BIOS boot partition, so the warning is only for installed disks.
    hybrid_iso = iso is not None and iso.catalog_present
    if info.table == "gpt" and info.bios_boot_partition is None and not hybrid_iso and any(
            g.where == "mbr" for g in info.grub):
        out.append(Finding(
            "bios-boot-partition-missing", Severity.WARNING,
            "GRUB for BIOS is in the MBR of a GPT disk without a BIOS boot partition "
            "(type 21686148-6449-6E6F-744E-656564454649): its core.img has no safe place",
            (Evidence("protective MBR with GRUB boot.img", 0, None, "disk"),),
            "create a 1 MiB BIOS boot partition (sgdisk -n 0:0:+1M -t 0:ef02) and run "
            "grub-install again"))
    for e in info.esp:
        if e.esp_type and not e.removable_x64:
            out.append(Finding(
                "esp-without-removable-loader", Severity.WARNING,
                f"the EFI system partition ({e.where}) has no \\EFI\\BOOT\\BOOTX64.EFI: UEFI "
                "firmware without saved boot entries (a new VM) finds nothing to boot",
                (Evidence(f"ESP at {e.where}", e.offset, None, "disk"),),
                "install the fallback loader: grub-install --removable (or copy shimx64.efi "
                "to \\EFI\\BOOT\\BOOTX64.EFI)",
                {"loaders": [x.path for x in e.loaders]}))
    if iso is not None and iso.catalog_present and not iso.bios_bootable:
        out.append(Finding(
            "eltorito-not-bios-bootable", Severity.WARNING,
            f"the El Torito catalog is for platform {iso.validation_platform} with default "
            "entry bootable=" + str(bool(iso.entries and iso.entries[0].bootable))
            + ": SeaBIOS cannot boot this CD (UEFI firmware may)",
            (Evidence("boot catalog", (iso.catalog_lba or 0) * 2048, None, "disk"),),
            "boot it with UEFI firmware (hw_firmware_type=uefi), or rebuild the ISO with a "
            "BIOS boot image (xorriso -b ... -no-emul-boot)"))
    return out
