"""What MBR boot code DOES, loader by loader: which sector it loads next and what it checks.

The signature table (:mod:`diskkit.boot.bootcode`) says which loader is in sector 0; this
module follows that loader's own rules, each read from its source (docs/boot-loaders.md):

- SYSLINUX ``mbr.bin`` (mbr/mbr.S): the primary partition with the active flag (0x80), else
  an active logical one; two active -> "Multiple active partitions."; none -> "Missing
  operating system."; the loaded sector must end in 55 AA.
- SYSLINUX ``altmbr.bin`` (mbr/altmbr.S): the partition whose number is the byte at 0x1B7
  (1-4 primary, 5+ logical); the active flag is NOT looked at. An empty slot (type 0) or a
  sector without 55 AA -> "Missing operating system."
- SYSLINUX ``gptmbr.bin`` (mbr/gptmbr.S, 5.10+): reads the GPT header at LBA 1 (entries LBA
  at 72, count at 80, entry size at 84) and the entry whose type GUID is not zero and whose
  attribute bit 2 (legacy BIOS bootable) is set; none -> "Missing OS", two -> "Multiple
  active partitions"; the MBR active flag is not looked at.
- SYSLINUX ``isohdpfx.bin`` (mbr/isohdpfx.S): loads 4 sectors from the 512-byte LBA at 0x1B0
  and jumps only when the u32 at offset 64 of what it loaded is 0x7078C0FB, the hybrid
  signature of isolinux.bin; else "isolinux.bin missing or corrupt."

- install-mbr (Debian's ``mbr`` package; parameters as ``install-mbr --list`` shows them):
  a parameter block before the disk signature: the enabled keys at 0x1AE, the interrupt
  bits and the default at 0x1AF (low 3 bits: 0-3 partition 1-4, 4 the floppy, 7 "D", the
  partition with the active flag), the timeout in 1/18 s at 0x1B0 (0xFFFF: "Interrupt:
  Always", the prompt waits for a key), the drive at 0x1B2, the version at 0x1B4. Without a
  key press it loads the default partition's first sector; no 55 AA (or none to load): its
  prompt, waiting for a key.

Pure and bounded: a Reader and the partition table in, a frozen :class:`MbrStep` out.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diskkit.boot.bootcode import BootCode
from diskkit.layout.model import Partition
from diskkit.readers.base import Reader

#: isolinux.bin's hybrid signature at offset 64 (isohdpfx.S HYBRID_MAGIC).
ISOLINUX_HYBRID_MAGIC = 0x7078C0FB
#: gptmbr.S assumes the entry array is at most 32 KiB (it reads it below 0x10000).
_GPT_ARRAY_MAX = 32 * 1024

__all__ = ["ISOLINUX_HYBRID_MAGIC", "MbrStep", "follow_mbr", "variant"]


@dataclass(frozen=True)
class MbrStep:
    """What the MBR code does next.

    ``boots``: True when it hands over to a loaded sector with 55 AA (``loads`` says which:
    "partition N" or "isolinux.bin"), False when it stops (``message`` is what it prints),
    None when this module cannot tell.
    """

    loader: str
    rule: str
    boots: bool | None
    reason: str
    loads: str | None = None
    #: Byte offset on the disk of the sector (or file) it loads.
    offset: int | None = None
    #: What the code prints when it stops.
    message: str | None = None
    #: The finding code when it stops, and the fix.
    code: str | None = None
    fix: str | None = None
    #: The partition number it loads (None: not a partition).
    partition: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``boot.mbr_step`` of info --json)."""
        return {"loader": self.loader, "rule": self.rule, "boots": self.boots,
                "reason": self.reason, "loads": self.loads, "offset": self.offset,
                "message": self.message, "code": self.code, "fix": self.fix,
                "partition": self.partition}


