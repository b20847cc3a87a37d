"""The four backends, each an implementation of :class:`~diskkit.backends.base.Backend`.

- ``loop``: a raw image file, partitions as loop devices with offsets (or kpartx);
- ``fuse``: any qemu format exported as a raw file by qemu-storage-daemon, then as ``loop``;
  RBD images and NBD URIs go this way too (qemu's rbd/nbd drivers);
- ``nbd``: ``qemu-nbd --connect`` (the kernel's nbd driver, its partition nodes or kpartx);
- ``guestfs``: the libguestfs appliance, mounted on the host through ``guestmount``.

The kernel backends share :class:`KernelBackend` (block device per location, LVM through a
private config and dm maps); only how the disk's raw view is made differs.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import time
from typing import Any

from diskkit.backends import fuse, guestfs, loop, lvm, mounts, nbd
from diskkit.backends.base import (
    Attachment,
    Location,
    MountSpec,
    Requirement,
    Teardown,
    pause_at,
    undo_since,
)
from diskkit.errors import UserError
from diskkit.runner import which
from diskkit.target import Target


def _program(name: str, package: str) -> Requirement:
    return Requirement(name, "program", which(name) is not None, f"apt-get install {package}")


def _device(path: str, fix: str) -> Requirement:
    return Requirement(path, "device", os.path.exists(path), fix)


def _root() -> Requirement:
    return Requirement("root", "privilege", os.geteuid() == 0, "run as root (kernel mounts)")


class KernelBackend:
    """Block devices on this host's kernel, mounted with mount(8)."""

    name = "kernel"

    def requirements(self) -> list[Requirement]:
        """Root, loop devices, losetup and mount."""
        return [_root(), _device("/dev/loop-control", "modprobe loop"),
                _program("losetup", "mount"), _program("mount", "mount")]

    def _source(self, td: Teardown, image: str, fmt: str) -> str:
        raise NotImplementedError

    def attach(self, td: Teardown, image: str, fmt: str, *,
               partitions: dict[int, tuple[int, int]] | None = None,
               pvs: dict[str, list[Location]] | None = None) -> Attachment:
        """Make the image's raw view (the backend's own way) and remember the layout."""
        att = Attachment(self.name, td, image, fmt, partitions=dict(partitions or {}),
                         pvs=dict(pvs or {}), first_step=len(td.run.steps))
        pause_at("before-attach")
        att.source = self._source(td, image, fmt)
        return att

    def device(self, att: Attachment, where: Location) -> str:
        """The block device of ``where`` (made on first use: loop, kpartx, nbd node, LV)."""
        if where in att.devices:
            return att.devices[where]
        if where.kind == "disk":
            assert att.source is not None
            dev = att.source if stat.S_ISBLK(os.stat(att.source).st_mode) else \
                loop.attach(att.td, att.source)
        elif where.kind == "partition" and where.number is not None:
            dev = self._partition(att, where.number)
        elif where.kind == "lv" and where.vg and where.lv:
            pv_devs = [self.device(att, loc) for loc in att.pvs.get(where.vg, [])]
            dev = lvm.activate(att.td, pv_devs, where.vg, where.lv).device
        else:
            raise UserError(f"cannot attach {where}", code="bad-location")
        att.devices[where] = dev
        return dev

    def _partition(self, att: Attachment, number: int) -> str:
        assert att.source is not None
        if nbd.kpartx_available():
            kp = att.extra.get("kpartx")
            if kp is None:
                kp = att.extra["kpartx"] = nbd.kpartx_map(att.td,
                                                          self.device(att, Location.whole_disk()))
            if number in kp:
                return str(kp[number])
        if number not in att.partitions:
            raise UserError(f"partition {number} does not exist", code="no-such-partition")
        start, size = att.partitions[number]
        return loop.attach(att.td, att.source, start, size)

    def mount_one(self, att: Attachment, spec: MountSpec, root: str) -> dict[str, Any]:
        """Mount one filesystem (its mountpoint resolved inside the guest root)."""
        dev = self.device(att, spec.location)
        path = root if spec.mountpoint == "/" else mounts.resolve_in_root(root, spec.mountpoint)
        mounts.mount(att.td, dev, path, spec.fstype)
        return {"location": str(spec.location), "fstype": spec.fstype, "device": dev,
                "path": path, "mountpoint": spec.mountpoint}

    def mount(self, att: Attachment, specs: list[MountSpec], root: str) -> list[dict[str, Any]]:
        """Mount every spec, shallowest first."""
        return [self.mount_one(att, s, root) for s in specs]

    def detach(self, att: Attachment) -> None:
        """Unmount and detach everything the attachment made, last first."""
        undo_since(att.td, att.first_step)
        att.devices.clear()


