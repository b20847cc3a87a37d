"""The readable summary of a GuestInfo (``diskkit info``'s ``os`` section): lines of text,
no printing (the CLI prints them)."""

from __future__ import annotations

from diskkit.guest.inspect import GuestInfo, OSRoot


def _yes(v: bool | None) -> str:
    return "?" if v is None else "yes" if v else "no"


def root_lines(r: OSRoot) -> list[str]:
    """Lines describing one root (the first is the headline)."""
    version = f"{r.major}.{r.minor}" if r.major else (r.version_id or "?")
    head = f"{r.location} ({r.fstype}): {r.type} {r.distro} {version}"
    if r.pretty_name or r.product_name:
        head += f" ({r.pretty_name or r.product_name})"
    lines = [head]
    facts = [f"arch {r.arch or '?'}", f"hostname {r.hostname or '?'}"]
    if r.osinfo:
        facts.append(f"osinfo {r.osinfo}")
    if r.packages.format:
        n = "?" if r.packages.count is None else str(r.packages.count)
        facts.append(f"{n} {r.packages.format} packages")
    lines.append("  " + ", ".join(facts))
    if r.windows:
        w = r.windows
        lines.append(f"  build {w.build or '?'}, edition {w.edition or '?'}, "
                     f"{w.installation_type or '?'}; control set {w.control_set or '?'}")
        drv = [f"{s.name}={s.start_name or s.start}" for s in w.services]
        lines.append("  services: " + (", ".join(drv) if drv else "no virtio driver services"))
        lines.append(f"  cloudbase-init: {_yes(w.cloudbase_init)}")
        return lines
    for k in r.kernels:
        text = f"  kernel {k.version}"
        if k.initramfs is None:
            text += ": no initramfs"
        elif k.initramfs.facts is None:
            text += f": initramfs {k.initramfs.path} (not read)"
        else:
            f = k.initramfs.facts
            have = [d for d in ("virtio_blk", "virtio_scsi", "nvme", "ahci", "ata_piix",
                                "ext4", "xfs", "btrfs", "dm_mod") if k.has_driver(d)]
            text += f": initramfs {'+'.join(f.compression)}, {len(f.modules)} modules; " \
                    f"drivers {' '.join(have) or 'none'}; lvm {_yes(f.lvm)}"
        lines.append(text)
    if r.boot:
        b = r.boot
        if b.default_entry:
            lines.append(f"  boot: {b.default_entry.title!r} ({b.default_entry.index})")
            lines.append(f"  cmdline: {b.cmdline or ''}")
        elif b.grub is None and not b.bls:
            lines.append("  boot: no grub.cfg or BLS entries found")
        if b.default_grub and not set(b.default_grub.cmdline.split()) <= set(
                (b.cmdline or "").split()):
            lines.append("  next update-grub writes GRUB_CMDLINE_LINUX(_DEFAULT): "
                         f"{b.default_grub.cmdline or '(empty)'}")
    for e in r.fstab:
        if e.kind == "virtual":
            continue
        where = e.location or "NOT ON THIS DISK"
        bus = f" [{e.bus}]" if e.bus else ""
        nofail = " nofail" if e.nofail else ""
        lines.append(f"  fstab {e.mountpoint} <- {e.spec}: {where}{bus}{nofail}")
    if r.cloud:
        c = r.cloud
        ci = c.cloud_init
        ds = "any" if ci.datasources is None else ",".join(ci.datasources)
        sshd_on = c.sshd.unit.enabled if c.sshd.unit else None
        lines.append(f"  cloud-init: installed {_yes(ci.installed)}, enabled {_yes(ci.enabled)}, "
                     f"datasources {ds}; growpart {_yes(c.growpart)}; sshd installed "
                     f"{_yes(c.sshd.installed)}, enabled {_yes(sshd_on)}; qemu-guest-agent "
                     f"{_yes(c.qemu_guest_agent.installed)}")
        lines.append(f"  serial console: {r.serial_console or 'none'}")
        for m in c.macs:
            lines.append(f"  hard-coded MAC {m.mac} ({m.source})")
    return lines


def summary_lines(info: GuestInfo) -> list[str]:
    """Every root's lines, then the notes; one line when no OS was found."""
    out: list[str] = []
    for r in info.roots:
        out += root_lines(r)
    if not info.roots:
        out.append("no operating system found")
    out += [f"note: {n}" for n in info.notes]
    return out
