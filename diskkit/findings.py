"""Findings: what diskkit found, as data.

A finding is never an exception. It has a stable kebab-case ``code`` (scripts match on it, and
docs/findings.md lists every one), a ``severity``, a one-sentence ``message``, the ``evidence``
that proves it (offsets and the bytes found there), and the ``fix`` a person can paste.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    """How much a finding matters. ERROR and above block an upload (``check`` exits 1)."""

    INFO = 10
    WARNING = 20
    ERROR = 30
    CRITICAL = 40

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Evidence:
    """Where the proof is: a byte ``offset`` (in the file, or on the guest disk), the bytes
    found there, and a short note of what they mean."""

    note: str
    offset: int | None = None
    data: bytes | None = None
    #: "file" when offset counts bytes of the image file, "disk" for the guest-visible disk.
    space: str = "file"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; bytes are shown as lowercase hex."""
        out: dict[str, Any] = {"note": self.note}
        if self.offset is not None:
            out["offset"] = self.offset
            out["space"] = self.space
        if self.data is not None:
            out["bytes"] = self.data.hex()
        return out


@dataclass(frozen=True)
class Finding:
    """One thing found, with its proof and its remedy."""

    code: str
    severity: Severity
    message: str
    evidence: tuple[Evidence, ...] = ()
    fix: str | None = None
    #: Extra structured facts (a backing file name, an extent path...) for scripts.
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def blocking(self) -> bool:
        """True when this finding makes an image unsafe to accept or use."""
        return self.severity >= Severity.ERROR

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the shape documented in docs/json.md)."""
        out: dict[str, Any] = {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "evidence": [e.to_dict() for e in self.evidence],
            "fix": self.fix,
        }
        if self.details:
            out["details"] = self.details
        return out


def worst(findings: list[Finding] | tuple[Finding, ...]) -> Severity | None:
    """The highest severity among ``findings``, or None when there are none."""
    return max((f.severity for f in findings), default=None)


#: The code of every finding that says a parser stopped at its work bound (docs/security.md).
WORK_BOUND_HIT = "work-bound-hit"


def bound_finding(message: str, **details: Any) -> Finding:
    """A ``work-bound-hit`` warning: a parser stopped at one of its work bounds (entry counts,
    decompression attempts, tokens, extents), so what follows it is partial."""
    return Finding(WORK_BOUND_HIT, Severity.WARNING, message, (),
                   "inspect this image with care: it is unusually large or crafted; the "
                   "bound is diskkit's, not the image format's", details)
