"""The data model of a disk's layout, shared by the parsers, boot inspection and diagnosis.

All offsets and sizes are in bytes of the guest-visible disk (or of the LV they belong to),
exactly as ``sfdisk --json`` gives them once multiplied by its sector size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Partition:
    """One partition, MBR or GPT."""

    number: int
    start: int
    size: int
    #: MBR type byte as "0x83", or GPT type GUID in canonical uppercase form.
    type: str
    #: Human name of the type ("Linux filesystem", "EFI System", "BIOS boot").
    type_name: str = ""
    #: GPT partition name; "" for MBR.
    name: str = ""
    #: MBR active flag (0x80); GPT "legacy BIOS bootable" attribute bit 2.
    bootable: bool = False
    #: "primary", "extended", "logical" (MBR) or "gpt".
    kind: str = "primary"
    uuid: str | None = None

    @property
    def end(self) -> int:
        """First byte after the partition."""
        return self.start + self.size

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md)."""
        return {
            "number": self.number,
            "start": self.start,
            "size": self.size,
            "type": self.type,
            "type_name": self.type_name,
            "name": self.name,
            "bootable": self.bootable,
            "kind": self.kind,
            "uuid": self.uuid,
        }


@dataclass(frozen=True)
class Filesystem:
    """A filesystem (or other recognised content: swap, LVM2 PV, LUKS) found by superblock."""

    type: str
    #: Where it is: "disk", "partition 2", "lv vg0/root".
    location: str
    #: Byte offset of its start on the disk (None inside an LV that is not linear).
    offset: int | None
    size: int | None = None
    uuid: str | None = None
    label: str | None = None
    #: Type-specific facts: ext4 "needs_recovery", FAT "fat_bits"...
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md)."""
        return {
            "type": self.type,
            "location": self.location,
            "offset": self.offset,
            "size": self.size,
            "uuid": self.uuid,
            "label": self.label,
            "details": self.details,
        }
