"""The result of ``diagnose``: a verdict, the reason, the findings (cause first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diskkit.findings import Finding


@dataclass(frozen=True)
class Diagnosis:
    """Will this disk boot under this firmware, attached this way, and why (not)."""

    target: str
    #: The format the hypervisor opens the target with (what the firmware's disk is made of).
    format: str
    #: What detection says the stored bytes are.
    detected_format: str
    firmware: str
    media: str
    #: True: the guest reaches the login prompt (with no OS followed: the firmware reaches a
    #: working boot loader); False: it stops before; None: cannot tell.
    will_boot: bool | None
    #: One sentence: why that verdict.
    reason: str
    #: Ordered cause first (the finding that decides the verdict), then by severity.
    findings: tuple[Finding, ...] = ()
    #: The facts the verdict rests on (sector 0, signature, table, loaders...).
    facts: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    seconds: float = 0.0
    #: The disk bus judged (virtio, scsi, sata, ide: Nova's hw_disk_bus).
    bus: str = "virtio"
    #: The furthest stage the guest reaches (firmware, boot-loader, kernel, initramfs,
    #: userspace, login: boot-test's stages).
    reaches: str | None = None
    #: What boot-test to the login prompt should see (login, grub-error, initramfs-shell,
    #: emergency-mode, no-bootable-device...); None when it cannot tell.
    outcome: str | None = None
    #: The boot chain, stage by stage (diskkit.diagnose.stages.Stage).
    stages: tuple[Any, ...] = ()
    #: True when an operating system was followed past the boot loader (else the verdict is
    #: the boot loader's: will_boot True means the loader starts).
    followed: bool = False

    @property
    def cause(self) -> Finding | None:
        """The finding that decides the verdict, when the verdict is False."""
        return self.findings[0] if self.findings and self.will_boot is False else None

    def to_json(self) -> Any:
        """Exactly what the command prints with --json (:func:`diskkit.jsonable.jsonable`)."""
        from diskkit.jsonable import jsonable

        return jsonable(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, "diagnose")."""
        # docs/json.md: "format" is always what the bytes are; "open_format" what the
        # hypervisor is told.
        return {"target": self.target, "format": self.detected_format,
                "open_format": self.format, "firmware": self.firmware,
                "as": self.media, "will_boot": self.will_boot, "reason": self.reason,
                "cause": self.cause.code if self.cause else None,
                "bus": self.bus, "reaches": self.reaches, "outcome": self.outcome,
                "os_followed": self.followed, "stages": [s.to_dict() for s in self.stages],
                "findings": [f.to_dict() for f in self.findings], "facts": self.facts,
                "seconds": round(self.seconds, 3)}
