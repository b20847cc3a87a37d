"""The initramfs and the root filesystem: the kernel command line's ``root=`` (UUID, LABEL,
PARTUUID, /dev names under the chosen bus, /dev/mapper, ``rd.lvm.lv``) resolves on this disk;
the initramfs holds (or the kernel has built in) the driver for the bus, the root
filesystem's driver, LVM when the root is on LVM; an encrypted root cannot boot unattended.
Facts: the guest stage's kernels (``Kernel.has_driver``), boot config, fstab resolver."""

from __future__ import annotations

import shlex
from typing import Any

from diskkit.diagnose import guestfixes
from diskkit.diagnose.stages import CANNOT_TELL, FAILS, OK, Stage
from diskkit.findings import Finding, Severity
from diskkit.guest.fstab import Resolver

#: Kernel modules a Linux guest needs to see its disk on each bus (Nova's hw_disk_bus).
BUS_DRIVERS = {"virtio": ("virtio_pci", "virtio_blk"),
               "scsi": ("virtio_pci", "virtio_scsi", "sd_mod"),
               "sata": ("ahci", "sd_mod"), "ide": ("ata_piix", "sd_mod")}
#: Device name prefix of the first disk on each bus (virtio: vda; the others: sda).
BUS_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "ide": "sd"}
#: The module that mounts each root filesystem type.
FS_DRIVERS = {"ext2": "ext4", "ext3": "ext4", "ext4": "ext4", "xfs": "xfs", "btrfs": "btrfs",
              "vfat": "vfat"}


def cmdline_args(cmdline: str) -> dict[str, str]:
    """key=value (last wins) and bare words (value "") of a kernel command line."""
    out: dict[str, str] = {}
    try:
        words = shlex.split(cmdline)
    except ValueError:
        words = cmdline.split()
    for w in words:
        k, _, v = w.partition("=")
        out[k] = v
    return out


def _finding(code: str, message: str, fix: str, **details: Any) -> Finding:
    return Finding(code, Severity.CRITICAL, message, (), fix, dict(details))


def _kernel_of(root: Any, entry: Any) -> Any:
    for k in root.kernels:
        if k.path and entry is not None and entry.kernel and \
                k.path.endswith(entry.kernel.split(")")[-1]):
            return k
    return root.kernels[0] if len(root.kernels) == 1 else None


def resolve_root(spec: str, layout: Any, bus: str) -> tuple[str | None, str]:
    """(location, note) of ``root=spec`` on this disk attached on ``bus``."""
    kind, location, name_bus, note = Resolver(layout).resolve(spec)
    if kind == "devname" and location is not None:
        prefix = spec[5:7]
        if prefix != BUS_PREFIX[bus] and not spec.startswith("/dev/nvme"):
            return None, (f"{spec} is a {name_bus} device name; attached on {bus} this disk "
                          f"is /dev/{BUS_PREFIX[bus]}a")
    return location, note or ""


