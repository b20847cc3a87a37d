"""The image properties to set, each with the evidence it comes from, and the paste-able
``openstack image create`` command line.

Vocabulary: Glance's "Useful image properties" page (os_type linux/windows; os_distro in
lowercase, the libosinfo project's names: arch, centos, debian, fedora, freebsd, gentoo,
mandrake, mandriva, mes, msdos, netbsd, netware, openbsd, opensolaris, opensuse, rocky, rhel,
sled, ubuntu, windows; architecture as ``uname -m`` gives it; hw_firmware_type bios/uefi;
hw_disk_bus virtio/scsi/sata/ide; hw_scsi_model virtio-scsi; hw_qemu_guest_agent yes/no;
min_disk in GiB).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from diskkit.validate.readiness import GIB, default_kernel, windows_boot_driver

#: Glance's documented os_distro values.
OS_DISTROS = ("arch", "centos", "debian", "fedora", "freebsd", "gentoo", "mandrake",
              "mandriva", "mes", "msdos", "netbsd", "netware", "openbsd", "opensolaris",
              "opensuse", "rocky", "rhel", "sled", "ubuntu", "windows")
#: diskkit/libguestfs distro names that Glance spells differently.
_DISTRO_ALIASES = {"redhat": "rhel", "rhel": "rhel", "centos": "centos", "sles": "sled",
                   "opensuse-leap": "opensuse", "opensuse-tumbleweed": "opensuse",
                   "archlinux": "arch", "rocky": "rocky", "almalinux": "rhel"}
_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "i386": "i686", "i686": "i686",
         "aarch64": "aarch64", "arm64": "aarch64", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}


@dataclass
class Properties:
    """Suggested properties (name -> value, all strings as Glance stores them) and why."""

    values: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)
    disk_format: str | None = None
    container_format: str = "bare"
    min_disk: int | None = None
    name: str = "image"

    def set(self, key: str, value: str | None, why: str) -> None:
        """Record ``key=value`` (skipped when value is None) with its evidence."""
        if value is not None:
            self.values[key] = value
            self.evidence[key] = why

    def command(self, path: str | None) -> str:
        """One ``openstack image create`` line, every argument shell-quoted."""
        args = ["openstack", "image", "create"]
        if self.disk_format:
            args += ["--disk-format", self.disk_format]
        args += ["--container-format", self.container_format]
        if self.min_disk is not None:
            args += ["--min-disk", str(self.min_disk)]
        for k, v in self.values.items():
            args += ["--property", f"{k}={v}"]
        if path:
            args += ["--file", path]
        args.append(self.name)
        return " ".join(shlex.quote(a) for a in args)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the ``properties`` object, the top-level image fields and evidence."""
        return {"disk_format": self.disk_format, "container_format": self.container_format,
                "min_disk": self.min_disk, "name": self.name,
                "properties": dict(self.values), "evidence": dict(self.evidence)}


def _ev(root: Any, key: str, fallback: str) -> str:
    src = root.evidence.get(key) if root is not None else None
    return str(src) if src is not None else fallback


def _min_disk(props: Properties, layout: Any, virtual_size: int | None) -> None:
    """min_disk: the end of the last partition (or the whole disk), rounded up to GiB."""
    end = max((p.start + p.size for p in layout.partitions), default=0) if layout else 0
    if end:
        props.min_disk = -(-end // GIB)
        props.evidence["min_disk"] = f"last partition ends at byte {end}"
    elif virtual_size:
        props.min_disk = -(-virtual_size // GIB)
        props.evidence["min_disk"] = f"virtual size {virtual_size} bytes (no partition table)"


def _os(props: Properties, root: Any) -> None:
    """os_type, os_distro, os_version, architecture, and the image name."""
    props.set("os_type", root.type if root.type in ("linux", "windows") else None,
              f"operating system found on {root.location}")
    distro = _DISTRO_ALIASES.get(root.distro, root.distro)
    if distro in OS_DISTROS:
        props.set("os_distro", distro, _ev(root, "distro", "/etc/os-release ID"))
        if root.osinfo:
            props.evidence["os_distro"] += f" (libosinfo short id {root.osinfo})"
    version = root.version_id or (str(root.major) if root.major else None)
    if root.type == "windows" and root.major:
        version = f"{root.major}.{root.minor}"
    props.set("os_version", version, _ev(root, "version", "/etc/os-release VERSION_ID"))
    props.set("architecture", _ARCH.get(root.arch or ""), _ev(root, "arch", "binaries"))
    if root.product_name:
        props.name = root.product_name


def _linux(props: Properties, root: Any) -> None:
    """hw_disk_bus / hw_scsi_model from the default kernel's drivers; the guest agent."""
    k = default_kernel(root)
    if k is not None:
        init = k.initramfs.path if k.initramfs else k.version
        if k.has_driver("virtio_blk"):
            props.set("hw_disk_bus", "virtio", f"virtio_blk in {init}")
        elif k.has_driver("virtio_scsi"):
            props.set("hw_disk_bus", "scsi", f"virtio_scsi but no virtio_blk in {init}")
            props.set("hw_scsi_model", "virtio-scsi", f"virtio_scsi in {init}")
        elif k.has_driver("ahci"):
            props.set("hw_disk_bus", "sata", f"no virtio driver, ahci in {init}")
    qga = root.cloud.qemu_guest_agent if root.cloud is not None else None
    if qga is not None and qga.installed:
        props.set("hw_qemu_guest_agent", "yes", "qemu-guest-agent is installed"
                  + (f" ({qga.source})" if qga.source else ""))


def _windows(props: Properties, win: Any) -> None:
    """hw_disk_bus from the boot-start storage drivers; the guest agent service."""
    if windows_boot_driver(win, "viostor"):
        props.set("hw_disk_bus", "virtio", "viostor service starts at boot (SYSTEM hive)")
    elif windows_boot_driver(win, "vioscsi"):
        props.set("hw_disk_bus", "scsi", "vioscsi service starts at boot (SYSTEM hive)")
        props.set("hw_scsi_model", "virtio-scsi", "vioscsi service (SYSTEM hive)")
    else:
        props.set("hw_disk_bus", "sata", "no virtio storage driver at boot: inbox AHCI")
    if win.service("QEMU-GA") or win.service("qemu-ga"):
        props.set("hw_qemu_guest_agent", "yes", "QEMU-GA service (SYSTEM hive)")


def suggest(*, disk_format: str | None, container_format: str | None, layout: Any,
            guest: Any, firmware: str | None, virtual_size: int | None,
            name: str) -> Properties:
    """The properties for an image with these facts."""
    props = Properties(disk_format=disk_format, container_format=container_format or "bare",
                       name=name)
    props.evidence["disk_format"] = "detected from the file's header"
    _min_disk(props, layout, virtual_size)
    root = guest.root if guest is not None else None
    if root is not None:
        _os(props, root)
    if firmware in ("uefi", "bios"):
        props.set("hw_firmware_type", firmware,
                  "EFI system partition only" if firmware == "uefi" else "BIOS boot code only")
    if firmware == "uefi":
        props.set("hw_machine_type", "q35", "UEFI guests need the q35 machine type")
    if root is not None and root.type == "linux":
        _linux(props, root)
    elif root is not None and root.type == "windows" and root.windows is not None:
        _windows(props, root.windows)
    return props
