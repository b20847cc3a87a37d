"""The readable summary of a GuestInfo (``diskkit info``'s ``os`` section): lines of text,
no printing (the CLI prints them)."""

from __future__ import annotations

from diskkit.guest.inspect import GuestInfo, OSRoot
from diskkit.guest.kernels import Kernel


def _yes(v: bool | None) -> str:
    return "?" if v is None else "yes" if v else "no"


def _windows_lines(r: OSRoot) -> list[str]:
    w = r.windows
    if w is None:
        return []
    drv = [f"{s.name}={s.start_name or s.start}" for s in w.services]
    return [f"  build {w.build or '?'}, edition {w.edition or '?'}, "
            f"{w.installation_type or '?'}; control set {w.control_set or '?'}",
            "  services: " + (", ".join(drv) if drv else "no virtio driver services"),
            f"  cloudbase-init: {_yes(w.cloudbase_init)}"]


def _kernel_line(k: Kernel) -> str:
    text = f"  kernel {k.version}"
    if k.initramfs is None:
        return text + ": no initramfs"
    f = k.initramfs.facts
    if f is None:
        return text + f": initramfs {k.initramfs.path} (not read)"
    have = [d for d in ("virtio_blk", "virtio_scsi", "nvme", "ahci", "ata_piix", "ext4", "xfs",
                        "btrfs", "dm_mod") if k.has_driver(d)]
    return text + f": initramfs {'+'.join(f.compression)}, {len(f.modules)} modules; " \
        f"drivers {' '.join(have) or 'none'}; lvm {_yes(f.lvm)}"


def _boot_lines(r: OSRoot) -> list[str]:
    b = r.boot
    if b is None:
        return []
    lines = []
    if b.default_entry:
        lines.append(f"  boot: {b.default_entry.title!r} ({b.default_entry.index})")
        lines.append(f"  cmdline: {b.cmdline or ''}")
    elif b.grub is None and not b.bls:
        lines.append("  boot: no grub.cfg or BLS entries found")
    if b.default_grub and not set(b.default_grub.cmdline.split()) <= set(
            (b.cmdline or "").split()):
        lines.append("  next update-grub writes GRUB_CMDLINE_LINUX(_DEFAULT): "
                     f"{b.default_grub.cmdline or '(empty)'}")
    return lines


def _fstab_lines(r: OSRoot) -> list[str]:
    lines = []
    for e in r.fstab:
        if e.kind == "virtual":
            continue
        where = e.location or "NOT ON THIS DISK"
        bus = f" [{e.bus}]" if e.bus else ""
        nofail = " nofail" if e.nofail else ""
        lines.append(f"  fstab {e.mountpoint} <- {e.spec}: {where}{bus}{nofail}")
    return lines


def _cloud_lines(r: OSRoot) -> list[str]:
    c = r.cloud
    if c is None:
        return []
    ci = c.cloud_init
    ds = "any" if ci.datasources is None else ",".join(ci.datasources)
    sshd_on = c.sshd.unit.enabled if c.sshd.unit else None
    lines = [f"  cloud-init: installed {_yes(ci.installed)}, enabled {_yes(ci.enabled)}, "
             f"datasources {ds}; growpart {_yes(c.growpart)}; sshd installed "
             f"{_yes(c.sshd.installed)}, enabled {_yes(sshd_on)}; qemu-guest-agent "
             f"{_yes(c.qemu_guest_agent.installed)}",
             f"  serial console: {r.serial_console or 'none'}"]
    lines += [f"  hard-coded MAC {m.mac} ({m.source})" for m in c.macs]
    return lines


def root_lines(r: OSRoot) -> list[str]:
    """Lines describing one root (the first is the headline)."""
    version = f"{r.major}.{r.minor}" if r.major else (r.version_id or "?")
    head = f"{r.location} ({r.fstype}): {r.type} {r.distro} {version}"
    if r.pretty_name or r.product_name:
        head += f" ({r.pretty_name or r.product_name})"
    facts = [f"arch {r.arch or '?'}", f"hostname {r.hostname or '?'}"]
    if r.osinfo:
        facts.append(f"osinfo {r.osinfo}")
    if r.packages.format:
        n = "?" if r.packages.count is None else str(r.packages.count)
        facts.append(f"{n} {r.packages.format} packages")
    lines = [head, "  " + ", ".join(facts)]
    if r.windows:
        return lines + _windows_lines(r)
    lines += [_kernel_line(k) for k in r.kernels]
    return lines + _boot_lines(r) + _fstab_lines(r) + _cloud_lines(r)


def summary_lines(info: GuestInfo) -> list[str]:
    """Every root's lines, then the notes; one line when no OS was found."""
    out: list[str] = []
    for r in info.roots:
        out += root_lines(r)
    if not info.roots:
        out.append("no operating system found")
    out += [f"note: {n}" for n in info.notes]
    return out
