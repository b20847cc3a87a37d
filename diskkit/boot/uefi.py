"""What OVMF (edk2) and shim do with a disk, read from their sources (docs/boot-loaders.md).

- edk2 MdeModulePkg/Universal/Disk/PartitionDxe/Gpt.c: a disk is GPT only when sector 0 is
  a protective MBR: one of its four entries has type 0xEE and starts at LBA 1. Without it
  the GPT (and every ESP in it) is ignored.
- The firmware reads the GPT header at LBA 1 of ITS sector size: a GPT written for 4 KiB
  sectors (header at byte 4096) attached as a 512-byte-sector disk (what qemu/Nova give by
  default) has no GPT at byte 512: no partition table, no ESP.
- BdsDxe with no boot entries runs \\EFI\\BOOT\\BOOTX64.EFI of each FAT filesystem.
- shim (rhboot/shim shim.c): as BOOTX64.EFI it runs fbx64.efi when that file is beside it
  (should_use_fallback), else its DEFAULT_LOADER ``\\grubx64.efi`` from its own directory;
  with neither it fails ("Failed to open \\EFI\\BOOT\\grubx64.efi - Not Found") and the
  firmware goes on to its next option (the EFI shell, or nothing).

- The EFI shell (OVMF's last boot option, in the builds without Secure Boot) runs
  ``\\startup.nsh`` after a 5-second countdown (ShellPkg): a script naming a ``.efi`` file
  that is on the filesystem starts that loader.

Pure and bounded: at most :data:`MAX_LOADER_READ` bytes of BOOTX64.EFI are read.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diskkit.boot.efi import EspInfo
from diskkit.errors import ImageError
from diskkit.readers.base import Reader, SliceReader

#: BOOTX64.EFI is read up to this size to tell shim from other loaders (shim is ~1 MiB).
MAX_LOADER_READ = 4 << 20
#: shim's DEFAULT_LOADER and FALLBACK, as UTF-16LE strings in its image.
_SHIM_DEFAULT = "\\grubx64.efi".encode("utf-16-le")
_SHIM_FALLBACK = "fbx64.efi".encode("utf-16-le")

__all__ = ["UefiStep", "has_protective_mbr", "judge_uefi"]


@dataclass(frozen=True)
class UefiStep:
    """Why OVMF cannot reach a loader on this disk (``boots`` False), or what the removable
    loader runs next (True), or None when it cannot be told."""

    boots: bool | None
    reason: str
    code: str | None = None
    fix: str | None = None
    loader: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"boots": self.boots, "reason": self.reason, "code": self.code,
                "fix": self.fix, "loader": self.loader}


def has_protective_mbr(sector0: bytes) -> bool:
    """edk2 Gpt.c: an entry of type 0xEE whose starting LBA is 1."""
    if len(sector0) < 512:
        return False
    for i in range(4):
        e = sector0[0x1BE + 16 * i:0x1BE + 16 * (i + 1)]
        if e[4] == 0xEE and struct.unpack_from("<I", e, 8)[0] == 1:
            return True
    return False


def _is_shim(data: bytes) -> bool:
    return b"shim," in data and _SHIM_DEFAULT in data


def _removable(disk: Reader, esp: EspInfo) -> bytes | None:
    from diskkit.boot.fat import FatFs

    try:
        fs = FatFs(SliceReader(disk, esp.offset, esp.size, name=f"{disk.name} {esp.where}"))
        entry = fs.lookup("/EFI/BOOT/BOOTX64.EFI")
        if entry is None or entry.is_dir:
            return None
        return fs.read_file(entry, limit=MAX_LOADER_READ)
    except (ImageError, struct.error, ValueError):
        return None


def judge_uefi(disk: Reader, sector0: bytes, table: str | None, sector_size: int,
               esps: Sequence[EspInfo]) -> UefiStep | None:
    """The disk-level reasons OVMF finds no loader, and shim's needs (module docstring).
    None: nothing here decides (the plain BOOTX64.EFI rule applies)."""
    if table == "gpt" and sector_size != 512:
        return UefiStep(False, f"the GPT is written for {sector_size}-byte sectors (header at "
                        f"byte {sector_size}); attached with 512-byte sectors the firmware "
                        "finds no GPT at LBA 1 and no partition table at all",
                        "gpt-sector-size-mismatch",
                        f"attach the volume with {sector_size}-byte logical blocks "
                        f"(libvirt <blockio logical_block_size='{sector_size}'/>), or convert "
                        "the image to a 512-byte-sector GPT")
    if table == "gpt" and not has_protective_mbr(sector0):
        return UefiStep(False, "sector 0 is not a protective MBR (no 0xEE entry starting at "
                        "LBA 1): OVMF ignores the GPT and every EFI system partition in it",
                        "protective-mbr-missing",
                        "write a protective MBR: sfdisk --dump IMAGE > gpt.txt && sfdisk "
                        "IMAGE < gpt.txt (sfdisk writes one with the GPT it restores)")
    if not any(e.removable_x64 for e in esps):
        return _startup_nsh(disk, esps)
    for esp in esps:
        if not esp.removable_x64:
            continue
        data = _removable(disk, esp)
        if data is None or not _is_shim(data):
            continue
        names = {x.path.rsplit("/", 1)[-1].lower() for x in esp.loaders
                 if x.path.upper().startswith("/EFI/BOOT/")}
        if "fbx64.efi" in names:
            return UefiStep(True, f"shim as BOOTX64.EFI in {esp.where} runs fbx64.efi beside "
                            "it", loader="shim")
        if "grubx64.efi" in names:
            return UefiStep(True, f"shim as BOOTX64.EFI in {esp.where} runs grubx64.efi "
                            "beside it", loader="shim")
        return UefiStep(False, f"\\EFI\\BOOT\\BOOTX64.EFI in {esp.where} is shim, and "
                        "neither grubx64.efi nor fbx64.efi is beside it: shim fails with "
                        "'Failed to open \\EFI\\BOOT\\grubx64.efi - Not Found'",
                        "shim-without-loader",
                        "copy the distribution's grubx64.efi (and fbx64.efi) into "
                        "\\EFI\\BOOT\\ beside shim, or run grub-install --removable",
                        loader="shim")
    return None


#: startup.nsh is read up to this size.
MAX_SCRIPT = 64 << 10


def _startup_nsh(disk: Reader, esps: Sequence[EspInfo]) -> UefiStep | None:
    """No removable loader: OVMF ends in its EFI shell, which runs \\startup.nsh."""
    from diskkit.boot.fat import FatFs

    for esp in esps:
        try:
            fs = FatFs(SliceReader(disk, esp.offset, esp.size, name=f"{disk.name} {esp.where}"))
            entry = fs.lookup("/startup.nsh")
            if entry is None or entry.is_dir:
                continue
            script = fs.read_file(entry, limit=MAX_SCRIPT).decode("latin-1", "replace")
            named = []
            for word in script.replace("\r", " ").split():
                if word.lower().endswith(".efi"):
                    path = word.split(":", 1)[-1] if ":" in word else word
                    named.append((word, "/" + path.replace("\\", "/").lstrip("/")))
            found = [w for w, p in named if fs.lookup(p) is not None]
        except (ImageError, struct.error, ValueError):
            continue
        if found:
            return UefiStep(True, f"no \\EFI\\BOOT\\BOOTX64.EFI, but the EFI shell (Secure "
                            f"Boot off) runs \\startup.nsh in {esp.where}, which starts "
                            f"{found[0]}", loader="startup.nsh")
        if named:
            return UefiStep(False, f"the EFI shell runs \\startup.nsh in {esp.where}, and the "
                            f"loader it names ({named[0][0]}) is not on that filesystem",
                            "startup-nsh-loader-missing",
                            "install the fallback loader (grub-install --removable), or fix "
                            "the path in startup.nsh", loader="startup.nsh")
    return None
