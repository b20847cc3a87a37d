"""Cloud readiness: will an instance booted from this image get its SSH key, grow its root,
show its console log and boot on virtio? One finding per problem, each with the guest file and
line that proves it and the fix.

Severity: ERROR when the instance will not come up on a default OpenStack/KVM flavor (no
virtio driver in the initramfs, fstab naming a disk that will not exist, a filesystem larger
than its partition); WARNING when it comes up but is not usable as a cloud image (no
cloud-init, no growable root, no serial console...); INFO for advice (qemu-guest-agent, the
firmware the image needs).
"""

from __future__ import annotations

from typing import Any

from diskkit.findings import Evidence, Finding, Severity

GIB = 1 << 30


def _src(note: str, source: Any) -> Evidence:
    """Evidence naming a guest file and line (a diskkit.guest.vfs.Source), when known."""
    if source is None:
        return Evidence(note)
    where = f"{source.path}:{source.line}" if getattr(source, "line", None) else source.path
    text = getattr(source, "text", None)
    return Evidence(f"{note}: {where}" + (f": {text.strip()}" if text else ""), None, None,
                    space="guest")


def _f(code: str, sev: Severity, message: str, fix: str, *evidence: Evidence,
       **details: Any) -> Finding:
    return Finding(code, sev, message, tuple(evidence), fix, details)


def default_kernel(root: Any) -> Any:
    """The kernel the default boot entry loads (by version in its path), else the newest."""
    kernels = tuple(root.kernels or ())
    if not kernels:
        return None
    entry = root.boot.default_entry if root.boot else None
    if entry is not None and entry.kernel:
        for k in kernels:
            if k.version and entry.kernel.endswith(k.version):
                return k
    return kernels[-1]


def _cloud_init(root: Any, out: list[Finding]) -> None:
    cf = root.cloud
    if root.type == "windows":
        win = root.windows
        if win is not None and not getattr(win, "cloudbase_init", False):
            out.append(_f("cloudbase-init-missing", Severity.WARNING,
                          "cloudbase-init is not installed: the instance gets no password, "
                          "hostname or user data from OpenStack",
                          "install cloudbase-init (cloudbase.it) and sysprep the image",
                          Evidence("Windows software hive: no Cloudbase-Init service")))
        return
    if cf is None:
        return
    ci = cf.cloud_init
    pk = root.packages
    if not ci.installed:
        out.append(_f("cloud-init-missing", Severity.WARNING,
                      "cloud-init is not installed: the instance gets no SSH key, hostname, "
                      "user data, and its root is not grown",
                      "install it in the image (apt/dnf install cloud-init cloud-guest-utils "
                      "or cloud-utils-growpart)",
                      _src("package database has no cloud-init", getattr(pk, "source", None))))
        return
    if not ci.enabled:
        why = "/etc/cloud/cloud-init.disabled exists" if ci.disabled_file else \
            "no cloud-init unit is enabled"
        out.append(_f("cloud-init-disabled", Severity.WARNING,
                      f"cloud-init is installed but will not run: {why}",
                      "rm -f /etc/cloud/cloud-init.disabled; systemctl enable cloud-init-local "
                      "cloud-init cloud-config cloud-final",
                      Evidence(f"units: {', '.join(u.name for u in ci.units) or 'none'}")))
    if not ci.openstack:
        out.append(_f("cloud-init-no-openstack-datasource", Severity.WARNING,
                      "cloud-init's datasource_list names no OpenStack-capable datasource "
                      f"({', '.join(ci.datasources or ())}): it will not find the metadata",
                      "add OpenStack and ConfigDrive to datasource_list (or remove the "
                      "restriction) in /etc/cloud/cloud.cfg.d/",
                      _src("datasource_list", ci.datasource_source)))


