"""``boot_test``: boot a target under real firmware and report what happened.

qemu runs through :func:`diskkit.runner.spawn` (its process group is killed on every exit
path); the loop polls the firmware's debug console (port 0x402), the serial console and the
VGA text buffer (QMP ``pmemsave`` of 0xB8000) until the outcome is certain or the timeout.
"""

from __future__ import annotations

import contextlib
import pathlib
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from diskkit.boottest.classify import BOOTED, Observation, in_long_mode, observe, vga_text
from diskkit.boottest.qemu import (
    BUSES,
    FIRMWARES,
    MEDIA,
    QEMU_FORMAT,
    choose_accel,
    drive_file,
    qemu_argv,
)
from diskkit.boottest.qmp import Qmp
from diskkit.errors import DiskkitError, HostError, ImageError, UserError
from diskkit.formats import safety
from diskkit.formats.detect import detect
from diskkit.runner import spawn
from diskkit.target import open_container, parse_target

#: Seconds with nothing new after boot code took over before "boot-code-ran" is final.
SETTLE_CODE = 6.0
#: Seconds a boot loader's prompt or menu must stand without an error: "bootloader-reached".
SETTLE_LOADER = 2.0
#: The same when only its first stage spoke ("GRUB loading."): modules or a kernel may still
#: be loading (quiet = no new text on screen or serial and no disk reads).
SETTLE_LOADER_START = 30.0


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

    @property
    def booted(self) -> bool | None:
        """True when a boot loader or kernel was reached, False when not, None on timeout."""
        if self.outcome == "timeout":
            return None
        return self.outcome in BOOTED

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"outcome": self.outcome, "booted": self.booted, "loader": self.loader,
                "firmware": self.firmware, "as": self.media, "bus": self.bus,
                "format": self.format, "accel": self.accel, "seconds": round(self.seconds, 2),
                "firmware_messages": list(self.messages), "screen": self.screen,
                "console": self.console[-2000:], "screenshot": self.screenshot}


def hypervisor_format(target: str, fmt: str | None) -> str:
    """The format qemu is told: ``fmt`` as given, else the detected one (raw for ISO and for
    files that are not disk formats: a hypervisor told nothing reads bytes as they are).
    A non-raw format is only handed to qemu when the safety checks pass."""
    t = parse_target(target)
    with open_container(t) as container:
        detection = detect(container)
    chosen = safety.normalise_format(fmt) if fmt else detection.format
    if t.kind == "rbd" and not fmt:
        chosen = "raw"  # a Ceph volume is always attached raw
    if chosen not in QEMU_FORMAT:
        if fmt:
            raise UserError(f"qemu cannot boot a {chosen} image", code="bad-format",
                            hint="boot it with -f raw to see what a raw volume would show")
        chosen = "raw"
    if QEMU_FORMAT[chosen] != "raw":
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
              screenshot: str | None = None, accel: str | None = None) -> BootOutcome:
    """Boot ``target`` read-only and return the :class:`BootOutcome`. Ends within
    ``timeout`` seconds (plus qemu's shutdown) and leaves no qemu process behind."""
    for name, value, allowed in (("firmware", firmware, FIRMWARES), ("as", media, MEDIA),
                                 ("bus", bus, BUSES)):
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
                         media=media, bus=bus, accel=accel, workdir=work)
        obs, screen, console, shot = _boot(argv, work, timeout, screenshot,
                                           bios=firmware == "bios")
    outcome = obs.outcome or obs.provisional or "timeout"
    return BootOutcome(outcome, firmware, media, bus, chosen, accel,
                       time.monotonic() - started, obs.loader, obs.messages, screen, shot,
                       console)


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