class LoopBackend(KernelBackend):
    """A raw image file attached with loop devices."""

    name = "loop"

    def _source(self, td: Teardown, image: str, fmt: str) -> str:
        if fmt != "raw":
            raise UserError(f"the loop backend reads raw images, not {fmt}",
                            code="bad-format", hint="use the fuse or nbd backend")
        return image


class FuseBackend(KernelBackend):
    """qemu-storage-daemon exports the image (any qemu format, or an rbd:/nbd:// target) as
    a raw file through FUSE; loop devices do the rest."""

    name = "fuse"

    def __init__(self, remote: Target | None = None) -> None:
        self.remote = remote

    def requirements(self) -> list[Requirement]:
        """Kernel mounts plus qemu-storage-daemon and /dev/fuse."""
        return [*super().requirements(),
                _program("qemu-storage-daemon", "qemu-system-common"),
                _device("/dev/fuse", "modprobe fuse; apt-get install fuse3")]

    def _source(self, td: Teardown, image: str, fmt: str) -> str:
        if self.remote is not None:
            return fuse.export_remote(td, self.remote)
        return fuse.export(td, image, fmt)


class NbdBackend(KernelBackend):
    """``qemu-nbd --connect``: the kernel's nbd driver shows the image as /dev/nbdN."""

    name = "nbd"

    def requirements(self) -> list[Requirement]:
        """Kernel mounts plus qemu-nbd and the nbd driver."""
        return [*super().requirements(), _program("qemu-nbd", "qemu-utils"),
                Requirement("nbd", "kernel-module", nbd.nbd_available(load=False),
                            "modprobe nbd max_part=16")]

    def _source(self, td: Teardown, image: str, fmt: str) -> str:
        return nbd.connect(td, image, fmt)

    def _partition(self, att: Attachment, number: int) -> str:
        node = f"{att.source}p{number}"
        deadline = time.monotonic() + 5.0
        while not os.path.exists(node) and time.monotonic() < deadline:
            time.sleep(0.05)  # the kernel's partition scan of a fresh nbd device
        if os.path.exists(node):
            return node
        return super()._partition(att, number)


class GuestfsBackend:
    """The libguestfs appliance reads the image; ``guestmount`` shows it on the host."""

    name = "guestfs"

    def requirements(self) -> list[Requirement]:
        """The Python binding, guestmount, FUSE and a kernel for the appliance."""
        binding = importlib.util.find_spec("guestfs") is not None
        kernels = [f for f in os.listdir("/boot") if f.startswith("vmlinuz-")] \
            if os.path.isdir("/boot") else []
        return [Requirement("guestfs", "python-module", binding,
                            "apt-get install python3-guestfs (and use Debian's python3)"),
                _program("guestmount", "guestmount"),
                _device("/dev/fuse", "modprobe fuse; apt-get install fuse3"),
                Requirement("kernel", "device", bool(kernels),
                            "apt-get install linux-image-amd64")]

    def attach(self, td: Teardown, image: str, fmt: str, *,
               partitions: dict[int, tuple[int, int]] | None = None,
               pvs: dict[str, list[Location]] | None = None) -> Attachment:
        """Nothing is attached on the host: the appliance starts when mounting."""
        return Attachment(self.name, td, image, fmt, partitions=dict(partitions or {}),
                          pvs=dict(pvs or {}), first_step=len(td.run.steps))

    def mount(self, att: Attachment, specs: list[MountSpec], root: str) -> list[dict[str, Any]]:
        """One ``guestmount`` of every spec."""
        pairs = [(guestfs.appliance_device(s.location), s.mountpoint) for s in specs]
        guestfs.guestmount(att.td, att.image, att.fmt, root, pairs)
        return [{"location": str(s.location), "fstype": s.fstype, "device": None,
                 "path": os.path.join(os.path.abspath(root), s.mountpoint.lstrip("/"))
                 .rstrip("/"), "mountpoint": s.mountpoint} for s in specs]

    def detach(self, att: Attachment) -> None:
        """Unmount (guestmount exits and its appliance with it)."""
        undo_since(att.td, att.first_step)


#: Every backend by name (``fuse`` takes the remote target when there is one).
BACKEND_NAMES = ("loop", "fuse", "nbd", "guestfs")


def get_backend(name: str, remote: Target | None = None) -> KernelBackend | GuestfsBackend:
    """The backend called ``name``; :class:`UserError` for an unknown one."""
    if name == "loop":
        return LoopBackend()
    if name == "fuse":
        return FuseBackend(remote)
    if name == "nbd":
        return NbdBackend()
    if name == "guestfs":
        return GuestfsBackend()
    raise UserError(f"unknown backend {name!r}", code="bad-option",
                    hint="one of: " + ", ".join(BACKEND_NAMES))
