"""Turn what a booting VM showed (firmware debug log, serial console, VGA text screen) into an
outcome. Pure: text in, :class:`Observation` / :class:`OsObservation` out; the polling loop
lives in ``run.py``.

The strings are the firmware's and boot loaders' own (SeaBIOS src/boot.c and src/cdrom.c,
edk2 BdsDxe, GRUB's boot.img/kernel/normal, SYSLINUX's banner, Linux's early messages), and
past the boot loader (``until="login"``): Linux's panic(), initramfs-tools' scripts/local
("ALERT! ... does not exist. Dropping to a shell!", the "(initramfs)" prompt), dracut's
emergency shell, systemd's emergency.service and agetty's login prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Every outcome boot-test reports (docs/json.md, "boot-test").
OUTCOMES = ("no-bootable-device", "boot-code-ran", "bootloader-failed", "bootloader-reached",
            "kernel-started", "timeout")
#: Outcomes that mean "this disk boots": the firmware handed over to a working boot loader.
BOOTED = ("bootloader-reached", "kernel-started")
#: Outcomes that mean "this disk does not boot".
NOT_BOOTED = ("no-bootable-device", "boot-code-ran", "bootloader-failed")

# SeaBIOS (src/boot.c, src/cdrom.c) and OVMF (BdsDxe) messages.
_FIRMWARE_MESSAGES = re.compile(
    r"(Boot failed: [^\r\n]*|No bootable device\.?|Booting from [^\r\n]*|"
    r"BdsDxe: [^\r\n]*|Could not read from CDROM[^\r\n]*)")
#: OVMF with nothing to boot says so, or falls back to its built-in EFI shell.
_NOTHING = re.compile(r"No bootable device|No bootable option or device was found")
#: The EFI shell: with Secure Boot off it runs \startup.nsh after a 5-second countdown, which
#: may start a loader; only when nothing follows is it "no-bootable-device" (provisional).
_SHELL = re.compile(r"BdsDxe: starting Boot[0-9A-F]{4} \"EFI Internal Shell\"")
#: SeaBIOS jumped to boot code (boot.c call_boot_entry: "Booting from %04x:%04x").
_JUMPED = re.compile(r"Booting from [0-9a-fA-F]{4}:[0-9a-fA-F]{4}|BdsDxe: starting Boot")

_LOADERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # GRUB's banner and prompts; its menu entry's own words (normal/menu.c "Booting `%s'",
    # grub-mkconfig's 10_linux "Loading Linux ..." / "Loading initial ramdisk ...").
    ("grub", re.compile(r"GNU GRUB|Welcome to GRUB|grub>|DISKKIT-BOOT-OK|GRUB loading|"
                        r"Booting `[^']*'|Loading Linux \S+ \.\.\.|Loading initial ramdisk")),
    ("isolinux", re.compile(r"ISOLINUX \d")),
    ("syslinux", re.compile(r"SYSLINUX \d|EXTLINUX \d")),
    ("windows", re.compile(r"Windows Boot Manager|BOOTMGR")),
)
#: GRUB could not go on: its rescue shell, or boot.img's own error messages (boot.S).
_LOADER_FAILED = re.compile(r"grub rescue>|Entering rescue mode|GRUB Geom Error|"
                            r"GRUB Hard Disk Error|GRUB Read Error|GRUB Floppy Error|"
                            r"Failed to load ldlinux\.c32|Boot failed: please change disks")
#: GRUB's full environment (normal.mod) is up, or our sample's grub.cfg ran.
_LOADER_READY = re.compile(r"GNU GRUB  version|grub> ?$|DISKKIT-BOOT-OK|^boot: ?$|"
                           r"Windows Boot Manager", re.M)
_KERNEL = re.compile(r"Linux version \d|Decompressing Linux|EFI stub: |Booting the kernel|"
                     r"Kernel panic - not syncing|\[ +\d+\.\d{6}\] ")


@dataclass(frozen=True)
class Observation:
    """What the text seen so far proves. ``outcome`` is None while nothing is certain yet;
    ``provisional`` is what to report if the VM stays as it is."""

    outcome: str | None
    provisional: str | None
    loader: str | None
    messages: tuple[str, ...]
    #: The boot loader's full environment is up (GRUB's menu or prompt, ISOLINUX's banner),
    #: not only its first stage's "GRUB loading." (which may still end at "grub rescue>").
    ready: bool = False


def firmware_messages(log: str) -> tuple[str, ...]:
    """The firmware's boot lines, in order, each once."""
    seen: dict[str, None] = {}
    for m in _FIRMWARE_MESSAGES.finditer(log):
        seen.setdefault(m.group(0).strip(), None)
    return tuple(seen)


