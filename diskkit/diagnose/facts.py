"""Gather what the rules judge: the stored bytes' format, the disk the firmware will see
(the target opened with the hypervisor's format), its sector 0, whether it holds any data
at all (read through ``data_extents``: a blank terabyte costs nothing), its layout and boot
facts (:func:`diskkit.layout.inspect_layout`, :func:`diskkit.boot.inspect_boot`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from diskkit.boot import BootInfo, inspect_boot
from diskkit.errors import DiskkitError, ImageError
from diskkit.formats import safety
from diskkit.formats.detect import Detection, detect
from diskkit.readers.base import Reader
from diskkit.target import Target

#: Container formats: their first sector is their own header, never boot code.
CONTAINERS = ("qcow2", "qed", "vmdk", "vhdx", "vdi", "vhd", "luks")
COMPRESSED = ("gzip", "xz", "zstd", "bzip2")
ARCHIVES = ("zip", "tar", "ova")
#: How much allocated data the blank check reads at most before it says "not blank".
BLANK_BUDGET = 64 << 20


@dataclass
class Facts:
    """Everything the rules look at (mutable while it is gathered)."""

    target: Target
    detection: Detection
    #: The format the hypervisor uses (normalised: raw, qcow2, ...).
    format: str
    disk: Reader | None = None
    sector0: bytes = b""
    #: True: no byte of the disk is non-zero (within BLANK_BUDGET of allocated data).
    blank: bool = False
    #: Bytes of allocated data the disk has (from its extents).
    allocated: int = 0
    layout: Any = None
    boot: BootInfo | None = None
    #: Why the disk could not be opened or inspected (then the verdict may be "cannot tell").
    problem: str | None = None

    @property
    def signature(self) -> bool:
        """55 AA at 0x1FE of sector 0: what SeaBIOS checks (src/boot.c)."""
        return len(self.sector0) == 512 and self.sector0[510:512] == b"\x55\xaa"

    def to_dict(self) -> dict[str, Any]:
        """The ``facts`` of the JSON output."""
        out: dict[str, Any] = {
            "disk_size": self.disk.size if self.disk else None,
            "allocated_bytes": self.allocated,
            "blank": self.blank,
            "sector0_first_bytes": self.sector0[:16].hex(),
            "signature_55aa": self.signature,
            "partition_table": getattr(self.layout, "table", None),
            "problem": self.problem,
        }
        if self.boot is not None:
            b = self.boot
            out["mbr_loader"] = b.mbr.loader if b.mbr else None
            out["uefi_loaders"] = [f"{e.where}:{x.path}" for e in b.esp for x in e.loaders]
            out["eltorito"] = None if b.eltorito is None else {
                "catalog": b.eltorito.catalog_present,
                "bios_bootable": b.eltorito.bios_bootable,
                "platform": b.eltorito.validation_platform}
            out["grub_prefixes"] = [g.core.prefix for g in b.grub]
        return out


def is_container(detection: Detection) -> bool:
    """The stored bytes are a container format whose sector 0 is its header (a fixed VHD is
    not: its guest disk starts at byte 0 and the footer is at the end)."""
    return detection.format in CONTAINERS and detection.details.get("subformat") != "fixed"


def hypervisor_format(target: Target, detection: Detection, fmt: str | None) -> str:
    """The format the hypervisor opens the target with: ``-f`` when given; an RBD volume is
    always raw; otherwise the detected format when qemu reads it, else raw (what a volume
    made of those bytes would be)."""
    if fmt:
        return safety.normalise_format(fmt)
    if target.kind == "rbd":
        return "raw"
    if is_container(detection):
        return detection.format
    return "raw"


def _blank(disk: Reader) -> tuple[bool, int]:
    """(all zeros within the budget, allocated bytes)."""
    allocated = 0
    read = 0
    blank = True
    for ext in disk.data_extents():
        allocated += ext.length
        if not blank or read >= BLANK_BUDGET:
            continue
        n = min(ext.length, BLANK_BUDGET - read)
        if not disk.is_zero(ext.offset, n):
            blank = False
        read += n
    return blank, allocated


def gather(target: Target, container: Reader, fmt: str | None) -> Facts:
    """Detect, open the firmware's disk, read its first sector, layout and boot facts.
    The caller closes ``container``; the disk reader (when not the container) is closed
    here before returning, so Facts hold only data (and readers that are closed)."""
    detection = detect(container)
    facts = Facts(target, detection, hypervisor_format(target, detection, fmt))
    if facts.format in ("raw", "iso"):
        _inspect(facts, container)
        return facts
    if facts.format != detection.format:
        facts.problem = (f"the hypervisor is told {facts.format} but the bytes are "
                         f"{detection.format}: qemu refuses to open it")
        return facts
    from diskkit.disk import open_disk

    try:
        disk = open_disk(target, facts.format)
    except ImageError as exc:
        facts.problem = f"not opened: {exc.message}"
        return facts
    with contextlib.closing(disk):
        _inspect(facts, disk)
    return facts


def _inspect(facts: Facts, disk: Reader) -> None:
    facts.disk = disk
    facts.sector0 = disk.read(0, 512)
    facts.blank, facts.allocated = _blank(disk)
    not_a_disk = facts.detection.format in COMPRESSED + ARCHIVES or (
        facts.format == "raw" and is_container(facts.detection))
    if facts.blank or not_a_disk:
        return  # the universal rules decide; nothing on it to inspect
    from diskkit.layout import inspect_layout

    try:
        facts.layout = inspect_layout(disk)
        facts.boot = inspect_boot(disk, facts.layout)
    except DiskkitError as exc:
        facts.problem = f"layout not read: {exc.message}"
