"""The crafted filesystems of issue 11, each answered within seconds and a few hundred MB by
the kept readers (guest/fs and boot/, which share them), run in a child process with an
address-space limit and a timeout."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

import pytest

from diskkit.runner import which
from tests.guest import hostile_fs

#: What every attack must stay under.
SECONDS = 20.0
PEAK_MB = 400

_CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
from diskkit.disk import open_disk
from diskkit.errors import DiskkitError
img, path, via = sys.argv[1:4]
t = time.monotonic()
result = "ok"
try:
    with open_disk(img) as r:
        if via == "guestfs":
            from diskkit.guest.fs import open_filesystem
            with open_filesystem(r) as fs:
                st = fs.stat(path)
                n = len(fs.listdir(path)) if st.is_dir else len(fs.read(path))
        elif via == "ext":
            from diskkit.boot.ext import ExtFs
            fs = ExtFs(r)
            n = len(fs.read_file(fs.lookup(path), 64 << 20))
        else:
            from diskkit.boot.fat import FatFs
            fs = FatFs(r)
            e = fs.lookup(path) if path != "/" else None
            n = len(fs.listdir(e.cluster if e else 0)) if e is None or e.is_dir \
                else len(fs.read_file(e))
except DiskkitError as exc:
    result, n = f"{type(exc).__name__}: {exc.code}", None
# VmHWM: the peak of THIS process's memory since exec (ru_maxrss also carries the peak of
# the process that forked it: the test runner's own, hundreds of MB late in a full run).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(json.dumps({"result": result, "n": n, "seconds": time.monotonic() - t,
                  "peak_mb": hwm // 1024}))
"""


def _attack(img: pathlib.Path, path: str, via: str) -> dict:
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _CHILD, str(img), path, via],
                         capture_output=True, text=True, timeout=SECONDS * 3, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert time.monotonic() - start < SECONDS * 2, got
    assert got["seconds"] < SECONDS, got
    assert got["peak_mb"] < PEAK_MB, got
    return got


@pytest.mark.parametrize(("depth", "via"), [(1, "guestfs"), (2, "guestfs"), (3, "guestfs"),
                                            (3, "ext")])
def test_ext_extent_fanout(tmp_path, depth, via) -> None:
    if not which("debugfs"):
        pytest.skip("debugfs needed")
    img = hostile_fs.ext_fanout(tmp_path, depth)
    got = _attack(img, "/victim", via)
    # Depths 1-2 fit the node budget (each block read once); depth 3 is refused by it.
    if depth < 3:
        assert got["result"] == "ok" and got["n"] == 64 << 20, got  # i_size cut at 64 MiB
    else:
        assert got["result"] == "ImageError: ext-extent-bound", got


@pytest.mark.parametrize(("depth", "via"), [(1, "ext"), (2, "guestfs")])
def test_ext_extent_fanout_unordered(tmp_path, depth, via) -> None:
    """The issue's shape: every entry at logical block 0, 32768-block extents (the old walk
    read 128 MiB per extent, 1,360 times at depth 1): refused as a malformed tree."""
    if not which("debugfs"):
        pytest.skip("debugfs needed")
    img = hostile_fs.ext_fanout(tmp_path, depth, ordered=False)
    got = _attack(img, "/victim", via)
    assert got["result"] == "ImageError: ext-extent-bad", got


@pytest.mark.parametrize("via", ["guestfs", "fat"])
def test_fat32_claiming_a_16_gib_fat_on_16_tib(tmp_path, via) -> None:
    if not which("qemu-io"):
        pytest.skip("qemu-io needed")
    img = hostile_fs.fat32_huge_fat(tmp_path)
    got = _attack(img, "/", via)
    assert got["result"] == "ok" and got["n"] == 0, got


@pytest.fixture(scope="module")
def long_chain(tmp_path_factory) -> pathlib.Path:
    return hostile_fs.fat32_long_chain(tmp_path_factory.mktemp("chain"))


@pytest.mark.parametrize("via", ["guestfs", "fat"])
@pytest.mark.parametrize("path", ["/CHAIN", "/CHAIN.BIN"])
def test_fat_chain_of_30_million_clusters(long_chain, via, path) -> None:
    got = _attack(long_chain, path, via)
    assert got["result"] == "ok", got
    if path == "/CHAIN.BIN":  # a 4 GiB file along the chain: read up to the 64 MiB limit
        assert got["n"] == 64 << 20


def test_iso_directory_loop(tmp_path) -> None:
    if not which("xorriso"):
        pytest.skip("xorriso needed")
    img = hostile_fs.iso_directory_loop(tmp_path)
    got = _attack(img, "/", "guestfs")
    assert got["result"] == "ImageError: bad-filesystem", got
