"""Assemble the boot chain: the firmware-level verdict of :mod:`diskkit.diagnose.rules`
(firmware, boot code, the boot loader's first stage), then, on a disk whose operating system
the guest stage reads, the boot loader's config, the kernel, the initramfs, the root
filesystem, init/fstab and login (:mod:`loader`, :mod:`rootdev`, :mod:`userspace`,
:mod:`winboot`)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from diskkit.diagnose import loader, rootdev, userspace, winboot
from diskkit.diagnose.stages import CANNOT_TELL, CHAIN, FAILS, NOT_CHECKED, OK, Stage
from diskkit.findings import Finding

#: Firmware-level causes and the chain stage they stop at (others: "firmware").
_BOOT_CODE = ("no-boot-code", "no-active-partition", "vbr-no-boot-code")


def _with_commands(f: Finding) -> Finding:
    cmds = getattr(f.fix, "commands", ())
    if not cmds:
        return f
    return replace(f, fix=str(f.fix), details={**f.details, "commands": list(cmds)})


def _firmware_stages(will_boot: bool | None, reason: str,
                     cause: list[Finding]) -> list[Stage]:
    code = cause[0].code if cause else ""
    if will_boot is True:
        return [Stage("firmware", OK, "the firmware finds the disk's boot code"),
                Stage("boot-code", OK, "the boot code runs and loads the boot loader"),
                Stage("boot-loader", OK, reason)]
    if will_boot is None:
        return [Stage("firmware", OK, "the disk is opened"),
                Stage("boot-code", CANNOT_TELL, reason, (), tuple(cause))]
    if code.startswith("grub-") or code == "vbr-grub":
        return [Stage("firmware", OK, "the firmware finds the disk's boot code"),
                Stage("boot-code", OK, "the boot code loads GRUB"),
                Stage("boot-loader", FAILS, reason, (), tuple(cause), "grub-error")]
    if code in _BOOT_CODE:
        return [Stage("firmware", OK, "the firmware runs sector 0"),
                Stage("boot-code", FAILS, reason, (), tuple(cause), "boot-code-ran")]
    return [Stage("firmware", FAILS, reason, (), tuple(cause), "no-bootable-device")]


def _search_prefix(facts: Any) -> str | None:
    """A core.img whose prefix diskkit could not follow but whose embedded config finds its
    root with ``search.fs_uuid``/``search --fs-uuid``/``--label``: the location it finds."""
    fss = getattr(facts.layout, "filesystems", ())
    for g in getattr(facts.boot, "grub", ()) or ():
        text = g.core.config or ""
        for m in re.finditer(r"search(?:\.fs_uuid|\s+[^\n]*--fs-uuid)\s+(?:-\S+\s+)*"
                             r"([0-9A-Fa-f-]{8,36})", text):
            hit = next((f for f in fss if f.uuid and f.uuid.lower() == m.group(1).lower()),
                       None)
            if hit is not None:
                return f"{hit.location} (search.fs_uuid {m.group(1)} in core.img)"
        for m in re.finditer(r"search(?:\.fs_label|\s+[^\n]*--label)\s+(?:-\S+\s+)*(\S+)",
                             text):
            hit = next((f for f in fss if f.label == m.group(1)), None)
            if hit is not None:
                return f"{hit.location} (search by label {m.group(1)} in core.img)"
    return None


def build(facts: Any, guest: Any, verdict: tuple[bool | None, str, list[Finding]],
          bus: str, fmt: str, firmware: str = "bios") -> tuple[list[Stage], bool]:
    """(stages in :data:`CHAIN` order, whether an operating system was followed)."""
    will_boot, reason, cause = verdict
    root = guest.root if guest is not None else None
    if will_boot is None and root is not None and "prefix could not be followed" in reason:
        found = _search_prefix(facts)
        if found:
            will_boot, reason = True, f"GRUB in the MBR finds its prefix on {found}"
    stages = _firmware_stages(will_boot, reason, cause)
    if will_boot is not True:
        return _pad(stages), False
    if root is None:
        return _pad(stages, "no operating system found on this disk to follow past the boot "
                    "loader"), False
    if root.type == "windows":
        bm = winboot.boot_manager(facts.disk, facts.layout, firmware)
        stages[-1] = replace(bm, reason=f"{stages[-1].reason}; {bm.reason}")
        if bm.verdict == OK:
            stages.append(winboot.kernel(root, bus))
        return _pad(stages, "Windows is followed to its boot driver only"), True
    if root.type != "linux":
        return _pad(stages, f"a {root.type} root is not followed past the boot loader"), False
    gstage, entry = loader.boot_loader(facts, root, bus, fmt)
    stages[-1] = replace(gstage, reason=f"{stages[-1].reason}; {gstage.reason}")
    if gstage.verdict != OK or entry is None:
        return _pad(stages), True
    stages.append(loader.kernel(root, entry))
    stages += rootdev.initramfs(facts, root, entry, bus, fmt)
    if stages[-1].verdict != OK:
        return _pad(stages), True
    stages.append(userspace.init(root, bus, fmt))
    if stages[-1].verdict == OK:
        stages.append(userspace.login(root))
    return _pad(stages), True


def _pad(stages: list[Stage], why: str = "an earlier stage stops the boot") -> list[Stage]:
    """Every chain stage, in order: the ones not judged say why."""
    have = {s.name for s in stages}
    out = [replace(s, findings=tuple(_with_commands(f) for f in s.findings)) for s in stages]
    stopped = any(s.verdict in (FAILS, CANNOT_TELL) for s in stages)
    for name in CHAIN[len(stages):]:
        if name not in have:
            out.append(Stage(name, NOT_CHECKED, "an earlier stage stops the boot or cannot "
                             "be judged" if stopped else why))
    return out
