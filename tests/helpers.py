"""Helpers tests use to build real images at test time. Every external command goes through
diskkit's runner, so it has a timeout and is logged."""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

from diskkit.errors import CommandError
from diskkit.runner import run


def qemu_img(*args: str | int | pathlib.Path, timeout: float = 120) -> str:
    """Run qemu-img with ``args``; return stdout.

    Creating a LUKS image, qemu-img first times its PBKDF and gives up with "Unable to get
    accurate CPU usage" when the machine is busy: that one failure is tried again."""
    for attempt in range(5):
        try:
            return run(["qemu-img", *map(str, args)], timeout=timeout).stdout
        except CommandError as exc:
            if "accurate CPU usage" not in str(exc) or attempt == 4:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def qemu_img_info(path: str | pathlib.Path, fmt: str) -> dict[str, Any]:
    """``qemu-img info -f FMT --output=json`` (explicit format: never probe in tests either)."""
    return json.loads(qemu_img("info", "-f", fmt, "--output=json", path))


def create(path: pathlib.Path, fmt: str, size: str | int, *opts: str) -> pathlib.Path:
    """``qemu-img create -f FMT [-o opts] PATH SIZE``."""
    args: list[str] = ["create", "-q", "-f", fmt]
    for opt in opts:
        args += ["-o", opt]
    qemu_img(*args, path, str(size))
    return path


def write_at(path: pathlib.Path, offset: int, data: bytes) -> None:
    """Overwrite bytes of a file in place (for hand-built hostile images)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
