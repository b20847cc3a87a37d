"""Windows past the boot code: the storage driver for the chosen bus must be a boot-start
service (Start = 0) in the SYSTEM hive's current control set, else Windows stops with
0x7B INACCESSIBLE_BOOT_DEVICE after the boot manager."""

from __future__ import annotations

from typing import Any

from diskkit.diagnose.stages import CANNOT_TELL, FAILS, OK, Stage
from diskkit.findings import Finding, Severity

#: The driver service that reads the disk on each bus (viostor: virtio-blk, vioscsi:
#: virtio-scsi, storahci: AHCI/SATA, intelide/atapi: IDE).
BUS_SERVICES = {"virtio": ("viostor",), "scsi": ("vioscsi",), "sata": ("storahci",),
                "ide": ("intelide", "atapi")}


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
