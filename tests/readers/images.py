"""Builders of real images for the reader tests (qemu-img, qemu-io), and the comparisons
with qemu's own view of them (qemu-img convert -O raw, qemu-img map)."""

from __future__ import annotations

import json
import pathlib
import random
from typing import Any

from diskkit.readers.base import Reader
from diskkit.runner import run
from tests.helpers import qemu_img

MiB = 1 << 20


def qemu_io(path: pathlib.Path, fmt: str, *commands: str) -> None:
    """Write into an image with ``qemu-io -f FMT -c CMD ...`` (qemu's own writer)."""
    argv: list[str] = ["qemu-io", "-f", fmt]
    for c in commands:
        argv += ["-c", c]
    run([*argv, str(path)], timeout=120)


def compressible(size: int, seed: int = 1) -> bytes:
    """Bytes that deflate/zstd shrink (hex text of random bytes) but are not trivial."""
    rng = random.Random(seed)
    return rng.randbytes(size // 2).hex().encode()[:size]


def raw_of(path: pathlib.Path | str, fmt: str, out: pathlib.Path) -> bytes:
    """The guest-visible bytes according to qemu: ``qemu-img convert -f FMT -O raw``."""
    qemu_img("convert", "-f", fmt, "-O", "raw", path, out)
    return out.read_bytes()


def qemu_map(path: pathlib.Path | str, fmt: str) -> list[dict[str, Any]]:
    """``qemu-img map -f FMT --output=json``."""
    return json.loads(qemu_img("map", "-f", fmt, "--output=json", path))


def merge(runs: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """Merge adjacent (start, length, kind) runs of equal kind."""
    out: list[tuple[int, int, Any]] = []
    for start, length, kind in runs:
        if out and out[-1][2] == kind and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], out[-1][1] + length, kind)
        elif length:
            out.append((start, length, kind))
    return out


def sweep(reader: Reader, ref: bytes, seed: int = 7, count: int = 60) -> None:
    """Compare reads of many sizes at unaligned offsets with the reference bytes."""
    rng = random.Random(seed)
    size = len(ref)
    sizes = [1, 7, 511, 512, 4095, 65536, 65537, 300_001, 2 * MiB + 13]
    for i in range(count):
        n = sizes[i % len(sizes)]
        off = rng.randrange(0, max(1, size))
        got = reader.read(off, n)
        assert got == ref[off : off + n], f"read({off}, {n}) differs from qemu's bytes"
    # the very end, and reads running past it
    assert reader.read(size - 3, 100) == ref[size - 3 :]
    assert reader.read(size, 10) == b""
