"""Every in-process driver on mutated images: only diskkit errors come out (no IndexError,
struct.error, pycdlib or libyal exceptions), no crash of the process, no hang, bounded memory.
Each kind runs in a child process (a segfault in a C library would kill it, not the suite)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from diskkit.runner import run, which

RUNS = 150

_CHILD = r"""
import bisect, json, os, random, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
from diskkit.errors import DiskkitError
from diskkit.guest.fs import open_filesystem
from diskkit.readers.base import Reader
from diskkit.readers.raw import FileReader

class Patched(Reader):
    # The image with a few bytes changed, without copying it.
    def __init__(self, base, patches):
        self.base, self.size, self.name = base, base.size, "mutated"
        self.patches = patches
        self.keys = sorted(patches)
    def _read(self, offset, length):
        data = self.base.read(offset, length)
        i = bisect.bisect_left(self.keys, offset)
        if i == len(self.keys) or self.keys[i] >= offset + length:
            return data
        buf = bytearray(data)
        while i < len(self.keys) and self.keys[i] < offset + length:
            buf[self.keys[i] - offset] = self.patches[self.keys[i]]
            i += 1
        return bytes(buf)

img, fstype, runs, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = FileReader(img)
rnd = random.Random(seed)
hot = [i for i in range(0, min(base.size, 8 << 20), 512) if base.read(i, 512).strip(b"\0")]
stats = {"ok": 0, "refused": 0, "bad": []}
start = time.monotonic()
for n in range(runs):
    patches = {rnd.choice(hot) + rnd.randrange(512): rnd.randrange(256)
               for _ in range(rnd.randint(1, 24))}
    try:
        with open_filesystem(Patched(base, patches), fstype) as fs:
            for dirpath, entries in fs.walk("/", max_entries=5000):
                for e in entries:
                    p = dirpath.rstrip("/") + "/" + e.name
                    try:
                        if e.kind == "file":
                            fs.read(p, limit=1 << 20)
                        elif e.kind == "symlink":
                            fs.stat(p)
                    except DiskkitError:
                        pass
        stats["ok"] += 1
    except DiskkitError:
        stats["refused"] += 1
    except Exception as exc:  # what the test forbids
        stats["bad"].append(f"run {n}: {type(exc).__name__}: {str(exc)[:120]}")
stats["seconds"] = time.monotonic() - start
# VmHWM, not ru_maxrss: the latter also carries the forking test runner's own peak.
stats["peak_mb"] = next(int(line.split()[1]) for line in open("/proc/self/status")
                        if line.startswith("VmHWM:")) // 1024
print(json.dumps(stats))
"""


def _src(tmp: pathlib.Path) -> pathlib.Path:
    src = tmp / "src"
    for i in range(6):
        d = src / f"dir{i}"
        d.mkdir(parents=True)
        for j in range(8):
            (d / f"file{j}.txt").write_bytes(b"x" * (j * 700 + 1))
    (src / "link").symlink_to("dir1/file1.txt")
    return src


def build(kind: str, tmp: pathlib.Path) -> pathlib.Path:
    src = _src(tmp)
    img = tmp / f"{kind}.img"
    if kind == "ext4":
        run(["mkfs.ext4", "-q", "-F", "-b", "1024", "-d", str(src), str(img), "4M"], timeout=60)
    elif kind == "vfat":
        run(["mkfs.vfat", "-C", str(img), "2048"], timeout=60)
        for top in sorted(src.iterdir()):
            if top.is_dir():
                run(["mcopy", "-s", "-i", str(img), str(top), "::/"], timeout=60)
    elif kind == "iso9660":
        run(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-o", str(img), str(src)],
            timeout=60)
    elif kind in ("xfs", "ntfs"):
        run(["truncate", "-s", "300M" if kind == "xfs" else "8M", str(img)], timeout=10)
        mnt = tmp / "mnt"
        mnt.mkdir()
        if kind == "xfs":
            run(["mkfs.xfs", "-q", str(img)], timeout=60)
            run(["mount", "-o", "loop", str(img), str(mnt)], timeout=60)
        else:
            run(["mkntfs", "-q", "-F", "-f", str(img)], timeout=60)
            run(["ntfs-3g", str(img), str(mnt)], timeout=60)
        try:
            run(["cp", "-a", f"{src}/.", str(mnt)], timeout=60)
        finally:
            run(["umount", str(mnt)], timeout=60)
    return img


@pytest.mark.parametrize("kind", ["ext4", "vfat", "iso9660", "xfs", "ntfs"])
def test_mutated_images_give_only_diskkit_errors(kind, tmp_path) -> None:
    tool = {"ext4": "mkfs.ext4", "vfat": "mcopy", "iso9660": "xorriso", "xfs": "mkfs.xfs",
            "ntfs": "mkntfs"}[kind]
    if not which(tool):
        pytest.skip(f"{tool} needed")
    img = build(kind, tmp_path)
    out = subprocess.run([sys.executable, "-c", _CHILD, str(img), kind, str(RUNS), "1"],
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, f"child died ({out.returncode}): {out.stderr[-3000:]}"
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["bad"] == [], stats["bad"][:10]
    assert stats["ok"] + stats["refused"] == RUNS
    assert stats["ok"] > 0, stats  # the mutations must not all be refused at the door
    assert stats["peak_mb"] < 1024, stats
