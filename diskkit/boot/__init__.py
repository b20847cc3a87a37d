"""Boot inspection: boot code (MBR, partition boot sectors), GRUB 2 for BIOS (core.img, prefix,
modules, where the prefix points), El Torito, EFI system partitions and their loaders.

:func:`inspect_boot` reads everything from the bytes of a Reader, nothing attached, and gives
a frozen :class:`BootInfo` (data, with ``to_dict()``) plus boot findings.
"""

from __future__ import annotations

from dataclasses import dataclass

from diskkit.boot.bootcode import BootCode, identify
from diskkit.boot.findings import boot_findings
from diskkit.findings import Finding, bound_finding

# The other boot modules are imported where inspect_boot needs them (GRUB only for a boot
# sector holding GRUB, El Torito only for an ISO, EFI only when there are partitions): a
# command that inspects a blank qcow2 does not pay for them at start-up.
TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from diskkit.boot.efi import EspInfo
    from diskkit.boot.eltorito import ElTorito
    from diskkit.boot.grub import CoreImage
    from diskkit.boot.grubcore import CoreVerdict
    from diskkit.boot.loaders import MbrStep
    from diskkit.boot.prefix import PrefixTarget
    from diskkit.boot.uefi import UefiStep
    from diskkit.layout.model import Partition
    from diskkit.readers.base import Reader

BIOS_BOOT_GUID = "21686148-6449-6E6F-744E-656564454649"
#: Work bounds: partition boot sectors read, GRUB core.img files followed.
MAX_VBRS = 128
MAX_GRUBS = 8

__all__ = ["BIOS_BOOT_GUID", "BootInfo", "GrubInfo", "inspect_boot"]


@dataclass(frozen=True)
class GrubInfo:
    """GRUB 2 for BIOS installed in one boot sector, followed to its core.img and prefix."""

    #: The boot sector holding boot.img: "mbr" or "partition N".
    where: str
    core: CoreImage
    #: Where core.img lies: "mbr-gap", "partition N", "outside-partitions", or "missing".
    core_location: str
    #: core.img lies inside the GPT BIOS boot partition (None: not a GPT disk).
    core_in_bios_boot_partition: bool | None
    target: PrefixTarget | None
    #: What core.img does at start-up (diskkit.boot.grubcore).
    verdict: CoreVerdict | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, "boot.grub")."""
        return {"where": self.where, "core": self.core.to_dict(),
                "core_location": self.core_location,
                "core_in_bios_boot_partition": self.core_in_bios_boot_partition,
                "prefix": self.core.prefix, "modules": list(self.core.modules),
                "target": self.target.to_dict() if self.target else None,
                "verdict": self.verdict.to_dict() if self.verdict else None}


@dataclass(frozen=True)
class BootInfo:
    """Everything about how this disk boots."""

    mbr: BootCode | None
    vbrs: tuple[BootCode, ...]
    grub: tuple[GrubInfo, ...]
    eltorito: ElTorito | None
    esp: tuple[EspInfo, ...]
    bios_boot_partition: Partition | None
    table: str | None
    findings: tuple[Finding, ...] = ()
    #: What the MBR code does next, by its own rules (diskkit.boot.loaders), when known.
    mbr_step: MbrStep | None = None
    #: Why OVMF finds no loader, or what shim runs (diskkit.boot.uefi), when it decides.
    uefi_step: UefiStep | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the ``boot`` section of ``diskkit info --json`` (docs/json.md)."""
        return {
            "mbr": self.mbr.to_dict() if self.mbr else None,
            "vbrs": [v.to_dict() for v in self.vbrs],
            "grub": [g.to_dict() for g in self.grub],
            "eltorito": self.eltorito.to_dict() if self.eltorito else None,
            "esp": [e.to_dict() for e in self.esp],
            "bios_boot_partition": (self.bios_boot_partition.to_dict()
                                    if self.bios_boot_partition else None),
            "findings": [f.to_dict() for f in self.findings],
            "mbr_step": self.mbr_step.to_dict() if self.mbr_step else None,
            "uefi_step": self.uefi_step.to_dict() if self.uefi_step else None,
        }


def _core_location(core: CoreImage, parts: Sequence[Partition]) -> str:
    if not core.found:
        return "missing"
    for p in parts:
        if p.kind != "extended" and p.start <= core.offset < p.end:
            return f"partition {p.number}"
    first = min((p.start for p in parts), default=None)
    if first is not None and core.offset < first:
        return "mbr-gap"
    return "outside-partitions"