def observe(firmware_log: str, console: str, screen: str, *,
            long_mode: bool = False) -> Observation:
    """Classify the text seen so far (see :data:`OUTCOMES`). ``long_mode``: under BIOS
    firmware the CPU is in 64-bit long mode (EFER.LMA): neither SeaBIOS nor the BIOS boot
    loaders (GRUB i386-pc, ISOLINUX, bootmgr) go there; a 64-bit kernel's entry code does."""
    text = "\n".join((firmware_log, console, screen))
    messages = firmware_messages(firmware_log + "\n" + console)
    loader = next((name for name, rx in _LOADERS if rx.search(text)), None)
    if long_mode or _KERNEL.search(text):
        return Observation("kernel-started", None, loader, messages)
    if loader and _LOADER_FAILED.search(text):
        return Observation("bootloader-failed", None, loader, messages)
    if loader and _LOADER_READY.search(text):
        return Observation(None, "bootloader-reached", loader, messages, ready=True)
    if loader:
        return Observation(None, "bootloader-reached", loader, messages)
    if _NOTHING.search(text):
        return Observation("no-bootable-device", None, None, messages)
    if _SHELL.search(text):
        return Observation(None, "no-bootable-device", None, messages)
    if _JUMPED.search(text):
        return Observation(None, "boot-code-ran", None, messages)
    return Observation(None, None, None, messages)


_EFER = re.compile(r"EFER=([0-9a-fA-F]+)")


def in_long_mode(registers: str) -> bool:
    """EFER.LMA (bit 10) in the text of HMP ``info registers``."""
    m = _EFER.search(registers)
    return bool(m and int(m.group(1), 16) & 0x400)


def vga_text(buffer: bytes, columns: int = 80) -> str:
    """The characters of a VGA text-mode buffer (0xB8000: character, attribute pairs)."""
    chars = bytes(buffer[0::2]).replace(b"\0", b" ").decode("cp437", errors="replace")
    lines = [chars[i:i + columns].rstrip() for i in range(0, len(chars), columns)]
    return "\n".join(lines).strip("\n")


# --- Past the boot loader: until the login prompt -------------------------------------------

#: Outcomes of a boot to the login prompt (``boot_test(until="login")``), besides the
#: firmware-level ones above (no-bootable-device, boot-code-ran, bootloader-failed, timeout).
LOGIN_OUTCOMES = ("login", "grub-error", "initramfs-shell", "dracut-shell", "kernel-panic",
                  "emergency-mode")
#: How far a boot got (issue 13's ``reaches``), in order.
STAGES = ("firmware", "boot-loader", "kernel", "initramfs", "userspace", "login")

_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[()][A-Za-z0-9]|[=>78cDEHM])")
#: agetty's prompt: "HOSTNAME login: " at the start of a line.
_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]* login: *$", re.M)
#: systemd-sulogin-shell (emergency.service) and sulogin with a locked root account.
_EMERGENCY = re.compile(r"You are in emergency mode|Cannot open access to console, the root "
                        r"account is locked|Give root password for maintenance")
#: initramfs-tools scripts/local and scripts/functions panic(): the shell on the console.
#: ("Gave up waiting for root file system device" comes first, then its "Common problems"
#: list, then the ALERT line: it is evidence, not yet the end.)
_INITRAMFS = re.compile(r"ALERT! .* does not exist\.\s+Dropping to a shell!|"
                        r"^\(initramfs\) ?$", re.M)
#: dracut's emergency shell (modules.d/99base/dracut-lib.sh emergency_shell).
_DRACUT = re.compile(r"Entering emergency mode\. Exit the shell to continue\.|"
                     r"^dracut:/# ?$|Could not boot\.$", re.M)
