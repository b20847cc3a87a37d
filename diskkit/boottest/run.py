"""``boot_test``: boot a target under real firmware and report what happened.

qemu runs through :func:`diskkit.runner.spawn` (its process group is killed on every exit
path); the loop polls the firmware's debug console (port 0x402), the serial console and the
VGA text buffer (QMP ``pmemsave`` of 0xB8000) until the outcome is certain or the timeout.

``until="loader"`` (the default) stops at the boot loader or the kernel's first words: what
the firmware and the boot code do. ``until="login"`` goes on to the end of the boot: the
login prompt, or where it stopped (a GRUB error, the initramfs or dracut shell, a kernel
panic, systemd's emergency mode), with the lines that show it; it stops as soon as one of
those is printed.
"""

from __future__ import annotations

import contextlib
import pathlib
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from diskkit.boottest.classify import (
    BOOTED,
    Observation,
    OsObservation,
    in_long_mode,
    observe,
    observe_os,
    vga_text,
)
from diskkit.boottest.qemu import (
    BUSES,
    FIRMWARES,
    MEDIA,
    choose_accel,
    drive_file,
    qemu_argv,
)
from diskkit.boottest.qmp import Qmp
from diskkit.errors import DiskkitError, HostError, ImageError, UserError
from diskkit.formats import registry, safety
from diskkit.pipeline import Inspection
from diskkit.runner import spawn
from diskkit.target import parse_target

#: Seconds with nothing new after boot code took over before "boot-code-ran" is final.
SETTLE_CODE = 6.0
#: Seconds a boot loader's prompt or menu must stand without an error: "bootloader-reached".
SETTLE_LOADER = 2.0
#: The same when only its first stage spoke ("GRUB loading."): modules or a kernel may still
#: be loading (quiet = no new text on screen or serial and no disk reads).
SETTLE_LOADER_START = 30.0
#: Seconds of quiet after a GRUB ``error:`` line with no kernel after it: "grub-error".
SETTLE_GRUB_ERROR = 20.0
UNTIL = ("loader", "login")


@dataclass(frozen=True)
class BootOutcome:
    """What one boot showed (docs/json.md, "boot-test")."""

    outcome: str
    firmware: str
    media: str
    bus: str
    format: str
    accel: str
    seconds: float
    loader: str | None = None
    messages: tuple[str, ...] = ()
    screen: str = ""
    screenshot: str | None = None
    console: str = ""
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    #: "loader" or "login" (how far the boot was followed).
    until: str = "loader"
    #: The furthest stage seen (classify.STAGES); with until="login" only.
    stage: str | None = None
    #: The lines that show the outcome (GRUB errors, ALERT!, emergency mode, the prompt).
    evidence: tuple[str, ...] = ()
    #: The outcome the caller expected, if any.
    expected: str | None = None

    @property
    def booted(self) -> bool | None:
        """True when a boot loader or kernel was reached (with until="login": the login
        prompt), False when not, None on timeout."""
        if self.outcome == "timeout":
            return None
        if self.until == "login":
            return self.outcome == "login"
        return self.outcome in BOOTED

    @property
    def as_expected(self) -> bool | None:
        """The outcome is the expected one (None when nothing was expected)."""
        return None if self.expected is None else self.outcome == self.expected

    def to_json(self) -> Any:
        """Exactly what the command prints with --json (:func:`diskkit.jsonable.jsonable`)."""
        from diskkit.jsonable import jsonable

        return jsonable(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"outcome": self.outcome, "booted": self.booted, "loader": self.loader,
                "firmware": self.firmware, "as": self.media, "bus": self.bus,
                "open_format": self.format, "accel": self.accel, "seconds": round(self.seconds, 2),
                "firmware_messages": list(self.messages), "screen": self.screen,
                "console": self.console[-2000:], "screenshot": self.screenshot,
                "until": self.until, "stage": self.stage, "evidence": list(self.evidence),
                "expected": self.expected, "as_expected": self.as_expected}


