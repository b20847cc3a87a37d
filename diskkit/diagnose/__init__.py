"""``diagnose``: will this disk boot, and if not, why, with the evidence and the fix.

:func:`diagnose` judges the bytes as the firmware will see them: the target opened with the
format the hypervisor uses (``fmt``; a Ceph volume is always raw), under the firmware
(``bios``, ``uefi``, or ``auto``: BIOS, the default of Nova/libvirt unless the image says
hw_firmware_type=uefi), attached as a ``disk`` or a ``cdrom`` on a ``bus`` (virtio, scsi,
sata, ide: Nova's hw_disk_bus, virtio by default). On a disk whose operating system the guest
stage reads, the chain is followed past the boot loader to the login prompt
(:mod:`diskkit.diagnose.chain`): ``reaches`` is the furthest stage and ``will_boot`` is True
only for ``login``. ``diagnose --verify``, which also boots the target, is the service
:func:`diskkit.verify.verify`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from diskkit.diagnose import chain, origin, rules, stages
from diskkit.diagnose.facts import Facts, gather
from diskkit.diagnose.model import Diagnosis
from diskkit.errors import UserError
from diskkit.findings import Finding
from diskkit.formats import registry
from diskkit.pipeline import Inspection
from diskkit.target import Target, parse_target

__all__ = ["Diagnosis", "Verification", "agreement", "diagnose"]


def _order(cause: list[Finding], facts: Facts) -> tuple[Finding, ...]:
    """The deciding findings first, then the other boot findings by severity."""
    seen = {(f.code, f.message) for f in cause}
    rest = [f for f in (*(facts.boot.findings if facts.boot else ()), *facts.bounds)
            if (f.code, f.message) not in seen]
    rest.sort(key=lambda f: -int(f.severity))
    return (*cause, *rest)


def judge(facts: Facts, firmware: str, media: str) -> tuple[bool | None, str, list[Finding]]:
    """Apply the rules to gathered facts (pure)."""
    found = rules.universal(facts)
    if found is not None:
        return found
    if media == "cdrom":
        return rules.cdrom(facts, firmware)
    if firmware == "uefi":
        return rules.uefi_disk(facts)
    return rules.bios_disk(facts)


#: Disk buses diagnose judges (Nova's hw_disk_bus values for a root disk).
BUSES = ("virtio", "scsi", "sata", "ide")


def diagnose(target: str | Target, fmt: str | None = None, *, firmware: str = "auto",
             media: str = "disk", bus: str = "virtio") -> Diagnosis:
    """Diagnose ``target`` (a path, NBD URI or rbd: spec). See the module docstring."""
    if bus not in BUSES:
        raise UserError(f"--bus {bus!r}: use one of {', '.join(BUSES)}", code="bad-option")
    if firmware not in ("auto", "bios", "uefi"):
        raise UserError(f"--firmware {firmware!r}: use bios, uefi or auto", code="bad-option")
    if media not in ("disk", "cdrom"):
        raise UserError(f"--as {media!r}: use disk or cdrom", code="bad-option")
    started = time.monotonic()
    t = parse_target(target) if isinstance(target, str) else target
    fw = "bios" if firmware == "auto" else firmware
    with Inspection(t, fmt, hypervisor=True) as insp:
        facts = gather(insp)
        will_boot, reason, cause = judge(facts, fw, media)
        if not registry.get(facts.format).raw_bytes and \
                facts.format != facts.detection.format:
            will_boot, reason = False, facts.problem or reason
            cause = [rules._finding(
                "disk-format-mismatch", f"told {facts.format}, the bytes are "
                f"{facts.detection.format}: the hypervisor fails to open the disk", [],
                f"set the image's disk_format to {facts.detection.format} (or convert it)")]
        guest = None
        if media == "disk" and will_boot is not False and facts.layout is not None:
            guest = insp.guest
        chain_stages, followed = chain.build(facts, guest, (will_boot, reason, cause), bus,
                                             facts.format, fw)
        parents = (insp.rbd[0] or {}).get("parents", []) if t.kind == "rbd" else []
    reach, chain_boot, outcome, deciding = stages.reaches(chain_stages)
    if followed:
        will_boot = chain_boot
        if deciding is not None:
            reason = f"stops at {reach}: {deciding.reason}" if chain_boot is False else \
                f"cannot tell past {reach} ({deciding.name}): {deciding.reason}"
            cause = list(deciding.findings) if chain_boot is False else []
        else:
            reason = "reaches the login prompt: " + "; ".join(
                s.reason for s in chain_stages if s.name in ("boot-loader", "initramfs"))
    elif will_boot is True:
        reason += " (no operating system on this disk is followed past the boot loader)"
    if will_boot is False and cause and parents:
        found = origin.find_origin(t, parents, cause[0], lambda pt: diagnose(
            pt, "raw", firmware=fw, media=media, bus=bus))
        if found is not None:
            link, parent_d = found
            cause = [origin.attribute(cause[0], t.display, link, parent_d.findings[0]),
                     *cause[1:]]
            reason += f" (inherited from the parent {link['spec']})"
    return Diagnosis(t.display, facts.format, facts.detection.format, fw, media, will_boot,
                     reason, _order(cause, facts), facts.to_dict(),
                     time.monotonic() - started, bus=bus, reaches=reach, outcome=outcome,
                     stages=tuple(chain_stages), followed=followed)


@dataclass(frozen=True)
class Verification:
    """A diagnosis next to a real firmware boot."""

    diagnosis: Diagnosis
    boot: Any  # diskkit.boottest.BootOutcome
    #: True when they agree, False when not, None when either could not tell.
    agree: bool | None
    #: Stage by stage (a boot to the login prompt): reaches vs boot_stage, outcome vs
    #: boot_outcome.
    stages: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Any:
        """Exactly what the command prints with --json (:func:`diskkit.jsonable.jsonable`)."""
        from diskkit.jsonable import jsonable

        return jsonable(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the diagnosis plus ``verify`` (docs/json.md, "diagnose")."""
        out = self.diagnosis.to_dict()
        out["verify"] = {"agree": self.agree, "compared": self.stages, **self.boot.to_dict()}
        return out


def agreement(will_boot: bool | None, booted: bool | None) -> bool | None:
    """True/False when both are known, None when either is "cannot tell"/timeout."""
    if will_boot is None or booted is None:
        return None
    return will_boot == booted
