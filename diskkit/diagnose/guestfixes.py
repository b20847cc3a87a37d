"""Fixes for problems inside the guest, pasteable for an image file (virt-customize /
guestfish on a standalone copy) or a volume (the same commands from a rescue VM).

Every image fix starts from a private copy made with :func:`diskkit.diagnose.fixes.qemu_source`
(a qcow2/VMDK/QED source is opened with ``"backing": null``: no file the image names is
read), so the commands are safe on a hostile image and never touch the original. Text from
the guest (fstab fields) is only put into a command when every character is in a small safe
set; otherwise the fix says what to change in words. ``IMAGE`` is the image file, ``NAME``
the Glance image; the commands are also given as a list in ``Finding.details["commands"]``
(``IMAGE``/``FIXED.qcow2`` placeholders), which the tests run as they are.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from diskkit.diagnose.fixes import qemu_source
from diskkit.formats import registry

_SAFE = re.compile(r"^[A-Za-z0-9_./:=,@+-]+$")
_UPLOAD = ("then upload FIXED.qcow2 (openstack image create --disk-format qcow2 "
           "--container-format bare --file FIXED.qcow2 NAME) and create the server or volume "
           "from it again")


def copy_command(fmt: str) -> str:
    """qemu-img convert of IMAGE (format ``fmt``) into a standalone FIXED.qcow2."""
    info = registry.lookup(fmt)
    qfmt = info.qemu if info is not None and info.qemu else fmt
    return f"qemu-img convert -O qcow2 {qemu_source(qfmt, 'IMAGE')} FIXED.qcow2"


def _customize(fmt: str, inner: str) -> list[str]:
    return [copy_command(fmt), "virt-customize --format qcow2 -a FIXED.qcow2 --run-command "
            + shlex.quote(inner)]


def _text(commands: list[str], volume: str) -> str:
    return ("on an image file: " + " && ".join(commands) + "; " + _UPLOAD
            + f". On a volume: attach it to a rescue server and {volume}")


class Fix(str):
    """A fix text that also carries the commands (``.commands``) for tests and scripts."""

    commands: tuple[str, ...] = ()

    def __new__(cls, text: str, commands: list[str] | tuple[str, ...] = ()) -> Fix:
        obj = super().__new__(cls, text)
        obj.commands = tuple(commands)
        return obj


def appliance_device(location: str) -> str | None:
    """The device libguestfs gives ``location`` of its first disk (/dev/sda1, /dev/VG/LV)."""
    m = re.fullmatch(r"partition (\d+)", location)
    if m:
        return f"/dev/sda{m.group(1)}"
    m = re.fullmatch(r"lv ([A-Za-z0-9_.+-]+)/([A-Za-z0-9_.+-]+)", location)
    if m:
        return f"/dev/{m.group(1)}/{m.group(2)}"
    return "/dev/sda" if location == "disk" else None


def restore_uuid(uuid: str, location: str, fstype: str, fmt: str) -> Fix:
    """Give the root filesystem back the UUID grub.cfg, root= and fstab name."""
    dev = appliance_device(location)
    if dev is None or not re.fullmatch(r"[0-9A-Fa-f-]{8,36}", uuid):
        return Fix(f"give the filesystem in {location} the UUID {uuid} again (tune2fs -U / "
                   "xfs_admin -U), or point grub.cfg, root= and fstab at its current UUID")
    steps = (f"e2fsck {dev} forceall:true : " if fstype.startswith("ext") else "")
    cmds = [copy_command(fmt),
            f"guestfish --format=qcow2 -a FIXED.qcow2 run : {steps}set-uuid {dev} {uuid}"]
    tool = f"tune2fs -U {uuid}" if fstype.startswith("ext") else f"xfs_admin -U {uuid}"
    return Fix(_text(cmds, f"run {tool} on its partition (e.g. /dev/vdb{dev[8:]}) while it "
                           "is not mounted"), cmds)


def root_not_found(spec: str, layout: Any, root: Any, bus: str, fmt: str) -> Fix:
    """root= names nothing on this disk."""
    key, _, value = spec.partition("=")
    fss = getattr(layout, "filesystems", ())
    here = next((f for f in fss if f.location == root.location), None)
    if key.upper() == "UUID" and here is not None and here.uuid and \
            here.uuid.lower() != value.lower():
        return restore_uuid(value, root.location, here.type, fmt)
    if spec.startswith("/dev/sd") and bus == "virtio":
        return Fix("the kernel looks for a SCSI/SATA name: openstack image set --property "
                   "hw_disk_bus=scsi NAME (or sata); or boot by UUID: set "
                   "GRUB_DISABLE_LINUX_UUID=false and run update-grub in the image "
                   "(virt-customize --format qcow2 -a FIXED.qcow2 --run-command update-grub "
                   f"after {copy_command(fmt)})")
    if spec.startswith("/dev/vd") and bus != "virtio":
        return Fix("the kernel looks for a virtio name: openstack image set --property "
                   "hw_disk_bus=virtio NAME, or boot by UUID (update-grub in the image)")
    return Fix(f"make root= name the root filesystem ({root.location}): set it in "
               "/etc/default/grub and run update-grub (grub2-mkconfig -o /boot/grub2/grub.cfg) "
               f"in the image with virt-customize after {copy_command(fmt)}")


def add_drivers(drivers: list[str], generator: str | None, bus: str, others: list[str],
                fmt: str) -> Fix:
    """Rebuild the initramfs with the missing drivers."""
    names = " ".join(d for d in drivers if re.fullmatch(r"[a-z0-9_]+", d))
    if generator == "dracut":
        inner = (f"echo 'add_drivers+=\" {names} \"' > /etc/dracut.conf.d/diskkit-bus.conf "
                 "&& dracut --force --regenerate-all")
    else:
        inner = (f"printf '%s\\n' {names} >> /etc/initramfs-tools/modules && "
                 "update-initramfs -u -k all")
    cmds = _customize(fmt, inner)
    alt = (f"; or attach the disk on a bus the initramfs has drivers for: openstack image "
           f"set --property hw_disk_bus={others[0]} NAME"
           + (" (or " + ", ".join(f"hw_disk_bus={b}" for b in others[1:]) + ")"
              if others[1:] else "")) if others else ""
    return Fix(_text(cmds, f"chroot into it and run: {inner}") + alt, cmds)


def add_lvm(generator: str | None, fmt: str) -> Fix:
    """The initramfs cannot activate LVM."""
    inner = ("dracut --force --regenerate-all --add lvm" if generator == "dracut" else
             "apt-get install -y --reinstall lvm2 && update-initramfs -u -k all")
    cmds = _customize(fmt, inner)
    return Fix(_text(cmds, f"chroot into it and run: {inner}"), cmds)


def fstab_nofail(entry: Any, fmt: str) -> Fix:
    """Add nofail to one fstab line (or drop the line)."""
    opts = [o for o in entry.options if o != "defaults"] or ["defaults"]
    fields = [entry.spec, entry.mountpoint, entry.fstype, ",".join([*opts, "nofail"]),
              "0", str(entry.passno)]
    new = " ".join(fields)
    line = entry.source.line
    said = f"change line {line} of /etc/fstab to '{new}' (or delete it)"
    if not line or not all(_SAFE.match(f) for f in fields):
        return Fix(f"{said}, in the image with virt-customize --edit or from a rescue server")
    cmds = _customize(fmt, f"sed -i '{line}s|.*|{new}|' /etc/fstab")
    return Fix(_text(cmds, f"mount its root and {said}"), cmds)


def update_grub(fmt: str) -> Fix:
    """grub.cfg names files that are not there: regenerate it and reinstall GRUB."""
    cmds = _customize(fmt, "grub-install /dev/sda && update-grub")
    return Fix(_text(cmds, "chroot into it and run grub-install on the disk and update-grub "
                           "(grub2-mkconfig -o /boot/grub2/grub.cfg)"), cmds)


def grub_unreadable(fstype: str, features: tuple[str, ...], fmt: str) -> Fix:
    """GRUB cannot read the filesystem it boots from."""
    return Fix(f"the image's GRUB cannot read a {fstype} with {', '.join(features)}: put "
               "/boot on a filesystem it reads (ext4 made without those features), or "
               f"recreate the {fstype} without them (mkfs from the image's own release), or "
               "install a GRUB that reads them (XFS exchange-range, parent pointers, metadir: "
               "GRUB 2.14) and run grub-install + update-grub in the image")


def bus_property(bus: str) -> str:
    """The Glance property that attaches the disk on ``bus``."""
    return f"openstack image set --property hw_disk_bus={bus} NAME"
