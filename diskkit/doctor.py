"""What this host can do for attach/mount, and what to install for the rest.

:func:`check_host` returns a list of :class:`Check` (kernel modules loop/nbd/dm-mod/fuse,
programs, Python bindings, kernel filesystems, KVM). KVM is judged by a real probe
(:func:`kvm_usable`): boot the host's Linux kernel under ``-accel kvm`` for a few seconds and
see whether it prints its banner on the serial console; on some hosts ``/dev/kvm`` exists and
SeaBIOS runs, but a Linux guest hangs before printing anything. The verdict is cached per boot
(``/proc/sys/kernel/random/boot_id``) in the run directory root.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from diskkit.backends.kvm import PROBE_SECONDS, kvm_usable
from diskkit.runner import which

__all__ = ["PROBE_SECONDS", "Check", "check_host", "kvm_usable"]

@dataclass(frozen=True)
class Check:
    """One capability: ``ok`` True/False/None (None: could not tell), what it is for, and
    the fix when it is missing."""

    name: str
    kind: str
    ok: bool | None
    detail: str
    needed_for: str
    fix: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON form (docs/json.md, ``diskkit doctor --json``)."""
        return asdict(self)


def _module(name: str, present: str, needed_for: str, fix: str) -> Check:
    """A kernel module: present, loadable (modprobe -n), or missing."""
    from diskkit.runner import run

    if os.path.exists(present):
        return Check(name, "kernel-module", True, f"{present} exists", needed_for)
    if which("modprobe") and run(["modprobe", "-n", "-q", name], timeout=20,
                                 check=False).returncode == 0:
        return Check(name, "kernel-module", True, "loadable (modprobe)", needed_for)
    return Check(name, "kernel-module", False, "not in this kernel, not loadable", needed_for, fix)


def _dm() -> Check:
    """device-mapper: /dev/mapper/control can exist while the kernel has no driver behind it,
    so the check is ``dmsetup version`` (after modprobe dm-mod)."""
    from diskkit.backends.lvm import dm_available

    why = "kpartx, LVM on the host"
    if dm_available():
        return Check("dm_mod", "kernel-module", True, "dmsetup version works", why)
    return Check("dm_mod", "kernel-module", False, "no device-mapper driver in this kernel", why,
                 "modprobe dm-mod (apt-get install dmsetup); else guestfs is used for LVM")


def _program(name: str, needed_for: str) -> Check:
    from diskkit.runner import PACKAGE_OF

    path = which(name)
    pkg = PACKAGE_OF.get(name, name)
    return Check(name, "program", path is not None, path or "not installed", needed_for,
                 None if path else f"apt-get install {pkg}")


def _binding(module: str, package: str, needed_for: str) -> Check:
    import importlib

    try:
        importlib.import_module(module)
        return Check(module, "python-binding", True, "imports", needed_for)
    except ImportError as exc:
        return Check(module, "python-binding", False, str(exc), needed_for,
                     f"apt-get install {package}")


def _fs(name: str) -> Check:
    from diskkit.backends.mounts import kernel_supports

    ok = kernel_supports(name)
    return Check(name, "kernel-filesystem", ok, "mountable" if ok else "no kernel support",
                 f"kernel mounts of {name}", None if ok else "use --backend guestfs (automatic)")


def check_host(probe_kvm: bool = True) -> list[Check]:
    """Every capability attach/mount depends on."""
    checks = [
        _module("loop", "/dev/loop-control", "loop backend", "modprobe loop"),
        _module("nbd", "/sys/module/nbd", "nbd backend (qemu-nbd --connect)",
                "modprobe nbd (linux-image-amd64); else the FUSE export is used"),
        _dm(),
        _module("fuse", "/dev/fuse", "qemu-storage-daemon FUSE export, guestmount",
                "modprobe fuse; apt-get install fuse3"),
    ]
    for prog, why in (("losetup", "loop backend"), ("mount", "every kernel mount"),
                      ("blkid", "filesystem probing"), ("qemu-img", "format facts"),
                      ("qemu-nbd", "nbd backend"), ("qemu-storage-daemon", "FUSE export"),
                      ("kpartx", "partition maps on nbd/loop"), ("dmsetup", "LVM volumes"),
                      ("lvm", "LVM metadata"), ("guestmount", "guestfs backend mounts"),
                      ("fusermount3", "FUSE unmounts")):
        checks.append(_program(prog, why))
    checks.append(_binding("guestfs", "python3-guestfs", "guestfs backend (cat/ls, inspection)"))
    for fs in ("ext4", "xfs", "btrfs", "vfat", "iso9660"):
        checks.append(_fs(fs))
    kvm = kvm_usable() if probe_kvm else None
    detail = {True: "a Linux guest boots under KVM", False: "absent, or Linux guests hang",
              None: "not probed"}[kvm]
    checks.append(Check("kvm", "accelerator", kvm, detail, "fast libguestfs appliance",
                        None if kvm else "libguestfs runs under TCG (slower, automatic)"))
    return checks