def initramfs(facts: Any, root: Any, entry: Any, bus: str, image: str,
              ) -> list[Stage]:
    """The ``initramfs`` and ``root-filesystem`` stages."""
    cmdline = (entry.cmdline if entry is not None else None) or \
        (root.boot.cmdline if root.boot else None) or ""
    args = cmdline_args(cmdline)
    ev = [f"kernel command line: {cmdline}"]
    k = _kernel_of(root, entry)
    if k is None:
        return [Stage("initramfs", CANNOT_TELL, "the kernel the boot entry loads was not "
                      "found among the guest's kernels", tuple(ev))]
    generator = (k.initramfs.facts.generator if k.initramfs and k.initramfs.facts else None)
    shell = "dracut-shell" if generator == "dracut" else "initramfs-shell"
    if k.initramfs is None:
        ev.append(f"{k.version}: no initrd")
        shell = "kernel-panic"
    spec = args.get("root")
    if not spec:
        return [Stage("initramfs", CANNOT_TELL, "no root= on the kernel command line",
                      tuple(ev))]
    location, note = resolve_root(spec, facts.layout, bus)
    # Drivers first: without the bus driver no root= of any kind appears.
    missing = [d for d in BUS_DRIVERS[bus] if k.has_driver(d) is False]
    unknown = [d for d in BUS_DRIVERS[bus] if k.has_driver(d) is None]
    where = f"{k.initramfs.path}" if k.initramfs else f"Linux {k.version}"
    if missing:
        others = [b for b, ds in BUS_DRIVERS.items()
                  if b != bus and all(k.has_driver(d) for d in ds)]
        return [Stage("initramfs", FAILS, f"{where} lacks {', '.join(missing)} (not built "
                      f"into Linux {k.version} either): on a {bus} disk the root device "
                      f"{spec} never appears", (*ev, f"{where}: no {', '.join(missing)}"),
                      (_finding("initramfs-missing-driver", f"the initramfs has no "
                                f"{', '.join(missing)} for the {bus} disk bus, and the "
                                "kernel does not build them in: it waits for the root "
                                f"device, then drops to a shell ('ALERT! {spec} does not "
                                "exist')", guestfixes.add_drivers(
                                    missing, generator, bus, others, image),
                                bus=bus, drivers=missing, usable_buses=others),), shell)]
    ev.append(f"{where}: {', '.join(BUS_DRIVERS[bus])} "
              + ("present" if not unknown else f"(not read: {', '.join(unknown)})"))
    if unknown:
        return [Stage("initramfs", CANNOT_TELL, f"{where} was not read, so its drivers for "
                      f"the {bus} bus are unknown", tuple(ev))]
    lvm_root = spec.startswith("/dev/mapper/") or "rd.lvm.lv" in args or \
        (location or "").startswith("lv ")
    if location is None:
        return [Stage("initramfs", FAILS, f"root={spec} resolves to nothing on this disk: "
                      f"{note}", tuple(ev), (_finding(
                          "root-device-not-found", f"the kernel command line asks for "
                          f"root={spec}, and {note}: the initramfs waits for it, then drops "
                          f"to a shell ('ALERT! {spec} does not exist')",
                          guestfixes.root_not_found(spec, facts.layout, root, bus, image),
                          root=spec),), shell)]
    ev.append(f"root={spec} -> {location}")
    lv = args.get("rd.lvm.lv", "")
    if lv and "/" in lv and Resolver(facts.layout).resolve(f"/dev/{lv}")[1] is None:
        return [Stage("initramfs", FAILS, f"rd.lvm.lv={lv} names no logical volume on this "
                      "disk: dracut waits for it, then drops to its emergency shell",
                      tuple(ev), (_finding("root-device-not-found", f"the kernel command "
                                           f"line asks dracut to activate {lv}, which is not "
                                           "on this disk", guestfixes.root_not_found(
                                               f"rd.lvm.lv={lv}", facts.layout, root, bus,
                                               image), root=spec),), shell)]
    fsys = next((f for f in getattr(facts.layout, "filesystems", ())
                 if f.location == location), None)
    if lvm_root and k.initramfs is not None and k.initramfs.facts is not None:
        if not k.initramfs.facts.lvm:
            return [Stage("initramfs", FAILS, f"the root is on LVM ({location}) and "
                          f"{where} has no lvm binary (initramfs-tools' lvm2 hook, dracut's "
                          "lvm module): the volume group is never activated", tuple(ev),
                          (_finding("initramfs-missing-lvm", f"root={spec} is a logical "
                                    f"volume, and {where} cannot activate LVM: it drops to a "
                                    f"shell ('ALERT! {spec} does not exist')",
                                    guestfixes.add_lvm(generator, image), root=spec),),
                          shell)]
        ev.append(f"{where}: lvm present")
    if fsys is not None and fsys.type in ("crypto_LUKS",):
        return [Stage("initramfs", FAILS, "the root is encrypted (LUKS): it waits for a "
                      "passphrase on the console and cannot boot unattended", tuple(ev),
                      (_finding("encrypted-root", "the root filesystem is LUKS-encrypted: "
                                "the initramfs asks for the passphrase at boot",
                                "boot it interactively (console) or use a key the initramfs "
                                "can fetch (clevis/tang); an unattended cloud boot cannot "
                                "type the passphrase", root=spec),), shell)]
    stages = [Stage("initramfs", OK, f"{where} finds root={spec} ({location}) on the {bus} "
                    "bus", tuple(ev))]
    if fsys is None:
        stages.append(Stage("root-filesystem", CANNOT_TELL, f"no filesystem recognised at "
                            f"{location}", ()))
        return stages
    drv = FS_DRIVERS.get(fsys.type)
    have = k.has_driver(drv) if drv else None
    fev = (f"{location}: {fsys.type} UUID {fsys.uuid}",)
    if have is False and drv:
        stages.append(Stage("root-filesystem", FAILS, f"{where} has no {drv} driver to mount "
                            f"the {fsys.type} root", fev, (_finding(
                                "initramfs-missing-fs-driver", f"the root is {fsys.type} and "
                                f"neither {where} nor the kernel has {drv}",
                                guestfixes.add_drivers([drv], generator, bus, [], image),
                                driver=drv),), shell))
    elif have is None:
        stages.append(Stage("root-filesystem", CANNOT_TELL, f"whether {fsys.type} can be "
                            "mounted is unknown", fev))
    else:
        stages.append(Stage("root-filesystem", OK, f"{fsys.type} root mounted with {drv}",
                            fev))
    return stages
