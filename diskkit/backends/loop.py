"""Loop devices: one read-only loop device per partition, with an offset and a size limit.

``losetup -P`` needs the kernel to scan partitions (and udev to make nodes); on hosts where
that does not work, a partition is attached on its own with ``--offset``/``--sizelimit``,
which always works. Every device is attached with ``-r`` (read-only at the block layer).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from diskkit.backends.base import Teardown, undoer
from diskkit.errors import CommandError, HostError
from diskkit.runner import run

log = logging.getLogger("diskkit.backends.loop")


def list_loops() -> list[dict[str, Any]]:
    """``losetup --list --json``: every attached loop device (name, back-file, offset, ro)."""
    out = run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE,OFFSET,SIZELIMIT,RO"],
              timeout=30).stdout
    if not out.strip():
        return []
    try:
        return list(json.loads(out).get("loopdevices", []))
    except ValueError:
        return []


def _same_file(a: str | None, b: str) -> bool:
    if not a:
        return False
    a = a.removesuffix(" (deleted)")
    return os.path.realpath(a) == os.path.realpath(b)


def loop_available() -> bool:
    """True when this host can attach loop devices."""
    return os.path.exists("/dev/loop-control")


def attach(td: Teardown, path: str, offset: int = 0, size: int | None = None) -> str:
    """Attach ``path`` (bytes ``[offset, offset+size)``) read-only; returns the device."""
    if not loop_available():
        raise HostError("this host has no loop devices (/dev/loop-control is missing)",
                        code="module-missing", hint="modprobe loop, or use --backend guestfs")
    data = td.step("loop", backing=os.path.realpath(path), offset=offset, size=size)
    argv = ["losetup", "--find", "--show", "--read-only", "--offset", str(offset)]
    if size is not None:
        argv += ["--sizelimit", str(size)]
    try:
        device = run([*argv, path], timeout=30).stdout.strip()
    except CommandError as exc:
        raise HostError(f"cannot attach a loop device to {path}: {exc.message}",
                        code="loop-failed", hint="are you root? is a loop device free?") from None
    td.done(data, device=device)
    return device


def _recorded_elsewhere() -> set[str]:
    """Loop devices that some run directory records as its own."""
    from diskkit.backends.state import all_runs

    return {s["data"]["device"] for r in all_runs() for s in r.steps
            if s.get("kind") == "loop" and s.get("data", {}).get("device")}


@undoer("loop")
def _undo(data: dict[str, Any]) -> None:
    """Detach the loop device of a step; for a step that crashed before recording its device,
    detach the device attached to the same file at the same offset."""
    backing, offset = data.get("backing", ""), int(data.get("offset") or 0)
    others = set() if data.get("device") else _recorded_elsewhere()
    for dev in list_loops():
        if dev.get("name") in others:
            continue  # another run's device on the same file and offset
        if not _same_file(dev.get("back-file"), backing):
            continue
        if int(dev.get("offset") or 0) != offset:
            continue
        if data.get("device") and dev.get("name") != data["device"]:
            continue
        log.info("detaching %s", dev["name"])
        res = run(["losetup", "--detach", dev["name"]], timeout=30, check=False)
        if res.returncode != 0 and os.path.exists(f"/sys/block/{dev['name'][5:]}/loop"):
            raise HostError(f"cannot detach {dev['name']}: {res.stderr.strip()}",
                            code="teardown-failed", hint="is it still mounted or in use?")
