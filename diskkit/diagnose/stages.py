"""The boot chain as stages, each with its own verdict and evidence (docs/diagnose.md).

``firmware -> boot-code -> boot-loader -> kernel -> initramfs -> root-filesystem -> init ->
login``. A :class:`Stage` says ``ok``, ``fails``, ``cannot-tell`` or ``not-checked`` (a later
stage after one that fails or cannot tell). :func:`reaches` turns the list into the furthest
stage of boot-test's vocabulary (``firmware``, ``boot-loader``, ``kernel``, ``initramfs``,
``userspace``, ``login``: :data:`diskkit.boottest.classify.STAGES`) and the outcome
boot-test should see (``grub-error``, ``initramfs-shell``, ``emergency-mode``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diskkit.findings import Finding

#: The chain, in order.
CHAIN = ("firmware", "boot-code", "boot-loader", "kernel", "initramfs", "root-filesystem",
         "init", "login")
#: boot-test's stages (how far a boot got), in order.
REACHES = ("firmware", "boot-loader", "kernel", "initramfs", "userspace", "login")
#: Where the guest stops when a chain stage fails (the boot-test stage it is seen at).
STOPS_AT = {"firmware": "firmware", "boot-code": "firmware", "boot-loader": "boot-loader",
            "kernel": "kernel", "initramfs": "initramfs", "root-filesystem": "initramfs",
            "init": "userspace", "login": "userspace"}
#: The furthest boot-test stage reached once a chain stage is passed.
PASSED = {"firmware": "firmware", "boot-code": "firmware", "boot-loader": "boot-loader",
          "kernel": "kernel", "initramfs": "initramfs", "root-filesystem": "initramfs",
          "init": "userspace", "login": "login"}

OK, FAILS, CANNOT_TELL, NOT_CHECKED = "ok", "fails", "cannot-tell", "not-checked"


@dataclass(frozen=True)
class Stage:
    """One link of the chain: what it needs, whether this disk gives it, and the proof."""

    name: str
    #: "ok", "fails", "cannot-tell" or "not-checked".
    verdict: str
    reason: str
    #: Lines that show it (guest file:line: text, device names, drivers found).
    evidence: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    #: With "fails": what boot-test sees (grub-error, initramfs-shell, kernel-panic...).
    outcome: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, "diagnose" ``stages``)."""
        return {"stage": self.name, "verdict": self.verdict, "reason": self.reason,
                "evidence": list(self.evidence), "outcome": self.outcome,
                "findings": [f.code for f in self.findings]}


def reaches(stages: list[Stage] | tuple[Stage, ...]) -> tuple[str, bool | None, str | None,
                                                              Stage | None]:
    """(reaches, will_boot, outcome, deciding stage) of a chain: the first stage that fails
    stops the guest there (will_boot False); the first that cannot tell stops the judgement
    (will_boot None, ``reaches`` the last stage known to pass); all ok: login."""
    last = "firmware"
    for st in stages:
        if st.verdict == FAILS:
            return STOPS_AT[st.name], False, st.outcome, st
        if st.verdict in (CANNOT_TELL, NOT_CHECKED):
            return last, None, None, st
        last = PASSED[st.name]
    return last, last == "login" or None, "login" if last == "login" else None, None


def sources(*items: Any) -> tuple[str, ...]:
    """Evidence lines from guest ``Source`` objects (path:line: text), skipping None."""
    out = []
    for s in items:
        if s is None:
            continue
        where = f"{s.path}:{s.line}" if getattr(s, "line", None) else str(s.path)
        text = getattr(s, "text", None)
        out.append(f"{where}: {text.strip()}" if text else where)
    return tuple(out)