def variant(code: BootCode, sector: bytes) -> str | None:
    """The loader whose rules apply to ``sector`` (already identified as ``code``):
    "syslinux-mbr", "syslinux-altmbr", "syslinux-gptmbr", "isohdpfx", "install-mbr" or
    None."""
    if code.loader == "syslinux":
        desc = code.description
        if "altmbr" in desc:
            return "syslinux-altmbr"
        if "gptmbr" in desc:
            return "syslinux-gptmbr"
        if "mbr.bin" in desc:
            return "syslinux-mbr"
        return None
    if code.loader == "isohybrid" and sector[:2] == b"\x33\xed":
        return "isohdpfx"
    if code.loader == "install-mbr" and sector[0x1B4] == 2:  # parameter block version 2
        return "install-mbr"
    return None


def _vbr_ok(disk: Reader, offset: int) -> bool:
    sec = disk.read(offset, 512)
    return len(sec) == 512 and sec[510:512] == b"\x55\xaa"


#: What each loader prints when the BIOS cannot read the sector it loads (its disk_error).
_READ_ERROR = {"syslinux-gptmbr": "Disk error", "syslinux-mbr": "Operating system load error.",
               "syslinux-altmbr": "Operating system load error."}


def _load(disk: Reader, name: str, rule: str, part: Partition, how: str) -> MbrStep:
    where = f"partition {part.number}"
    if part.start + 512 > disk.size:
        return MbrStep(name, rule, False, f"{how}: {where}, which starts at byte {part.start}, "
                       f"beyond the end of the {disk.size}-byte disk: it is not there",
                       where, part.start, _READ_ERROR.get(name), "partition-beyond-end",
                       "resize the volume to the image's size (the disk was made smaller "
                       "than the partition table says), or rewrite the partition table",
                       part.number)
    if not _vbr_ok(disk, part.start):
        return MbrStep(name, rule, False, f"{how}: {where}, whose boot sector has no 55 AA "
                       "(or lies beyond the end of the disk)", where, part.start,
                       "Missing operating system.", "vbr-no-boot-code",
                       f"install a boot loader into {where} (e.g. syslinux --install or "
                       "extlinux --install on its filesystem)", part.number)
    return MbrStep(name, rule, True, f"{how}: {where}", where, part.start,
                   partition=part.number)


def _primary(sector0: bytes) -> list[tuple[int, int, int, int]]:
    """(number, status, type, start LBA) of the 4 primary entries."""
    out = []
    for i in range(4):
        e = sector0[0x1BE + 16 * i:0x1BE + 16 * (i + 1)]
        out.append((i + 1, e[0], e[4], struct.unpack_from("<I", e, 8)[0]))
    return out


def _by_number(parts: Sequence[Partition], n: int) -> Partition | None:
    return next((p for p in parts if p.number == n and p.kind != "gpt"), None)


_ACTIVE_FIX = "mark the boot partition active: sfdisk --activate IMAGE N (or parted IMAGE " \
    "set N boot on)"


def _syslinux_mbr(disk: Reader, sector0: bytes, parts: Sequence[Partition]) -> MbrStep:
    name, rule = "syslinux-mbr", "boots the partition with the active flag (0x80)"
    active = [n for n, status, typ, _ in _primary(sector0) if status & 0x80]
    if not active:
        active = [p.number for p in parts if p.kind == "logical" and p.bootable]
    if len(active) > 1:
        return MbrStep(name, rule, False, f"partitions {active} are all active",
                       message="Multiple active partitions.", code="multiple-active-partitions",
                       fix="leave one partition active (sfdisk --activate IMAGE N)")
    if not active:
        return MbrStep(name, rule, False, "no partition is active",
                       message="Missing operating system.", code="no-active-partition",
                       fix=_ACTIVE_FIX)
    part = _by_number(parts, active[0])
    if part is None:
        return MbrStep(name, rule, False, f"partition {active[0]} is active but not a valid "
                       "partition", message="Missing operating system.",
                       code="no-active-partition", fix=_ACTIVE_FIX)
    return _load(disk, name, rule, part, "loads the active partition")


