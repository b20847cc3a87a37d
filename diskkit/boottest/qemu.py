"""The qemu-system-x86_64 command line of a boot test, and the choice of accelerator.

The disk is always opened with an explicit format and ``snapshot=on`` (qemu puts a temporary
qcow2 overlay in front and opens the image read-only: the image is never written). SeaBIOS
runs on the ``pc`` machine, OVMF on ``q35`` with a private copy of its variable store.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import tempfile

from diskkit.errors import CommandError, UserError
from diskkit.formats import registry
from diskkit.runner import run
from diskkit.target import Target

OVMF_CODE = pathlib.Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = pathlib.Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
FIRMWARES = ("bios", "uefi")
MEDIA = ("disk", "cdrom")
BUSES = ("virtio", "ide", "sata", "scsi")


def drive_file(target: Target) -> str:
    """How qemu names the target: a path, an NBD URI, or ``rbd:pool/image[@snap][:conf=]``."""
    if target.kind == "rbd":
        return target.spec
    if target.kind == "nbd":
        return target.uri or target.spec
    return os.path.abspath(target.path or target.spec)


def _escape(value: str) -> str:
    """qemu option values double their commas."""
    return value.replace(",", ",,")


def device_args(drive: str, fmt: str, media: str, bus: str, firmware: str) -> list[str]:
    """``-drive`` and ``-device`` options attaching the target as boot device 1."""
    info = registry.lookup(fmt)
    qfmt = info.qemu if info is not None and info.kind is registry.Kind.DISK else None
    if qfmt is None:
        raise UserError(f"qemu cannot boot a {fmt} image", code="bad-format",
                        hint="give the format the hypervisor uses with -f (raw, qcow2, ...)")
    opts = f"file={_escape(drive)},format={qfmt},if=none,id=boot0,snapshot=on"
    if media == "cdrom":
        opts += ",media=cdrom,readonly=on"
        # i440fx has IDE; q35's AHCI controller names its ports ide.0..ide.5.
        dev = "ide-cd,drive=boot0,bus=ide.0,bootindex=1"
        if bus in ("scsi", "virtio"):
            return ["-drive", opts, "-device", "virtio-scsi-pci,id=scsi0",
                    "-device", "scsi-cd,drive=boot0,bus=scsi0.0,bootindex=1"]
        if bus == "sata" and firmware == "bios":
            return ["-drive", opts, "-device", "ahci,id=ahci0",
                    "-device", "ide-cd,drive=boot0,bus=ahci0.0,bootindex=1"]
        return ["-drive", opts, "-device", dev]
    if bus == "virtio":
        return ["-drive", opts, "-device", "virtio-blk-pci,drive=boot0,bootindex=1"]
    if bus == "scsi":
        return ["-drive", opts, "-device", "virtio-scsi-pci,id=scsi0",
                "-device", "scsi-hd,drive=boot0,bus=scsi0.0,bootindex=1"]
    if bus == "sata" and firmware == "bios":
        return ["-drive", opts, "-device", "ahci,id=ahci0",
                "-device", "ide-hd,drive=boot0,bus=ahci0.0,bootindex=1"]
    return ["-drive", opts, "-device", "ide-hd,drive=boot0,bus=ide.0,bootindex=1"]


def firmware_args(firmware: str, workdir: pathlib.Path) -> list[str]:
    """Machine type and firmware: SeaBIOS on ``pc``, OVMF (code + a copy of vars) on q35."""
    if firmware == "bios":
        return ["-machine", "pc"]
    for f in (OVMF_CODE, OVMF_VARS):
        if not f.exists():
            from diskkit.errors import HostError
            raise HostError(f"{f} is missing: no UEFI firmware on this host",
                            code="program-missing", hint="install it: apt-get install ovmf")
    vars_copy = workdir / "OVMF_VARS.fd"
    vars_copy.write_bytes(OVMF_VARS.read_bytes())
    return ["-machine", "q35",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]


def qemu_argv(drive: str, fmt: str, *, firmware: str, media: str, bus: str, accel: str,
              workdir: pathlib.Path, memory: int = 256) -> list[str]:
    """The whole command line; logs and the QMP socket live in ``workdir``. ``memory`` in
    MiB (a boot to the login prompt needs a whole system's worth)."""
    return [
        "qemu-system-x86_64", "-accel", accel, "-m", str(memory), "-nodefaults", "-vga", "std",
        "-display", "none", "-no-reboot", "-name", "diskkit-boot-test",
        *firmware_args(firmware, workdir),
        *device_args(drive, fmt, media, bus, firmware),
        "-chardev", f"file,id=dbg,path={workdir / 'firmware.log'}",
        "-device", "isa-debugcon,iobase=0x402,chardev=dbg",
        "-serial", f"file:{workdir / 'serial.log'}",
        "-qmp", f"unix:{workdir / 'qmp.sock'},server=on,wait=off",
    ]


@functools.lru_cache(maxsize=1)
def choose_accel() -> str:
    """``kvm`` or ``tcg``. ``DISKKIT_ACCEL=tcg|kvm`` decides; otherwise KVM is used only when
    /dev/kvm opens and SeaBIOS under KVM reaches "No bootable device" within 5 s (a short
    probe). On hosts where KVM exists but guests hang, set DISKKIT_ACCEL=tcg."""
    forced = os.environ.get("DISKKIT_ACCEL", "").strip().lower()
    if forced in ("tcg", "kvm"):
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    with tempfile.TemporaryDirectory(prefix="diskkit-kvm-") as tmp:
        log = pathlib.Path(tmp) / "fw.log"
        # A CommandTimeout means KVM did not get there in time.
        with contextlib.suppress(CommandError):
            run(["qemu-system-x86_64", "-accel", "kvm", "-m", "64", "-nodefaults",
                 "-display", "none", "-no-reboot", "-chardev", f"file,id=d,path={log}",
                 "-device", "isa-debugcon,iobase=0x402,chardev=d"], timeout=5, check=False)
        text = log.read_text(errors="replace") if log.exists() else ""
    return "kvm" if "No bootable device" in text else "tcg"