def hypervisor_format(target: str, fmt: str | None) -> str:
    """The format qemu is told: ``fmt`` as given, else the detected one (raw for ISO and for
    files that are not disk formats: a hypervisor told nothing reads bytes as they are).
    A non-raw format is only handed to qemu when the safety checks pass."""
    t = parse_target(target)
    with Inspection(t) as insp:  # the one pipeline: open, detect (its safety findings)
        detection = insp.detection
    chosen = safety.normalise_format(fmt) if fmt else detection.format
    if t.kind == "rbd" and not fmt:
        chosen = "raw"  # a Ceph volume is always attached raw
    info = registry.lookup(chosen)
    if info is None or info.kind is not registry.Kind.DISK or info.qemu is None:
        if fmt:
            raise UserError(f"qemu cannot boot a {chosen} image", code="bad-format",
                            hint="boot it with -f raw to see what a raw volume would show")
        chosen, info = "raw", registry.get("raw")
    if not info.raw_bytes:
        findings = list(detection.findings)
        if fmt:
            findings += safety.check_declared(detection, fmt)
        bad = safety.blocking(findings)
        if bad:
            codes = ", ".join(dict.fromkeys(f.code for f in bad))
            raise ImageError(f"{target}: unsafe to hand to qemu as {chosen} ({codes})",
                             code="unsafe-image", hint=f"run: diskkit check {target}")
    return chosen


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_bytes().decode("latin-1")
    except FileNotFoundError:
        return ""


def _screen(qmp: Qmp | None, work: pathlib.Path) -> str:
    if qmp is None:
        return ""
    dump = work / "vga.bin"
    with contextlib.suppress(DiskkitError, OSError):
        qmp.execute("pmemsave", val=0xB8000, size=4000, filename=str(dump))
        return vga_text(dump.read_bytes())
    return ""


def _disk_reads(qmp: Qmp | None) -> int:
    """Bytes the guest has read from its disks so far (QMP query-blockstats): a boot loader
    that is loading a kernel shows nothing on screen for a while, but it reads."""
    if qmp is None:
        return 0
    with contextlib.suppress(DiskkitError, OSError, KeyError, TypeError):
        return sum(int(d["stats"]["rd_bytes"]) for d in qmp.execute("query-blockstats"))
    return 0


def _long_mode(qmp: Qmp | None) -> bool:
    """The guest CPU is in 64-bit long mode (HMP ``info registers`` through QMP)."""
    if qmp is None:
        return False
    with contextlib.suppress(DiskkitError, OSError):
        return in_long_mode(str(qmp.execute("human-monitor-command",
                                            **{"command-line": "info registers"})))
    return False


def _connect(sock: pathlib.Path) -> Qmp | None:
    if not sock.exists():
        return None
    try:
        return Qmp(str(sock))
    except (OSError, DiskkitError):
        return None


def boot_test(target: str, fmt: str | None = None, *, firmware: str = "bios",
              media: str = "disk", bus: str = "virtio", timeout: float = 60.0,
              screenshot: str | None = None, accel: str | None = None,
              until: str = "loader", expect: str | None = None) -> BootOutcome:
    """Boot ``target`` read-only and return the :class:`BootOutcome`. Ends within
    ``timeout`` seconds (plus qemu's shutdown) and leaves no qemu process behind.
    ``until``: "loader" or "login" (see the module docstring); ``expect``: the outcome the
    guest should reach (reported back as ``as_expected``)."""
    for name, value, allowed in (("firmware", firmware, FIRMWARES), ("as", media, MEDIA),
                                 ("bus", bus, BUSES), ("until", until, UNTIL)):
        if value not in allowed:
            raise UserError(f"--{name} {value!r}: use one of {', '.join(allowed)}",
                            code="bad-option")
    if timeout <= 0:
        raise UserError("--timeout must be positive", code="bad-option")
    chosen = hypervisor_format(target, fmt)
    accel = accel or choose_accel()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="diskkit-boot-") as tmp:
        work = pathlib.Path(tmp)
        argv = qemu_argv(drive_file(parse_target(target)), chosen, firmware=firmware,
                         media=media, bus=bus, accel=accel, workdir=work,
                         memory=1024 if until == "login" else 256)
        if until == "login":
            obs, os_obs, screen, console, shot = _boot_to_login(
                argv, work, timeout, screenshot, bios=firmware == "bios")
            return BootOutcome(os_obs.outcome or "timeout", firmware, media, bus, chosen,
                               accel, time.monotonic() - started, obs.loader, obs.messages,
                               screen, shot, console, until=until, stage=os_obs.stage,
                               evidence=os_obs.evidence, expected=expect)
        obs, screen, console, shot = _boot(argv, work, timeout, screenshot,
                                           bios=firmware == "bios")
    outcome = obs.outcome or obs.provisional or "timeout"
    return BootOutcome(outcome, firmware, media, bus, chosen, accel,
                       time.monotonic() - started, obs.loader, obs.messages, screen, shot,
                       console, expected=expect)


