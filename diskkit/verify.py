"""``diagnose --verify``: diagnose a target, then boot it the same way and compare.

A service above diagnose and boottest (each of them stays unaware of the other).
"""

from __future__ import annotations

from diskkit.boottest import boot_test
from diskkit.diagnose import Verification, agreement, diagnose


def verify(target: str, fmt: str | None = None, *, firmware: str = "auto",
           media: str = "disk", timeout: float = 60.0, screenshot: str | None = None,
           ) -> Verification:
    """Diagnose, then boot the target the same way and compare."""
    d = diagnose(target, fmt, firmware=firmware, media=media)
    bus = "ide" if media == "cdrom" else "virtio"
    boot = boot_test(target, d.format, firmware=d.firmware, media=media, bus=bus,
                     timeout=timeout, screenshot=screenshot)
    return Verification(d, boot, agreement(d.will_boot, boot.booted))
