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
    #: True: the firmware reaches a working boot loader; False: it does not; None: cannot tell.
    will_boot: bool | None
    #: One sentence: why that verdict.
    reason: str
    #: Ordered cause first (the finding that decides the verdict), then by severity.
    findings: tuple[Finding, ...] = ()
    #: The facts the verdict rests on (sector 0, signature, table, loaders...).
    facts: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    seconds: float = 0.0

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
                "findings": [f.to_dict() for f in self.findings], "facts": self.facts,
                "seconds": round(self.seconds, 3)}
