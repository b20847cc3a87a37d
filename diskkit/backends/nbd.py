"""NBD: ``qemu-nbd --connect=/dev/nbdN --read-only -f FMT``, and kpartx partition maps.

A free device is chosen safely under concurrency: an exclusive ``flock`` on
``/run/lock/diskkit-nbdN.lock`` (held only while connecting, so two diskkit processes never
pick the same N) and ``/sys/block/nbdN/pid`` absent (the kernel sets it while a client is
connected, whoever connected it). The format is always given (``-f``): qemu never probes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from typing import Any

from diskkit.backends.base import Teardown, undoer
from diskkit.errors import CommandError, HostError
from diskkit.runner import run, which

LOCK_DIR = "/run/lock"


def nbd_available(load: bool = True) -> bool:
    """True when the kernel has the nbd driver (loading it, with partitions, if allowed)."""
    if os.path.exists("/sys/module/nbd") and os.path.exists("/dev/nbd0"):
        return True
    if load and which("modprobe"):
        run(["modprobe", "-q", "nbd", "max_part=16"], timeout=30, check=False)
    return os.path.exists("/dev/nbd0")


def _connected(dev: str) -> bool:
    return os.path.exists(f"/sys/block/{os.path.basename(dev)}/pid")


@contextlib.contextmanager
def _lock(dev: str) -> Iterator[bool]:
    lock_dir = LOCK_DIR
    if not os.access(lock_dir, os.W_OK):
        from diskkit.backends.state import run_root

        lock_dir = str(run_root())
        os.makedirs(lock_dir, exist_ok=True)
    fd = os.open(f"{lock_dir}/diskkit-{os.path.basename(dev)}.lock",
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def connect(td: Teardown, image: str, fmt: str, timeout: float = 30) -> str:
    """Connect ``image`` read-only to a free /dev/nbdN; returns the device once it is ready."""
    if not nbd_available():
        raise HostError("this host's kernel has no nbd driver (modprobe nbd failed)",
                        code="module-missing",
                        hint="install the kernel's modules, or use --backend loop (FUSE export)")
    n = 0
    while os.path.exists(f"/dev/nbd{n}"):
        dev = f"/dev/nbd{n}"
        n += 1
        if _connected(dev):
            continue
        with _lock(dev) as mine:
            if not mine or _connected(dev):
                continue
            data = td.step("nbd", device=dev, image=os.path.realpath(image))
            try:
                run(["qemu-nbd", f"--connect={dev}", "--read-only", "-f", fmt,
                     "--cache=none", image], timeout=timeout)
            except CommandError as exc:
                td.forget(data)
                if "Device or resource busy" in exc.stderr or _connected(dev):
                    continue  # someone else took it between our check and the ioctl
                raise HostError(f"qemu-nbd could not connect {image}: {exc.message}",
                                code="nbd-failed") from None
            _wait_ready(dev, timeout)
            td.done(data)
            return dev
    raise HostError("no free /dev/nbdN device", code="nbd-busy",
                    hint="modprobe nbd nbds_max=32, or disconnect unused ones")


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def _wait_ready(dev: str, timeout: float) -> None:
    size = f"/sys/block/{os.path.basename(dev)}/size"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _connected(dev) and int(_read(size) or 0) > 0:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise HostError(f"{dev} did not become ready within {timeout:g} s", code="nbd-timeout")


def _ours(dev: str, image: str) -> bool:
    """True when the qemu-nbd serving ``dev`` serves ``image`` (never disconnect others')."""
    try:
        pid = int(_read(f"/sys/block/{os.path.basename(dev)}/pid"))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, ValueError):
        return True  # the kernel knows no server: disconnecting is harmless
    return any(a and os.path.realpath(a.decode(errors="replace")) == image for a in argv)


@undoer("nbd")
def _undo(data: dict[str, Any]) -> None:
    dev = data["device"]
    if not _connected(dev) or not _ours(dev, data.get("image", "")):
        return
    with contextlib.suppress(CommandError):
        run(["qemu-nbd", "--disconnect", dev], timeout=30)
    deadline = time.monotonic() + 15
    while _connected(dev) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _connected(dev):
        raise HostError(f"{dev} is still connected", code="teardown-failed",
                        hint=f"qemu-nbd --disconnect {dev}")


def kpartx_available() -> bool:
    """True when kpartx and a working device-mapper are here."""
    from diskkit.backends.lvm import dm_available

    return which("kpartx") is not None and dm_available()


def kpartx_map(td: Teardown, device: str) -> dict[int, str]:
    """Map the partitions of ``device`` read-only with kpartx: {number: /dev/mapper/...}."""
    data = td.step("kpartx", device=device)
    try:
        out = run(["kpartx", "-a", "-r", "-v", "-s", device], timeout=60).stdout
    except CommandError as exc:
        raise HostError(f"kpartx failed on {device}: {exc.message}", code="kpartx-failed") from None
    td.done(data)
    parts: dict[int, str] = {}
    # "add map loop0p1 (254:0): 0 2048 linear 7:0 2048"
    for line in out.splitlines():
        words = line.split()
        if len(words) > 2 and words[0] == "add" and words[1] == "map":
            name = words[2]
            digits = name.rsplit("p", 1)[-1]
            if digits.isdigit():
                parts[int(digits)] = f"/dev/mapper/{name}"
                if not os.path.exists(parts[int(digits)]):
                    run(["dmsetup", "mknodes", name], timeout=30, check=False)
    return parts


@undoer("kpartx")
def _undo_kpartx(data: dict[str, Any]) -> None:
    dev = data["device"]
    if not os.path.exists(dev) or not which("kpartx"):
        return
    res = run(["kpartx", "-d", "-v", dev], timeout=60, check=False)
    if res.returncode != 0:
        raise HostError(f"kpartx -d {dev} failed: {res.stderr.strip()}", code="teardown-failed")
