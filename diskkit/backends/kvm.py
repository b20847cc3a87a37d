"""Whether a Linux guest runs under KVM on this host (:func:`kvm_usable`): boot the host's
Linux kernel under ``-accel kvm`` for a few seconds and see whether it prints its banner on the
serial console; on some hosts ``/dev/kvm`` exists and SeaBIOS runs, but a Linux guest hangs
before printing anything. The verdict is cached per boot (``/proc/sys/kernel/random/boot_id``)
in the run directory root. Used by the guestfs backend (TCG or not) and by ``diskkit doctor``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
import time

from diskkit.runner import spawn, which

PROBE_SECONDS = 8.0


def _kernel() -> str | None:
    found = sorted(glob.glob("/boot/vmlinuz-*"))
    return found[-1] if found else None


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def kvm_usable(refresh: bool = False) -> bool | None:
    """True when a Linux guest runs under KVM here, False when it hangs or KVM is absent,
    None when it cannot be told (no qemu, no kernel image)."""
    from diskkit.backends.state import run_root

    if not os.path.exists("/dev/kvm") or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    cache = run_root() / "kvm-probe.json"
    if not refresh:
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads(cache.read_text())
            if data["boot_id"] == _boot_id():
                return data["usable"]
    kernel = _kernel()
    if kernel is None or which("qemu-system-x86_64") is None or not os.access(kernel, os.R_OK):
        return None
    with tempfile.TemporaryDirectory(prefix="diskkit-kvm-") as tmp:
        log = os.path.join(tmp, "serial.log")
        argv = ["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-display", "none",
                "-no-reboot", "-monitor", "none", "-kernel", kernel,
                "-append", "console=ttyS0 panic=-1", "-serial", f"file:{log}"]
        usable = False
        with spawn(argv) as proc:
            deadline = time.monotonic() + PROBE_SECONDS
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), open(log, "rb") as f:
                    if b"Linux version" in f.read():
                        usable = True
                        break
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"boot_id": _boot_id(), "usable": usable}))
    return usable
