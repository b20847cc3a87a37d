"""The EFI system partition and the loaders on it, read from its FAT filesystem.

OVMF (and any UEFI firmware with no saved boot entry) loads the removable-media path
\\EFI\\BOOT\\BOOTX64.EFI from each FAT filesystem (UEFI spec 2.x, 3.5.1.1 "Removable Media
Boot Behavior"); installed systems keep their loaders in vendor directories (\\EFI\\debian\\
shimx64.efi, grubx64.efi; \\EFI\\Microsoft\\Boot\\bootmgfw.efi). A loader is only usable when it
is a PE/COFF image for the machine: "MZ", e_lfanew at 0x3C, "PE\\0\\0", then the COFF machine
(0x8664 x86-64, 0x014C i386, 0xAA64 arm64).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from diskkit.boot.fat import FatFs, is_fat
from diskkit.errors import ImageError
from diskkit.layout.model import Partition
from diskkit.readers.base import Reader, SliceReader

ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ESP_MBR_TYPE = "0xef"
REMOVABLE_X64 = "/EFI/BOOT/BOOTX64.EFI"
MACHINES = {0x8664: "x86-64", 0x014C: "i386", 0xAA64: "arm64", 0x01C2: "arm"}
_MAX_LOADERS = 256
#: Work bounds: FAT filesystems examined for \\EFI per disk, and vendor directories per ESP.
MAX_ESPS = 16
MAX_EFI_DIRS = 64
#: Partitions looked at (one sector each) for a FAT filesystem.
MAX_PARTITIONS = 1024


@dataclass(frozen=True)
class Loader:
    """One .EFI file under \\EFI."""

    path: str
    size: int
    #: "x86-64", "i386", "arm64"... or None when the file is not a PE/COFF image.
    machine: str | None

    @property
    def is_x64(self) -> bool:
        """A PE/COFF image for x86-64."""
        return self.machine == "x86-64"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"path": self.path, "size": self.size, "machine": self.machine,
                "is_x64": self.is_x64}


@dataclass(frozen=True)
class EspInfo:
    """An EFI system partition (or other FAT filesystem with an \\EFI directory)."""

    where: str
    offset: int
    size: int
    fat_bits: int | None
    loaders: tuple[Loader, ...] = ()
    #: \\EFI\\BOOT\\BOOTX64.EFI present and a PE/COFF x86-64 image.
    removable_x64: bool = False
    error: str | None = None
    #: The partition is typed as an ESP (GPT C12A7328-..., MBR 0xEF). OVMF looks for the
    #: removable loader on every FAT filesystem, so FAT partitions with \\EFI count too.
    esp_type: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, "boot.esp")."""
        return {"where": self.where, "offset": self.offset, "size": self.size,
                "fat_bits": self.fat_bits, "loaders": [x.to_dict() for x in self.loaders],
                "removable_x64": self.removable_x64, "error": self.error,
                "esp_type": self.esp_type}


def pe_machine(head: bytes) -> str | None:
    """The machine of a PE/COFF image from its first bytes, or None when it is not one."""
    if len(head) < 0x40 or head[:2] != b"MZ":
        return None
    lfanew = struct.unpack_from("<I", head, 0x3C)[0]
    if lfanew + 6 > len(head) or head[lfanew:lfanew + 4] != b"PE\0\0":
        return None
    machine = struct.unpack_from("<H", head, lfanew + 4)[0]
    return MACHINES.get(machine, f"0x{machine:04x}")


def is_esp(part: Partition) -> bool:
    """GPT type C12A7328-... or MBR type 0xEF."""
    return part.type.upper() == ESP_GUID or part.type.lower() == ESP_MBR_TYPE


def inspect_fat_efi(reader: Reader, where: str, offset: int) -> EspInfo:
    """List the loaders under \\EFI of the FAT filesystem in ``reader``."""
    try:
        fs = FatFs(reader)
    except ImageError as exc:
        return EspInfo(where, offset, reader.size, None, error=str(exc))
    loaders: list[Loader] = []
    try:
        efi = fs.lookup("/EFI")
        if efi is not None and efi.is_dir:
            subs = [x for x in fs.listdir(efi.cluster) if x.is_dir]
            for sub in subs[:MAX_EFI_DIRS]:
                for f in fs.listdir(sub.cluster):
                    if f.is_dir or not f.name.lower().endswith(".efi"):
                        continue
                    if len(loaders) >= _MAX_LOADERS:
                        break
                    head = fs.read_chain(f.cluster, min(f.size, 4096)) if f.cluster else b""
                    loaders.append(Loader(f"/EFI/{sub.name}/{f.name}", f.size, pe_machine(head)))
    except (struct.error, ValueError) as exc:
        return EspInfo(where, offset, reader.size, fs.bits, tuple(loaders),
                       error=f"FAT directory is damaged: {exc}")
    removable = any(x.path.upper() == REMOVABLE_X64 and x.is_x64 for x in loaders)
    return EspInfo(where, offset, reader.size, fs.bits, tuple(loaders), removable)


def inspect_esps(disk: Reader, partitions: Iterable[Partition],
                 notes: list[str] | None = None) -> list[EspInfo]:
    """Every ESP among ``partitions`` with its loaders, and every other FAT partition that
    holds an \\EFI directory (hybrid ISOs type theirs "basic data" in the GPT).

    At most :data:`MAX_ESPS` filesystems are read (partitions at the same offset are read
    once); when more were there, a sentence saying so is appended to ``notes``."""
    out: list[EspInfo] = []
    seen: dict[tuple[int, int], EspInfo | None] = {}
    skipped = read = 0
    for p in partitions:
        if p.kind == "extended":
            continue
        key = (p.start, p.size)
        if key in seen:
            found = seen[key]
            if found is not None and len(out) < MAX_ESPS:
                out.append(replace(found, where=f"partition {p.number}"))
            continue
        if read >= MAX_ESPS or len(seen) >= MAX_PARTITIONS:
            skipped += 1
            continue
        part = SliceReader(disk, p.start, p.size, name=f"{disk.name} partition {p.number}")
        got: EspInfo | None = None
        if is_esp(p):
            read += 1
            got = inspect_fat_efi(part, f"partition {p.number}", p.start)
        elif p.start > 0 and is_fat(part):
            read += 1
            found = inspect_fat_efi(part, f"partition {p.number}", p.start)
            if found.loaders:
                got = replace(found, esp_type=False)
        seen[key] = got
        if got is not None:
            out.append(got)
    if skipped and notes is not None:
        notes.append(f"only the first {MAX_ESPS} FAT filesystems (of {MAX_PARTITIONS} "
                     f"partitions) were examined for EFI loaders ({skipped} more partitions "
                     "not read): work bound hit")
    return out
