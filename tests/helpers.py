"""Helpers tests use to build real images at test time. Every external command goes through
diskkit's runner, so it has a timeout and is logged."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from diskkit.runner import run


def qemu_img(*args: str | int | pathlib.Path, timeout: float = 120) -> str:
    """Run qemu-img with ``args``; return stdout."""
    return run(["qemu-img", *map(str, args)], timeout=timeout).stdout


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
