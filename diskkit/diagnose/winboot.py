r"""Windows past the boot code: the boot manager and its BCD store must be on a filesystem of
the disk (BIOS: ``\bootmgr`` and ``\Boot\BCD`` on the active/system partition, else
"BOOTMGR is missing" / "The Boot Configuration Data ... is missing"; UEFI:
``\EFI\Microsoft\Boot\BCD`` on the ESP), and the storage driver for the chosen bus must be a
boot-start service (Start = 0) in the SYSTEM hive's current control set, else Windows stops
with 0x7B INACCESSIBLE_BOOT_DEVICE after the boot manager."""

from __future__ import annotations

from typing import Any

from diskkit.diagnose.stages import CANNOT_TELL, FAILS, OK, Stage
from diskkit.errors import DiskkitError
from diskkit.findings import Finding, Severity

#: The driver service that reads the disk on each bus (viostor: virtio-blk, vioscsi:
#: virtio-scsi, storahci: AHCI/SATA, intelide/atapi: IDE).
BUS_SERVICES = {"virtio": ("viostor",), "scsi": ("vioscsi",), "sata": ("storahci",),
                "ide": ("intelide", "atapi")}


#: (firmware, files that must be on one filesystem), Windows' own paths.
BOOT_FILES = {"bios": (("bootmgr",), ("boot", "bcd")),
              "uefi": (("efi", "microsoft", "boot", "bcd"),)}


def _ci_exists(fs: Any, parts: tuple[str, ...]) -> bool:
    """``parts`` found case-insensitively from the root, as Windows looks them up."""
    cur = "/"
    for p in parts:
        try:
            names = fs.names(cur)
        except OSError:
            return False
        hit = next((n for n in names if n.lower() == p), None)
        if hit is None:
            return False
        cur = cur.rstrip("/") + "/" + hit
    return True


def boot_manager(disk: Any, layout: Any, firmware: str) -> Stage:
    """The Windows Boot Manager and BCD store on some NTFS/FAT filesystem of the disk."""
    from diskkit.guest.fs import open_location

    want = BOOT_FILES[firmware]
    looked = []
    for f in getattr(layout, "filesystems", ())[:64]:
        if f.type not in ("ntfs", "vfat"):
            continue
        looked.append(f.location)
        try:
            fs = open_location(disk, layout, f.location)
        except (OSError, DiskkitError):  # unreadable: it does not count
            continue
        try:
            if all(_ci_exists(fs, p) for p in want):
                return Stage("boot-loader", OK, "the Windows Boot Manager and its BCD are in "
                             f"{f.location}", tuple("\\" + "\\".join(p) + f" in {f.location}"
                                                    for p in want))
        finally:
            fs.close()
    names = " and ".join("\\" + "\\".join(p) for p in want)
    return Stage("boot-loader", FAILS, f"no filesystem ({', '.join(looked) or 'none'}) holds "
                 f"{names}: 'BOOTMGR is missing' / 'The Boot Configuration Data for your PC is "
                 "missing'", (), (Finding(
                     "windows-bootmgr-missing", Severity.CRITICAL,
                     f"Windows' boot files {names} are on no filesystem of this disk",
                     (), "rebuild them from Windows recovery media: bcdboot C:\\Windows /s S: "
                     "/f ALL (S: = the system partition), or bootrec /rebuildbcd",
                     {"firmware": firmware, "looked": looked}),), "grub-error")


def kernel(root: Any, bus: str) -> Stage:
    """The Windows kernel finds its boot disk (a ``kernel`` stage)."""
    w = root.windows
    if w is None or not w.services:
        return Stage("kernel", CANNOT_TELL, "the SYSTEM hive's services were not read")
    ev = []
    for name in BUS_SERVICES[bus]:
        s = w.service(name)
        if s is not None:
            ev.append(f"{s.source}: {name} Start={s.start} ({s.start_name})")
            if s.start == 0:
                return Stage("kernel", OK, f"{name} is a boot-start driver: Windows sees its "
                             f"disk on the {bus} bus", tuple(ev))
    usable = [b for b, names in BUS_SERVICES.items()
              if any((s := w.service(n)) is not None and s.start == 0 for n in names)]
    fix = ("install the virtio drivers (virtio-win: pnputil /add-driver viostor.inf /install, "
           "or virt-v2v/virt-customize --inject-virtio-win) and make the service boot-start")
    if usable:
        fix = (f"openstack image set --property hw_disk_bus={usable[0]} NAME (its driver is "
               f"boot-start), or {fix}")
    return Stage("kernel", FAILS, f"no boot-start driver for the {bus} bus "
                 f"({'/'.join(BUS_SERVICES[bus])}): STOP 0x7B INACCESSIBLE_BOOT_DEVICE",
                 tuple(ev), (Finding("windows-no-boot-driver", Severity.CRITICAL,
                                     f"Windows has no boot-start {'/'.join(BUS_SERVICES[bus])}"
                                     f" service for a {bus} disk: it stops with "
                                     "INACCESSIBLE_BOOT_DEVICE (0x7B)", (), fix,
                                     {"bus": bus, "usable_buses": usable}),), "kernel-panic")