def _partitions(layout: Any, root: Any, disk_size: int, out: list[Finding]) -> None:
    if layout is None:
        return
    parts = sorted(layout.partitions, key=lambda p: p.start)
    for p in parts:
        if p.start + p.size > disk_size:
            out.append(_f("partition-past-disk", Severity.ERROR,
                          f"partition {p.number} ends at {p.start + p.size}, past the end of "
                          f"the {disk_size}-byte disk", "repair the partition table "
                          "(sfdisk/sgdisk) or restore the image's real size",
                          Evidence(f"partition {p.number} start {p.start} size {p.size}",
                                   p.start, None, space="disk")))
    by_loc = {f"partition {p.number}": p for p in parts}
    for fs in layout.filesystems:
        p = by_loc.get(fs.location)
        if p is not None and fs.size and fs.size > p.size:
            out.append(_f("filesystem-larger-than-partition", Severity.ERROR,
                          f"the {fs.type} filesystem in {fs.location} is {fs.size} bytes, its "
                          f"partition {p.size}: reads past the partition end fail",
                          "shrink the filesystem (resize2fs) or grow the partition",
                          Evidence(f"{fs.type} size from its superblock", fs.offset, None,
                                   space="disk")))
    if root is None or root.type != "linux":
        return
    rp = by_loc.get(root.location)
    if rp is None:
        return
    later = [p for p in parts if p.start > rp.start and p.kind != "extended"]
    if later:
        out.append(_f("root-partition-not-last", Severity.WARNING,
                      f"the root filesystem's partition {rp.number} is not the last on the disk "
                      f"(partition {later[-1].number} follows): growpart cannot grow it into a "
                      "larger flavor disk",
                      "move the root partition to the end (or the partitions after it into "
                      "LVM or files) before upload",
                      Evidence(f"partition {rp.number} at {rp.start}; partition "
                               f"{later[-1].number} at {later[-1].start}", rp.start, None,
                               space="disk")))
    cf = root.cloud
    initrd_grow = any(k.initramfs and k.initramfs.facts and k.initramfs.facts.growroot
                      for k in root.kernels)
    if cf is not None and not (cf.growpart or cf.growroot or initrd_grow):
        out.append(_f("root-not-growable", Severity.WARNING,
                      "neither growpart (cloud-guest-utils / cloud-utils-growpart) nor growroot "
                      "is installed: the root stays at the image size on a larger disk",
                      "install cloud-guest-utils (Debian/Ubuntu) or cloud-utils-growpart "
                      "(RHEL/Fedora)", _src("package database", getattr(root.packages,
                                                                         "source", None))))


def _fstab(root: Any, out: list[Finding]) -> None:
    for e in root.fstab:
        if e.kind != "devname" or e.nofail:
            continue
        sev = Severity.WARNING if (e.bus or "").startswith("virtio") else Severity.ERROR
        out.append(_f("fstab-device-name", sev,
                      f"/etc/fstab mounts {e.mountpoint} by kernel name {e.spec}: the name "
                      "depends on the disk bus (virtio gives /dev/vdX, SCSI/SATA /dev/sdX)",
                      f"use UUID= or LABEL= (blkid shows them) for {e.mountpoint}",
                      _src("fstab line", e.source), spec=e.spec, mountpoint=e.mountpoint))


def _services(root: Any, out: list[Finding]) -> None:
    cf = root.cloud
    if cf is None:
        return
    for mac in cf.macs:
        out.append(_f("hardcoded-mac", Severity.WARNING,
                      f"network configuration names MAC address {mac.mac}: an instance has "
                      "another MAC, so that interface will not come up",
                      "remove the MAC match (HWADDR=, match: macaddress:, persistent net "
                      "rules) from the image", _src("MAC address", mac.source), mac=mac.mac))
    if not cf.sshd.installed or (cf.sshd.unit is not None and not cf.sshd.unit.enabled):
        what = "not installed" if not cf.sshd.installed else "not enabled"
        out.append(_f("sshd-disabled", Severity.WARNING,
                      f"the SSH server is {what}: the injected key cannot be used",
                      "install openssh-server and systemctl enable ssh (sshd)",
                      _src("sshd", cf.sshd.source)))
    if not cf.qemu_guest_agent.installed:
        out.append(_f("no-qemu-guest-agent", Severity.INFO,
                      "qemu-guest-agent is not installed: no quiesced snapshots, no password "
                      "reset through Nova", "install qemu-guest-agent and set the image "
                      "property hw_qemu_guest_agent=yes",
                      Evidence("package database has no qemu-guest-agent")))