def _boot(argv: list[str], work: pathlib.Path, timeout: float, screenshot: str | None,
          bios: bool) -> tuple[Observation, str, str, str | None]:
    """Run qemu until the outcome is certain or settled; at the deadline an unsettled
    "boot-code-ran" becomes "timeout" (a boot loader may still have been coming)."""
    deadline = time.monotonic() + timeout
    obs = Observation(None, None, None, ())
    screen = console = ""
    shot = None
    since = time.monotonic()
    last_key: tuple[str | None, int, int] = (None, 0, 0)
    with spawn(argv) as proc:
        qmp = None
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:  # the guest powered off, rebooted or died
                    if proc.returncode != 0 and not _read(work / "firmware.log"):
                        err = proc.stderr.read().decode(errors="replace") if proc.stderr \
                            else ""
                        raise HostError(f"qemu-system-x86_64 failed: {err.strip()[-300:]}",
                                        code="command-failed")
                    console = _read(work / "serial.log")
                    obs = observe(_read(work / "firmware.log"), console, screen)
                    break
                qmp = qmp or _connect(work / "qmp.sock")
                screen = _screen(qmp, work) or screen
                console = _read(work / "serial.log")
                long_mode = bios and _long_mode(qmp)
                obs = observe(_read(work / "firmware.log"), console, screen,
                              long_mode=long_mode)
                if obs.outcome:
                    break
                key = (obs.provisional, len(screen.strip()) + len(console), _disk_reads(qmp))
                if key != last_key:
                    last_key, since = key, time.monotonic()
                settle = SETTLE_CODE
                if obs.provisional == "bootloader-reached":
                    settle = SETTLE_LOADER if obs.ready else SETTLE_LOADER_START
                if obs.provisional and time.monotonic() - since >= settle:
                    break
                time.sleep(0.25)
            else:  # the deadline: what had not settled is not known
                if obs.provisional == "boot-code-ran" or not obs.ready:
                    obs = Observation(None, None, obs.loader, obs.messages)
            if screenshot and qmp is not None:
                with contextlib.suppress(DiskkitError, OSError):
                    qmp.execute("screendump", filename=str(pathlib.Path(screenshot).resolve()),
                                format="png")
                    shot = screenshot
        finally:
            if qmp is not None:
                qmp.close()
    return obs, screen, console, shot


def _qemu_failed(proc: Any, work: pathlib.Path) -> None:
    if proc.returncode != 0 and not _read(work / "firmware.log"):
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise HostError(f"qemu-system-x86_64 failed: {err.strip()[-300:]}",
                        code="command-failed")


def _boot_to_login(argv: list[str], work: pathlib.Path, timeout: float,
                   screenshot: str | None, bios: bool,
                   ) -> tuple[Observation, OsObservation, str, str, str | None]:
    """Run qemu until a terminal outcome is printed (the login prompt, a shell, a panic,
    emergency mode, a GRUB error), a provisional one settles, or the timeout."""
    deadline = time.monotonic() + timeout
    obs = Observation(None, None, None, ())
    os_obs = OsObservation(None, None, "firmware", ())
    screen = console = ""
    shot = None
    since = time.monotonic()
    last_key: tuple[str | None, int, int] = (None, 0, 0)
    kernel = False
    with spawn(argv) as proc:
        qmp = None
        try:
            while time.monotonic() < deadline:
                exited = proc.poll() is not None
                if exited:
                    _qemu_failed(proc, work)
                else:
                    qmp = qmp or _connect(work / "qmp.sock")
                    screen = _screen(qmp, work) or screen
                console = _read(work / "serial.log")
                long_mode = bios and not kernel and not exited and _long_mode(qmp)
                obs = observe(_read(work / "firmware.log"), console, screen,
                              long_mode=long_mode)
                kernel = kernel or obs.outcome == "kernel-started"
                if kernel and obs.outcome != "kernel-started":
                    obs = Observation("kernel-started", None, obs.loader, obs.messages)
                os_obs = observe_os(obs, console, screen)
                if os_obs.outcome or exited:
                    break
                key = (os_obs.provisional, len(screen.strip()) + len(console),
                       _disk_reads(qmp))
                if key != last_key:
                    last_key, since = key, time.monotonic()
                settle = SETTLE_GRUB_ERROR if os_obs.provisional == "grub-error" \
                    else SETTLE_CODE
                if os_obs.provisional and time.monotonic() - since >= settle:
                    os_obs = OsObservation(os_obs.provisional, None, os_obs.stage,
                                           os_obs.evidence)
                    break
                time.sleep(0.5)
            if screenshot and qmp is not None:
                with contextlib.suppress(DiskkitError, OSError):
                    qmp.execute("screendump", filename=str(pathlib.Path(screenshot).resolve()),
                                format="png")
                    shot = screenshot
        finally:
            if qmp is not None:
                qmp.close()
    return obs, os_obs, screen, console, shot
