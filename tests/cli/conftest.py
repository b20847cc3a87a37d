"""Images for the CLI tests, built at test time with sfdisk, mkfs.ext4 -d and qemu-img:

- ``os.raw`` (MBR): partition 1 ext4 ``root`` holding an OS tree (/etc/hostname,
  /etc/os-release, /etc/fstab, a binary /bin/blob), partition 2 ext4 ``data`` (/hello.txt);
- ``noos.raw`` (MBR): two ext4 partitions, neither holds an OS;
- ``one.raw`` (MBR): one ext4 partition without an OS;
- ``fresh.qcow2``: ``qemu-img create -f qcow2``, 64 MiB, nothing written.

Every test gets its own ``DISKKIT_RUN_DIR`` (``run_env``).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass

import pytest

from diskkit.runner import run
from tests.helpers import create

MiB = 1 << 20
HOSTNAME = "cli-under-test\n"
HELLO = "hello from the data partition\n"
BLOB = bytes(range(256)) * 3
DISKKIT = str(pathlib.Path(sys.executable).parent / "diskkit")


@dataclass(frozen=True)
class CliImages:
    """Paths of the CLI test images."""

    dir: pathlib.Path
    os_raw: pathlib.Path
    noos_raw: pathlib.Path
    one_raw: pathlib.Path
    fresh_qcow2: pathlib.Path


def _ext4(d: pathlib.Path, name: str, label: str, files: dict[str, bytes]) -> pathlib.Path:
    tree = d / f"{name}.tree"
    for rel, data in files.items():
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    tree.mkdir(exist_ok=True)
    img = d / f"{name}.ext4"
    run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), str(img), "16M"])
    return img


def _disk(path: pathlib.Path, parts: list[pathlib.Path]) -> pathlib.Path:
    run(["truncate", "-s", str((2 + 17 * len(parts)) * MiB), str(path)])
    table = "label: dos\n" + "".join(f"start={2048 + i * 34816}, size=32768, type=83\n"
                                     for i in range(len(parts)))
    run(["sfdisk", "-q", str(path)], input=table)
    for i, part in enumerate(parts):
        with open(path, "r+b") as out:
            out.seek((2048 + i * 34816) * 512)
            out.write(part.read_bytes())
    return path


@pytest.fixture(scope="session")
def cli_images(tmp_path_factory: pytest.TempPathFactory) -> CliImages:
    """See the module docstring."""
    d = tmp_path_factory.mktemp("cli-images")
    root = _ext4(d, "root", "root", {
        "etc/hostname": HOSTNAME.encode(),
        "etc/os-release": b'ID=diskkit-cli-test\nPRETTY_NAME="cli test"\n',
        "etc/fstab": b"LABEL=root / ext4 defaults 0 1\nLABEL=data /srv ext4 defaults 0 2\n",
        "bin/blob": BLOB, "srv/.keep": b""})
    data = _ext4(d, "data", "data", {"hello.txt": HELLO.encode()})
    other = _ext4(d, "other", "other", {"notes.txt": b"no OS here\n"})
    return CliImages(d, _disk(d / "os.raw", [root, data]), _disk(d / "noos.raw", [data, other]),
                     _disk(d / "one.raw", [other]),
                     create(d / "fresh.qcow2", "qcow2", "64M"))


@pytest.fixture()
def run_env(tmp_path: pathlib.Path) -> dict[str, str]:
    """The environment for a diskkit subprocess, with a private run directory."""
    return {**os.environ, "DISKKIT_RUN_DIR": str(tmp_path / "run")}


def dk(*args: str | pathlib.Path, env: dict[str, str] | None = None,
       timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the installed ``diskkit`` with ``args``."""
    return subprocess.run([DISKKIT, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mounts need root")
