"""Images every conversion test starts from, built once per session with qemu-img."""

from __future__ import annotations

import hashlib
import os
import pathlib
import random
import sys

import pytest

from diskkit.runner import Result, run
from tests.helpers import qemu_img

#: Guest-visible size of the base image (vpc rounds it up to its CHS geometry).
BASE_SIZE = 32 << 20

#: name -> (qemu-img driver, extra qemu-img convert arguments that make it)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "raw": ("raw", []),
    "qcow2": ("qcow2", []),
    "qcow2-compressed": ("qcow2", ["-c"]),
    "vmdk-sparse": ("vmdk", ["-o", "subformat=monolithicSparse"]),
    "vmdk-stream": ("vmdk", ["-o", "subformat=streamOptimized"]),
    "vhd": ("vpc", []),
    "vhdx": ("vhdx", []),
    "vdi": ("vdi", []),
}


def write_base(path: pathlib.Path, size: int, seed: int = 7) -> pathlib.Path:
    """A raw disk with random data in scattered runs (zeros elsewhere), and a marker at the
    very end so a conversion that drops the tail is caught."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for _ in range(24):
            off = rng.randrange(0, size - (256 << 10)) & ~511
            f.seek(off)
            f.write(rng.randbytes(rng.randrange(4 << 10, 256 << 10)))
        f.seek(size - 512)
        f.write(b"END-OF-DISK-MARKER".ljust(512, b"\xee"))
    return path


def guest_sha256(path: str | pathlib.Path, fmt: str, tmp: pathlib.Path,
                 length: int = BASE_SIZE) -> str:
    """sha256 of the first ``length`` guest-visible bytes, as plain qemu-img sees them
    (independent of diskkit); asserts that anything past ``length`` reads as zeros (a VHD's
    CHS rounding adds a few sectors)."""
    out = tmp / f"sha-{hashlib.md5(str(path).encode()).hexdigest()}.raw"
    qemu_img("convert", "-f", fmt, "-O", "raw", str(path), out)
    h = hashlib.sha256()
    with open(out, "rb") as f:
        left = length
        while left and (chunk := f.read(min(left, 1 << 20))):
            h.update(chunk)
            left -= len(chunk)
        assert left == 0, f"{path}: guest disk shorter than {length}"
        assert f.read().count(0) == out.stat().st_size - length, f"{path}: non-zero tail"
    out.unlink()
    return h.hexdigest()


def diskkit(*args: str | pathlib.Path, timeout: float = 300,
            env: dict[str, str] | None = None) -> Result:
    """Run the diskkit CLI (a real process) and return its result, whatever its exit."""
    return run([sys.executable, "-m", "diskkit", *map(str, args)], timeout=timeout,
               check=False, env=env)


def qemu_img_pids(needle: str) -> list[int]:
    """qemu-img processes whose command line mentions ``needle``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-img") and needle.encode() in b" ".join(argv):
            pids.append(int(entry))
    return pids


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """The base raw image and one copy in every format variant, made by plain qemu-img."""
    d = tmp_path_factory.mktemp("convert-src")
    base = write_base(d / "base.raw", BASE_SIZE)
    out = {"raw": base}
    for name, (fmt, args) in VARIANTS.items():
        if name == "raw":
            continue
        path = d / f"base.{name}"
        qemu_img("convert", "-f", "raw", "-O", fmt, *args, base, path)
        out[name] = path
    return out


@pytest.fixture(scope="session")
def base_sha(images: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    """sha256 of the base image's guest-visible content."""
    return guest_sha256(images["raw"], "raw", tmp_path_factory.mktemp("sha"))
