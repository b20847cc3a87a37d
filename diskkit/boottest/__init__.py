"""Boot a disk image under real firmware (SeaBIOS or OVMF, in qemu) and report what it did:
the ground truth ``diskkit diagnose --verify`` compares its prediction with."""

from diskkit.boottest.classify import BOOTED, NOT_BOOTED, OUTCOMES
from diskkit.boottest.run import BootOutcome, boot_test

__all__ = ["BOOTED", "NOT_BOOTED", "OUTCOMES", "BootOutcome", "boot_test"]