def _grub(disk: Reader, where: str, sector: bytes, parts: Sequence[Partition],
          table: str | None, layout: Any, bbp: Partition | None) -> GrubInfo:
    from diskkit.boot.grub import boot_img_pointer, follow_core
    from diskkit.boot.grubcore import judge_core
    from diskkit.boot.prefix import resolve_prefix

    lba, drive = boot_img_pointer(sector)
    core = follow_core(disk, lba, drive)
    in_bbp = None
    if table == "gpt":
        in_bbp = bool(bbp and core.found and bbp.start <= core.offset < bbp.end)
    target = None
    if core.prefix is not None:
        target = resolve_prefix(disk, core.prefix, parts, table, layout)
    return GrubInfo(where, core, _core_location(core, parts), in_bbp, target,
                    judge_core(disk, core, parts, table, layout))


def inspect_boot(reader: Reader, layout: Any = None, *,
                 partitions: Sequence[Partition] | None = None,
                 table: str | None = None) -> BootInfo:
    """Inspect how the disk in ``reader`` boots.

    ``layout`` is the layout engineer's ``Layout`` (``.table``, ``.partitions``, ``.lvm``);
    without it pass ``partitions`` (and ``table``: "mbr", "gpt" or None) explicitly.
    """
    if layout is not None:
        partitions = list(getattr(layout, "partitions", ()) or ())
        table = getattr(layout, "table", table)
    parts = [p for p in (partitions or ())]
    sector0 = reader.read(0, 512)
    mbr = identify(sector0, where="mbr", offset=0) if len(sector0) == 512 else None
    bbp = next((p for p in parts if p.type.upper() == BIOS_BOOT_GUID), None)
    vbrs = []
    sectors = {}
    notes: list[str] = []
    if len(parts) > MAX_VBRS:
        notes.append(f"only the boot sectors of the first {MAX_VBRS} of {len(parts)} partitions "
                     "were read: work bound hit")
    for p in parts[:MAX_VBRS]:
        if p.kind == "extended" or p.size < 512 or p.start == 0:  # start 0: that is the MBR
            continue
        sec = reader.read(p.start, 512)
        if len(sec) == 512:
            vbrs.append(identify(sec, where=f"partition {p.number}", offset=p.start, vbr=True))
            sectors[f"partition {p.number}"] = sec
    grubs = []
    if mbr is not None and mbr.loader == "grub2":
        grubs.append(_grub(reader, "mbr", sector0, parts, table, layout, bbp))
    for v in [v for v in vbrs if v.loader == "grub2"][:MAX_GRUBS]:
        if v.loader == "grub2":
            grubs.append(_grub(reader, v.where, sectors[v.where], parts, table, layout, bbp))
    eltorito = None
    if reader.read(16 * 2048, 6) == b"\x01CD001":  # eltorito.is_iso, without the import
        from diskkit.boot.eltorito import inspect_iso

        eltorito = inspect_iso(reader)
    esps: list[EspInfo] = []
    if parts:
        from diskkit.boot.efi import inspect_esps

        esps = inspect_esps(reader, parts, notes)
    step = None
    if mbr is not None and mbr.signature:
        from diskkit.boot.loaders import follow_mbr

        step = follow_mbr(reader, sector0, mbr, parts)
    ustep = None
    if table == "gpt" or esps:  # judge_uefi decides nothing for other disks
        from diskkit.boot.uefi import judge_uefi

        ustep = judge_uefi(reader, sector0, table,
                           getattr(layout, "sector_size", 512) or 512, esps)
    info = BootInfo(mbr, tuple(vbrs), tuple(grubs), eltorito, tuple(esps), bbp, table,
                    mbr_step=step, uefi_step=ustep)
    notes += [g.core.error for g in grubs if g.core.error and "work bound" in g.core.error]
    if eltorito is not None and eltorito.error and "work bound" in eltorito.error:
        notes.append(eltorito.error)
    bounds = [bound_finding(n) for n in notes]
    return BootInfo(mbr, tuple(vbrs), tuple(grubs), eltorito, tuple(esps), bbp, table,
                    tuple(boot_findings(info)) + tuple(bounds), mbr_step=step,
                    uefi_step=ustep)
