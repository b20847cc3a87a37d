"""Images and checks shared by the attach/mount tests (built once per session, real tools).

``disk_images`` (session): in one directory,
- ``disk.raw`` (64 MiB, MBR): partition 1 ext4 labelled ``root`` (``/etc/hostname``,
  ``/etc/os-release``, ``/etc/fstab`` naming partition 2 by LABEL at ``/srv``, an absolute
  symlink ``/etc/link -> /etc/hostname`` and one pointing outside the guest
  ``/etc/escape -> /../../../../etc/shadow``); partition 2 ext4 labelled ``data``
  (``/hello.txt``); partition 3 vfat (``/EFI.TXT``, for guestfs: no vfat in this kernel);
  partition 4 swap.
- ``disk.qcow2``: the same disk converted by qemu-img.
- ``dirty.raw``: an ext4 filesystem (whole disk) whose ``needs_recovery`` flag is set with
  debugfs: a plain ``ro`` mount of a read-only device fails on it, ``ro,noload`` works.
- ``luks.raw`` (MBR): partition 1 is LUKS2.

The autouse fixture gives every test its own ``DISKKIT_RUN_DIR`` and checks after the test
that nothing diskkit made is left: no run directory, no loop device on a test file, no mount
under the test's directories, no qemu process on a test file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from diskkit.runner import run

MiB = 1 << 20
HOSTNAME = "guest-under-test\n"
HELLO = "hello from partition 2\n"
FSTAB = "LABEL=root / ext4 defaults 0 1\nLABEL=data /srv ext4 defaults 0 2\n" \
        "/dev/sda4 none swap sw 0 0\n"
#: (start sector, size in sectors, type) of the four partitions of disk.raw
PARTS = [(2048, 32768, "83"), (34816, 32768, "83"), (67584, 40960, "c"), (108544, 8192, "82")]


@dataclass(frozen=True)
class Images:
    """Paths of the session's test images."""

    dir: pathlib.Path
    raw: pathlib.Path
    qcow2: pathlib.Path
    dirty: pathlib.Path
    luks: pathlib.Path


def sha256(path: pathlib.Path) -> str:
    """SHA-256 of a file (to prove an image was not written)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _place(image: pathlib.Path, part: pathlib.Path, sector: int) -> None:
    with open(image, "r+b") as out, open(part, "rb") as src:
        out.seek(sector * 512)
        while chunk := src.read(1 << 20):
            out.write(chunk)


def _build(d: pathlib.Path) -> Images:
    raw = d / "disk.raw"
    run(["truncate", "-s", str(64 * MiB), str(raw)])
    table = "label: dos\n" + "".join(f"start={s}, size={n}, type={t}\n" for s, n, t in PARTS)
    run(["sfdisk", "-q", str(raw)], input=table)
    root = d / "rootdir"
    (root / "etc").mkdir(parents=True)
    (root / "srv").mkdir()
    (root / "etc" / "hostname").write_text(HOSTNAME)
    (root / "etc" / "os-release").write_text('ID=diskkit-test\nPRETTY_NAME="test"\n')
    (root / "etc" / "fstab").write_text(FSTAB)
    (root / "etc" / "link").symlink_to("/etc/hostname")
    (root / "etc" / "escape").symlink_to("/../../../../etc/shadow")
    p1 = d / "p1.ext4"
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(p1), "16M"])
    data = d / "datadir"
    data.mkdir()
    (data / "hello.txt").write_text(HELLO)
    p2 = d / "p2.ext4"
    run(["mkfs.ext4", "-q", "-F", "-L", "data", "-d", str(data), str(p2), "16M"])
    p3 = d / "p3.vfat"
    run(["mkfs.vfat", "-C", "-n", "ESP", str(p3), str(20 * 1024)])
    (d / "EFI.TXT").write_text("vfat content\n")
    run(["mcopy", "-i", str(p3), str(d / "EFI.TXT"), "::/EFI.TXT"])
    p4 = d / "p4.swap"
    run(["truncate", "-s", str(4 * MiB), str(p4)])
    run(["mkswap", "-q", str(p4)])
    for (start, _n, _t), part in zip(PARTS, (p1, p2, p3, p4), strict=True):
        _place(raw, part, start)
        part.unlink()
    qcow2 = d / "disk.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], timeout=120)
    dirty = d / "dirty.raw"
    run(["mkfs.ext4", "-q", "-F", "-L", "dirty", "-d", str(data), str(dirty), "16M"])
    run(["debugfs", "-w", "-R", "feature needs_recovery", str(dirty)])
    luks = d / "luks.raw"
    run(["truncate", "-s", str(40 * MiB), str(luks)])
    run(["sfdisk", "-q", str(luks)], input="label: dos\nstart=2048, type=83\n")
    lp = d / "luks.part"
    run(["truncate", "-s", str(32 * MiB), str(lp)])
    run(["cryptsetup", "luksFormat", "--type", "luks2", "--pbkdf", "pbkdf2",
         "--pbkdf-force-iterations", "1000", "-q", str(lp), "--key-file", "-"],
        input="secret", timeout=120)
    _place(luks, lp, 2048)
    lp.unlink()
    return Images(d, raw, qcow2, dirty, luks)


@pytest.fixture(scope="session")
def disk_images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """The session's test images (see the module docstring)."""
    return _build(tmp_path_factory.mktemp("mount-images"))


def leftovers(paths: list[pathlib.Path]) -> list[str]:
    """What is still attached or running on any file under ``paths``: loop devices (by
    ``losetup --json``), mounts (/proc/self/mountinfo), qemu processes (/proc/*/cmdline)."""
    roots = [str(p) for p in paths]
    found = []
    out = run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE"], timeout=30).stdout
    for dev in json.loads(out or '{"loopdevices": []}')["loopdevices"]:
        if any((dev.get("back-file") or "").startswith(r) for r in roots):
            found.append(f"loop {dev['name']} -> {dev['back-file']}")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if any(mp.startswith(r) for r in roots):
                found.append(f"mount {mp}")
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and ("qemu" in cmd or "guestmount" in cmd) and \
                any(r in cmd for r in roots):
            found.append(f"process {proc.name}: {cmd[:120]}")
    return found


@pytest.fixture(autouse=True)
def run_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
            request: pytest.FixtureRequest) -> Iterator[pathlib.Path]:
    """A private run directory per test, and a check that the test left nothing behind."""
    d = tmp_path / "run"
    monkeypatch.setenv("DISKKIT_RUN_DIR", str(d))
    yield d
    watched = [tmp_path, d]
    if "disk_images" in request.fixturenames:
        watched.append(request.getfixturevalue("disk_images").dir)
    left = leftovers(watched)
    runs = [p.name for p in d.iterdir() if p.is_dir()] if d.is_dir() else []
    assert not left, f"left behind: {left}"
    assert not runs, f"run directories left: {runs}"


def diskkit_cmd() -> str:
    """The installed diskkit command of this checkout."""
    return os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".venv", "bin",
                        "diskkit")
