"""``diagnose --verify``: diagnose a target, then boot it the same way and compare.

A service above diagnose and boottest (each of them stays unaware of the other). When the
diagnosis followed an operating system past the boot loader, the boot goes to the login
prompt (``until="login"``) and the two are compared stage by stage: diagnose's ``reaches``
with boot-test's ``stage``, its ``outcome`` with boot-test's outcome.
"""

from __future__ import annotations

from diskkit.boottest import boot_test
from diskkit.diagnose import Verification, agreement, diagnose

#: Default seconds for a boot to the boot loader and to the login prompt (TCG).
LOADER_TIMEOUT = 60.0
LOGIN_TIMEOUT = 600.0


def verify(target: str, fmt: str | None = None, *, firmware: str = "auto",
           media: str = "disk", bus: str = "virtio", timeout: float | None = None,
           screenshot: str | None = None) -> Verification:
    """Diagnose, then boot the target the same way and compare."""
    d = diagnose(target, fmt, firmware=firmware, media=media, bus=bus)
    until = "login" if d.followed else "loader"
    if timeout is None:
        timeout = LOGIN_TIMEOUT if until == "login" else LOADER_TIMEOUT
    boot = boot_test(target, d.format, firmware=d.firmware, media=media,
                     bus="ide" if media == "cdrom" else bus, timeout=timeout,
                     screenshot=screenshot, until=until,
                     expect=d.outcome if until == "login" else None)
    return compare(d, boot)


def compare(d: object, boot: object) -> Verification:
    """A :class:`Verification` of diagnosis ``d`` against ``boot`` (a BootOutcome)."""
    from diskkit.diagnose import Diagnosis

    assert isinstance(d, Diagnosis)
    agree = agreement(d.will_boot, boot.booted)  # type: ignore[attr-defined]
    stages: dict[str, object] = {}
    if getattr(boot, "until", "loader") == "login" and d.followed:
        stages = {"reaches": d.reaches, "boot_stage": boot.stage,  # type: ignore[attr-defined]
                  "outcome": d.outcome, "boot_outcome": boot.outcome}  # type: ignore[attr-defined]
        if agree is not None and d.reaches is not None:
            agree = agree and d.reaches == stages["boot_stage"] and (
                d.outcome is None or d.outcome == stages["boot_outcome"])
    return Verification(d, boot, agree, stages)