def _altmbr(disk: Reader, sector0: bytes, parts: Sequence[Partition]) -> MbrStep:
    name = "syslinux-altmbr"
    n = sector0[0x1B7]
    rule = f"boots the partition numbered by the byte at 0x1B7 ({n}); the active flag is " \
        "not looked at"
    fix = "write the boot partition's number at 0x1B7: printf '\\\\x0N' | dd of=IMAGE bs=1 " \
        "seek=439 conv=notrunc (or dd the altmbr.bin again and set it)"
    entry = None
    if 1 <= n <= 4:
        entry = _primary(sector0)[n - 1]
        if entry[2] == 0:
            return MbrStep(name, rule, False, f"the byte at 0x1B7 names partition {n}, an "
                           "empty slot of the partition table", message="Missing operating "
                           "system.", code="altmbr-partition-missing", fix=fix, partition=n)
    part = _by_number(parts, n) if n else None
    if part is None:
        return MbrStep(name, rule, False, f"the byte at 0x1B7 names partition {n}, which is "
                       "not on this disk", message="Missing operating system.",
                       code="altmbr-partition-missing", fix=fix, partition=n or None)
    return _load(disk, name, rule, part, f"loads partition {n} (byte 0x1B7)")


def _gptmbr(disk: Reader, parts: Sequence[Partition]) -> MbrStep:
    name = "syslinux-gptmbr"
    rule = "boots the GPT partition with attribute bit 2 (legacy BIOS bootable); the MBR " \
        "active flag is not looked at"
    fix = "set the legacy BIOS bootable attribute on the boot partition: sgdisk " \
        "--attributes=N:set:2 IMAGE (or sfdisk --part-attrs IMAGE N LegacyBIOSBootable)"
    head = disk.read(512, 512)
    if len(head) < 92:
        return MbrStep(name, rule, None, "the GPT header at LBA 1 cannot be read")
    lba = struct.unpack_from("<Q", head, 72)[0]
    count = struct.unpack_from("<H", head, 80)[0]  # gptmbr.S reads 16 bits of the count
    size = struct.unpack_from("<I", head, 84)[0]
    if size < 128 or count * size > _GPT_ARRAY_MAX:
        return MbrStep(name, rule, None, f"a GPT entry array gptmbr.bin does not handle "
                       f"({count} entries of {size} bytes)")
    array = disk.read(lba * 512, count * size)
    chosen = []
    for i in range(len(array) // size):
        e = array[i * size:(i + 1) * size]
        if e[:16] != bytes(16) and e[48] & 0x04:
            chosen.append((i + 1, struct.unpack_from("<Q", e, 32)[0]))
    if len(chosen) > 1:
        return MbrStep(name, rule, False, f"GPT entries {[c[0] for c in chosen]} all have "
                       "the legacy BIOS bootable attribute", message="Multiple active "
                       "partitions", code="multiple-active-partitions",
                       fix="clear attribute bit 2 on all but one: sgdisk "
                       "--attributes=N:clear:2 IMAGE")
    if not chosen:
        return MbrStep(name, rule, False, "no GPT partition has the legacy BIOS bootable "
                       "attribute (bit 2)", message="Missing OS",
                       code="gpt-no-legacy-bootable", fix=fix)
    number, first = chosen[0]
    part = next((p for p in parts if p.number == number), None) or Partition(
        number, first * 512, 512, "", kind="gpt")
    step = _load(disk, name, rule, part, f"loads GPT partition {number} (legacy BIOS bootable)")
    if step.code == "vbr-no-boot-code":  # gptmbr.S says it in its own words
        return MbrStep(**{**step.__dict__, "message": "Missing OS"})
    return step


def _isohdpfx(disk: Reader, sector0: bytes) -> MbrStep:
    name = "isohdpfx"
    lba = struct.unpack_from("<I", sector0, 0x1B0)[0]
    rule = f"loads 4 sectors at the 512-byte LBA at 0x1B0 ({lba}) and jumps only when they " \
        "carry isolinux.bin's hybrid signature (0x7078C0FB at offset 64)"
    data = disk.read(lba * 512, 2048)
    if len(data) < 68:
        return MbrStep(name, rule, False, f"the LBA at 0x1B0 ({lba}) lies beyond the end "
                       "of the disk", "isolinux.bin", lba * 512,
                       "Operating system load error.", "isohybrid-boot-file-missing",
                       "rebuild the hybrid image (isohybrid, or xorriso -isohybrid-mbr "
                       "isohdpfx.bin with ISOLINUX as the El Torito boot image)")
    if struct.unpack_from("<I", data, 64)[0] != ISOLINUX_HYBRID_MAGIC:
        return MbrStep(name, rule, False, "the boot file the isohybrid MBR loads has no "
                       "isolinux.bin hybrid signature at offset 64", "isolinux.bin",
                       lba * 512, "isolinux.bin missing or corrupt.",
                       "isohybrid-boot-file-not-hybrid",
                       "use ISOLINUX 4+ (isolinux.bin, which carries the hybrid entry) as the "
                       "El Torito boot image, or an MBR made for the boot loader used "
                       "(grub-mkrescue for GRUB)")
    return MbrStep(name, rule, True, f"loads isolinux.bin at sector {lba} (hybrid "
                   "signature present)", "isolinux.bin", lba * 512)


def _install_mbr(disk: Reader, sector0: bytes, parts: Sequence[Partition]) -> MbrStep:
    name = "install-mbr"
    default = sector0[0x1AF] & 0x07
    timeout = struct.unpack_from("<H", sector0, 0x1B0)[0]
    label = {4: "F (the floppy)", 7: "D (the active partition)"}.get(default, str(default + 1))
    rule = f"boots its default partition ({label}, byte 0x1AF) after its timeout unless a key " \
        "is pressed"
    fix = "set the default partition: install-mbr --keep --partition N IMAGE (and " \
        "--interrupt s, not 'a', for an unattended boot)"
    if timeout == 0xFFFF:
        return MbrStep(name, rule, False, "its prompt is set to 'Always' (timeout 0xFFFF): it "
                       "waits for a key press", message=None, code="mbr-prompt-waits", fix=fix)
    if default == 4 or default in (5, 6):
        return MbrStep(name, rule, False, f"its default is {label}, not a partition of this "
                       "disk: it shows its prompt and waits", code="mbr-default-not-on-disk",
                       fix=fix)
    if default == 7:
        active = [n for n, status, _t, _s in _primary(sector0) if status & 0x80]
        if not active:
            return MbrStep(name, rule, False, "its default is the active partition and none is "
                           "active: it shows its prompt and waits", code="no-active-partition",
                           fix=_ACTIVE_FIX + ", or install-mbr --keep --partition N IMAGE")
        number = active[0]
    else:
        number = default + 1
    part = _by_number(parts, number)
    if part is None or _primary(sector0)[number - 1][2] == 0:
        return MbrStep(name, rule, False, f"its default, partition {number}, is an empty slot: "
                       "it shows its prompt and waits", code="mbr-default-not-on-disk",
                       fix=fix, partition=number)
    step = _load(disk, name, rule, part, f"loads its default partition {number}")
    if step.boots is False:  # a disk error or no 55 AA: the prompt, not a message
        return MbrStep(**{**step.__dict__, "message": None})
    return step


def follow_mbr(disk: Reader, sector0: bytes, code: BootCode,
               parts: Sequence[Partition]) -> MbrStep | None:
    """Follow the MBR code in ``sector0`` one step (None: not a loader whose rules are here)."""
    kind = variant(code, sector0)
    if kind == "syslinux-mbr":
        return _syslinux_mbr(disk, sector0, parts)
    if kind == "syslinux-altmbr":
        return _altmbr(disk, sector0, parts)
    if kind == "syslinux-gptmbr":
        return _gptmbr(disk, parts)
    if kind == "isohdpfx":
        return _isohdpfx(disk, sector0)
    if kind == "install-mbr":
        return _install_mbr(disk, sector0, parts)
    return None