def _console_and_drivers(root: Any, out: list[Finding]) -> None:
    boot = root.boot
    src = boot.default_entry.source if boot and boot.default_entry else None
    if boot is not None and boot.cmdline is not None and not root.serial_console:
        out.append(_f("no-serial-console", Severity.WARNING,
                      "the kernel command line has no serial console: `openstack console log "
                      "show` will be empty",
                      "add console=tty0 console=ttyS0,115200n8 to GRUB_CMDLINE_LINUX in "
                      "/etc/default/grub and run update-grub (grub2-mkconfig)",
                      _src("default boot entry", src), cmdline=boot.cmdline))
    k = default_kernel(root)
    if k is None:
        return
    has_blk, has_scsi = k.has_driver("virtio_blk"), k.has_driver("virtio_scsi")
    has_pci = k.has_driver("virtio_pci")
    init = k.initramfs.path if k.initramfs else f"initramfs of {k.version}"
    if has_blk is None:
        out.append(_f("initramfs-unread", Severity.INFO,
                      f"the initramfs of kernel {k.version} was not read: virtio drivers "
                      "unknown", "run diskkit validate again where the initramfs is readable",
                      Evidence(init)))
    elif not (has_blk or has_scsi) or has_pci is False:
        missing = [n for n, v in (("virtio_blk", has_blk), ("virtio_scsi", has_scsi),
                                  ("virtio_pci", has_pci)) if not v]
        out.append(_f("initramfs-no-virtio", Severity.ERROR,
                      f"kernel {k.version} has neither virtio_blk nor virtio_scsi (or no "
                      "virtio_pci) built in or in its initramfs: it will not find its root "
                      "on a virtio disk", "add virtio_pci virtio_blk virtio_scsi to "
                      "/etc/initramfs-tools/modules (or dracut add_drivers) and rebuild the "
                      "initramfs (update-initramfs -u -k all / dracut -f)",
                      Evidence(f"{init}: missing {', '.join(missing)}"), missing=missing))


def _firmware(boot: Any, out: list[Finding]) -> str | None:
    """'uefi', 'bios', 'both' or None (unknown), with an INFO finding for one-only images."""
    if boot is None:
        return None
    bios = boot.mbr is not None and boot.mbr.loader not in ("none", "unknown",
                                                            "mkfs-fat-stub", "libparted")
    uefi = any(e.loaders or e.removable_x64 for e in boot.esp)
    if bios and uefi:
        return "both"
    if uefi:
        out.append(_f("firmware-uefi-only", Severity.INFO,
                      "the image boots with UEFI only (an EFI system partition, no BIOS boot "
                      "code): it needs hw_firmware_type=uefi", "set the image property "
                      "hw_firmware_type=uefi (and hw_machine_type=q35)",
                      Evidence(f"ESP {boot.esp[0].where}", boot.esp[0].offset, None,
                               space="disk")))
        return "uefi"
    if bios:
        out.append(_f("firmware-bios-only", Severity.INFO,
                      "the image boots with BIOS only (no EFI system partition): keep "
                      "hw_firmware_type=bios", "nothing to do on a BIOS cloud; for UEFI-only "
                      "hosts add an ESP and grub-efi", Evidence(
                          f"MBR boot code: {boot.mbr.loader}", 0, None, space="disk")))
        return "bios"
    return None


def readiness(layout: Any, boot: Any, guest: Any, disk_size: int) -> tuple[list[Finding],
                                                                           str | None]:
    """Every cloud-readiness finding for the disk, and the firmware it boots with."""
    out: list[Finding] = []
    root = guest.root if guest is not None else None
    _partitions(layout, root, disk_size, out)
    firmware = _firmware(boot, out)
    if root is None:
        if guest is not None:
            out.append(_f("no-operating-system", Severity.WARNING,
                          "no operating system was found on the disk: nothing to boot",
                          "check that this is the right image", Evidence(
                              "; ".join(guest.notes) or "no root filesystem recognised")))
        return out, firmware
    _cloud_init(root, out)
    if root.type == "linux":
        _fstab(root, out)
        _services(root, out)
        _console_and_drivers(root, out)
    elif root.type == "windows" and root.windows is not None:
        _windows_drivers(root.windows, out)
    return out, firmware


def windows_boot_driver(win: Any, name: str) -> Any:
    """The Windows service ``name`` when it starts at boot (Start=0), else None."""
    svc = win.service(name)
    return svc if svc is not None and svc.start == 0 else None


def _windows_drivers(win: Any, out: list[Finding]) -> None:
    if windows_boot_driver(win, "viostor") or windows_boot_driver(win, "vioscsi"):
        return
    svc = win.service("viostor") or win.service("vioscsi")
    ev = _src("viostor service", svc.source) if svc is not None else \
        Evidence("SYSTEM hive: no viostor or vioscsi service")
    out.append(_f("windows-no-virtio", Severity.ERROR,
                  "Windows has no virtio storage driver starting at boot (viostor/vioscsi, "
                  "Start=0): on a virtio disk it stops with INACCESSIBLE_BOOT_DEVICE",
                  "install the virtio-win drivers (viostor, netkvm) before upload, or set "
                  "hw_disk_bus=sata", ev))
