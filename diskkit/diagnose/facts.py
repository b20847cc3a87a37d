"""Gather what the rules judge: the stored bytes' format, the disk the firmware will see
(the target opened with the hypervisor's format), its sector 0, whether it holds any data
at all (read through ``data_extents``: a blank terabyte costs nothing), its layout and boot
facts (:func:`diskkit.layout.inspect_layout`, :func:`diskkit.boot.inspect_boot`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from diskkit.boot import BootInfo
from diskkit.errors import ImageError
from diskkit.formats import registry
from diskkit.formats.detect import Detection
from diskkit.pipeline import Inspection
from diskkit.readers.base import Extent, Reader
from diskkit.target import Target

#: How much allocated data the blank check reads at most (all zeros so far: "blank").
BLANK_BUDGET = 64 << 20
#: Work bounds of the blank check: extents walked (holes included) and seconds.
MAX_BLANK_EXTENTS = 1 << 16
BLANK_SECONDS = 10.0


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
    #: ``work-bound-hit`` findings of the checks that stopped early.
    bounds: list[Any] = field(default_factory=list)
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
    info = registry.lookup(detection.format)
    return info is not None and info.is_container and \
        detection.details.get("subformat") != "fixed"


def is_kind(fmt: str, kind: registry.Kind) -> bool:
    """``fmt`` is a registered format of this kind (compressed, archive...)."""
    info = registry.lookup(fmt)
    return info is not None and info.kind is kind


def _blank(disk: Reader) -> tuple[bool, int, str | None]:
    """(all zeros, allocated bytes seen, why it stopped early or None).

    Stops at the first non-zero byte of allocated data (the disk is then not blank, and
    ``allocated`` counts only what was walked so far), after :data:`BLANK_BUDGET` bytes of
    zeros read (blank, as far as the budget tells), or after :data:`MAX_BLANK_EXTENTS` extents
    or :data:`BLANK_SECONDS` (holes included: a 1 TiB qcow2 of alternating clusters or a VHDX
    claiming 128 PiB): then it cannot tell, says not blank, and gives the reason."""
    allocated = 0
    read = 0
    deadline = time.monotonic() + BLANK_SECONDS
    for count, ext in enumerate(_windowed_extents(disk), 1):
        if count > MAX_BLANK_EXTENTS or time.monotonic() > deadline:
            return False, allocated, (
                f"the blank check stopped after {count - 1} extents "
                f"({ext.offset} of {disk.size} bytes walked): work bound hit")
        if not ext.data or not ext.length:
            continue
        allocated += ext.length
        n = min(ext.length, BLANK_BUDGET - read)
        if n > 0 and not disk.is_zero(ext.offset, n):
            return False, allocated, None
        read += max(n, 0)
        if read >= BLANK_BUDGET:
            return True, allocated, None
    return True, allocated, None


#: The blank check asks for extents window by window, so a reader never lists a whole
#: hostile disk's map before the check's own bounds can stop it.
BLANK_WINDOW = 4 << 30


def _windowed_extents(disk: Reader) -> Iterator[Extent]:
    pos = 0
    while pos < disk.size:
        n = min(BLANK_WINDOW, disk.size - pos)
        yield from disk.extents(pos, n)
        pos += n


def gather(insp: Inspection) -> Facts:
    """Read what the rules judge from an :class:`~diskkit.pipeline.Inspection` opened with
    ``hypervisor=True``: the firmware's disk, its first sector, blankness, layout and boot.
    The caller closes ``insp``; Facts hold data (and readers that ``insp`` closes)."""
    detection = insp.detection
    facts = Facts(insp.target, detection, insp.format)
    if not registry.get(facts.format).raw_bytes and facts.format != detection.format:
        facts.problem = (f"the hypervisor is told {facts.format} but the bytes are "
                         f"{detection.format}: qemu refuses to open it")
        return facts
    disk = insp.disk
    if disk is None:
        exc = insp.error("disk")
        if not isinstance(exc, ImageError):
            raise exc or ImageError("the disk could not be opened")
        facts.problem = f"not opened: {exc.message}"
        return facts
    _inspect(facts, disk, insp)
    return facts


def _inspect(facts: Facts, disk: Reader, insp: Inspection) -> None:
    facts.disk = disk
    facts.sector0 = disk.read(0, 512)
    facts.blank, facts.allocated, bound = _blank(disk)
    if bound:
        from diskkit.findings import bound_finding

        facts.bounds.append(bound_finding(bound))
    not_a_disk = not registry.get(facts.detection.format).is_disk or (
        facts.format == "raw" and is_container(facts.detection))
    if facts.blank or not_a_disk:
        return  # the universal rules decide; nothing on it to inspect
    facts.layout, facts.boot = insp.layout, insp.boot
    exc = insp.error("boot")
    if exc is not None:
        facts.problem = f"layout not read: {exc.message}"