_PANIC = re.compile(r"Kernel panic - not syncing")
#: GRUB's own errors (grub_print_error: "error: MESSAGE."), its rescue shell.
_GRUB_ERROR = re.compile(r"^error: .*$|^grub rescue> ?$|^Entering rescue mode\.\.\.$", re.M)
_GRUB_RESCUE = re.compile(r"^grub rescue> ?$", re.M)
#: Lines worth showing as evidence, whatever the outcome.
_EVIDENCE = re.compile(
    r"^error: .*|grub rescue>|Entering rescue mode|ALERT! .*|Gave up waiting .*|"
    r"Dropping to a shell.*|Kernel panic - not syncing.*|.*You are in emergency mode.*|"
    r".*Timed out waiting for device.*|.*Dependency failed for .*|.*Failed to mount .*|"
    r".*Cannot open access to console.*|Entering emergency mode.*|.*Could not boot.*|"
    r"^[A-Za-z0-9][A-Za-z0-9.-]* login: *$|.*Volume group .* not found.*")
_STAGE_SEEN = (
    ("login", _LOGIN),
    ("userspace", re.compile(r"systemd\[1\]|Welcome to .*Linux|Reached target|"
                             r"\[  OK  \]|Started .*\.|Debian GNU/Linux \d+")),
    ("initramfs", re.compile(r"Loading, please wait\.\.\.|Run /init as init process|"
                             r"Begin: Loading essential drivers|dracut-|initramfs|"
                             r"Trying to run /init")),
    ("kernel", _KERNEL),
)
#: In priority order: what ends the boot, by its own message.
_TERMINAL = (("kernel-panic", _PANIC), ("dracut-shell", _DRACUT),
             ("initramfs-shell", _INITRAMFS), ("emergency-mode", _EMERGENCY),
             ("login", _LOGIN))


def clean_text(text: str) -> str:
    """Serial console text without terminal escape sequences and carriage returns."""
    text = _ANSI.sub("", text)
    # A bare carriage return rewrites the line: keep what was written last.
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


@dataclass(frozen=True)
class OsObservation:
    """What the text of a boot to the login prompt proves so far. ``outcome`` is final;
    ``provisional`` is what it becomes if the VM stays quiet (a GRUB error with nothing
    after it); ``stage`` the furthest stage seen (:data:`STAGES`); ``evidence`` the lines
    that show it."""

    outcome: str | None
    provisional: str | None
    stage: str
    evidence: tuple[str, ...]


def evidence_lines(text: str, limit: int = 12) -> tuple[str, ...]:
    """The telling lines of ``text`` (errors, alerts, prompts), each once, the last
    ``limit``."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and _EVIDENCE.search(line):
            seen.pop(line, None)
            seen[line] = None
    return tuple(seen)[-limit:]


def observe_os(fw: Observation, console: str, screen: str) -> OsObservation:
    """Classify a boot to the login prompt (see :data:`LOGIN_OUTCOMES`) from the firmware
    level :class:`Observation`, the serial console and the VGA text screen."""
    text = clean_text(console) + "\n" + screen
    stage = "firmware"
    if fw.loader or fw.outcome == "bootloader-failed":
        stage = "boot-loader"
    for name, rx in _STAGE_SEEN:
        if rx.search(text):
            stage = name
            break
    if fw.outcome == "kernel-started" and STAGES.index(stage) < STAGES.index("kernel"):
        stage = "kernel"
    evidence = evidence_lines(text)
    for outcome, rx in _TERMINAL:
        if rx.search(text):
            return OsObservation(outcome, None, stage, evidence)
    if stage in ("firmware", "boot-loader"):
        if fw.loader == "grub" and (_GRUB_RESCUE.search(text)
                                    or fw.outcome == "bootloader-failed"):
            return OsObservation("grub-error", None, stage, evidence)
        if fw.outcome in ("no-bootable-device", "bootloader-failed"):
            return OsObservation(fw.outcome, None, stage, evidence)
        if fw.loader == "grub" and _GRUB_ERROR.search(text):
            return OsObservation(None, "grub-error", stage, evidence)
        if fw.provisional in ("boot-code-ran", "no-bootable-device"):
            return OsObservation(None, fw.provisional, stage, evidence)
    return OsObservation(None, None, stage, evidence)
