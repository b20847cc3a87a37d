"""qemu-storage-daemon FUSE export: any format qemu reads, exposed as a read-only raw file.

Where the host has no nbd module, this is how a qcow2 (VMDK, VHDX, VDI...) becomes something a
loop device can attach: ``qemu-storage-daemon --blockdev file --blockdev FMT --export
type=fuse,writable=off`` (qemu docs/tools/qemu-storage-daemon.rst). The daemon is started with
``--daemonize`` so it returns once the export is ready and can outlive a CLI ``mount``; its pid
is recorded, and teardown stops it and makes sure the export file is unmounted.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import time
from typing import Any

from diskkit.backends.base import Teardown, undoer
from diskkit.backends.mounts import mounted_at
from diskkit.backends.state import pid_alive
from diskkit.errors import CommandError, HostError
from diskkit.runner import run, which

#: Formats qemu-storage-daemon can export (qemu's driver names).
QEMU_FORMATS = ("raw", "qcow2", "qcow", "vmdk", "vpc", "vhdx", "vdi", "qed", "parallels",
                "dmg", "cloop", "bochs")


def _opt(value: str) -> str:
    # QEMU's option syntax: a comma inside a value is written twice.
    return value.replace(",", ",,")


def export(td: Teardown, image: str, fmt: str) -> str:
    """Export ``image`` (format ``fmt``) as a read-only raw file in the run directory."""
    if which("qemu-storage-daemon") is None:
        raise HostError("qemu-storage-daemon is not installed", code="program-missing",
                        hint="install it: apt-get install qemu-system-common")
    if not os.path.exists("/dev/fuse"):
        raise HostError("this host has no FUSE (/dev/fuse is missing)", code="module-missing",
                        hint="modprobe fuse; apt-get install fuse3")
    if fmt not in QEMU_FORMATS:
        raise HostError(f"qemu cannot export the {fmt} format", code="unsupported-format")
    n = sum(1 for s in td.run.steps if s["kind"] == "qsd")
    mountpoint = td.run.dir / f"export{n}.raw"
    pidfile = td.run.dir / f"qsd{n}.pid"
    mountpoint.touch()
    data = td.step("qsd", export=str(mountpoint), pidfile=str(pidfile), image=image)
    argv = [
        "qemu-storage-daemon", "--daemonize", "--pidfile", str(pidfile),
        "--blockdev", f"driver=file,node-name=file0,filename={_opt(image)},read-only=on",
        "--blockdev", f"driver={fmt},node-name=fmt0,file=file0,read-only=on",
        "--export", f"type=fuse,id=exp0,node-name=fmt0,mountpoint={_opt(str(mountpoint))},"
                    "writable=off",
    ]
    try:
        run(argv, timeout=60)
    except CommandError as exc:
        raise HostError(f"qemu-storage-daemon could not export {image} as {fmt}: "
                        f"{exc.message}", code="export-failed") from None
    pid = _read_pid(pidfile)
    td.done(data, pid=pid)
    return str(mountpoint)


def _read_pid(pidfile: pathlib.Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_qsd(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"qemu-storage-daemon" in f.read()
    except OSError:
        return False


@undoer("qsd")
def _undo(data: dict[str, Any]) -> None:
    """Stop the daemon (SIGTERM, then SIGKILL), then make sure the export is unmounted."""
    pid = data.get("pid") or _read_pid(pathlib.Path(data.get("pidfile", "/nonexistent")))
    if pid and _is_qsd(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    path = data.get("export", "")
    if path and mounted_at(path):
        # A daemon killed hard leaves its FUSE mount behind ("Transport endpoint not connected").
        run(["umount", "-l", path], timeout=30, check=False)
    if path and mounted_at(path):
        raise HostError(f"cannot unmount the FUSE export {path}", code="teardown-failed")
    with contextlib.suppress(OSError):
        os.unlink(path)
