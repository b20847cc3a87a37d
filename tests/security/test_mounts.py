"""A hostile image mounted by ``diskkit mount``: its setuid-root binary gives no root, its
device node opens no host device, its programs do not run (nosuid, nodev, noexec).

The image is an ext4 filesystem built at test time (mkfs.ext4 -d) holding a setuid-root copy of
``id`` and a block device node with the major/minor of a loop device this test attached to a
scratch file; the checks run as ``nobody`` through setpriv, on the mount diskkit made.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from diskkit.backends.mounts import mount_options, nosymfollow_supported
from diskkit.runner import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root")

SECRET = b"host block device contents 7c1e\n"


@pytest.fixture()
def hostile(tmp_path: pathlib.Path) -> Iterator[tuple[pathlib.Path, str]]:
    """(image path, loop device whose numbers the image's device node carries)."""
    scratch = tmp_path / "scratch.bin"
    scratch.write_bytes(SECRET + bytes(4096 - len(SECRET)))
    loopdev = run(["losetup", "--find", "--show", "--read-only", str(scratch)]).stdout.strip()
    try:
        src = tmp_path / "src"
        src.mkdir()
        os.chmod(src, 0o755)
        idbin = shutil.which("id")
        assert idbin
        shutil.copy(idbin, src / "suid-id")
        os.chown(src / "suid-id", 0, 0)
        os.chmod(src / "suid-id", 0o4755)
        st = os.stat(loopdev)
        os.mknod(src / "disk", 0o666 | stat.S_IFBLK, st.st_rdev)
        os.symlink("/etc/hostname", src / "link")
        img = tmp_path / "hostile.ext4"
        run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(img), "16M"], timeout=60)
        yield img, loopdev
    finally:
        run(["losetup", "-d", loopdev], check=False)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           *argv], capture_output=True, timeout=30, check=False)


def _diskkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diskkit", *args], capture_output=True,
                          text=True, timeout=400, check=False)


def test_image_really_is_hostile_when_mounted_plainly(hostile, tmp_path) -> None:
    """Control: the same image mounted with plain ``ro`` lets nobody get root and read the
    host device, so the test below proves the options, not a broken image."""
    img, _ = hostile
    mnt = tempfile.mkdtemp(prefix="dk-sec-plain-")
    os.chmod(mnt, 0o755)
    dev = run(["losetup", "--find", "--show", "--read-only", str(img)]).stdout.strip()
    try:
        run(["mount", "-o", "ro", dev, mnt])
        try:
            out = _as_nobody(os.path.join(mnt, "suid-id"), "-u")
            assert out.stdout.strip() == b"0"
            got = _as_nobody("head", "-c", str(len(SECRET)), os.path.join(mnt, "disk"))
            assert got.stdout == SECRET
        finally:
            run(["umount", mnt])
    finally:
        run(["losetup", "-d", dev], check=False)
        os.rmdir(mnt)


def test_diskkit_mount_neutralises_setuid_and_device_nodes(hostile, tmp_path,
                                                           monkeypatch) -> None:
    img, _ = hostile
    monkeypatch.setenv("DISKKIT_RUN_DIR", str(tmp_path / "run"))
    mnt = tempfile.mkdtemp(prefix="dk-sec-")
    os.chmod(mnt, 0o755)
    try:
        res = _diskkit("mount", str(img), mnt, "--backend", "loop")
        assert res.returncode == 0, res.stderr
        try:
            with open("/proc/self/mountinfo") as f:
                opts = next(line.split()[5] for line in f if line.split()[4] == mnt)
            for want in ("ro", "nosuid", "nodev", "noexec"):
                assert want in opts.split(","), opts
            if nosymfollow_supported():
                assert "nosymfollow" in opts.split(","), opts
            # The setuid-root binary: not executable at all, and never root.
            out = _as_nobody(os.path.join(mnt, "suid-id"), "-u")
            assert out.returncode != 0 and out.stdout.strip() != b"0"
            # Through the host's loader (the old noexec bypass): never root either.
            ld = "/lib64/ld-linux-x86-64.so.2"
            if os.path.exists(ld):
                out = _as_nobody(ld, os.path.join(mnt, "suid-id"), "-u")
                assert out.stdout.strip() in (b"", str(pwd_uid("nobody")).encode())
            # The device node: opening it fails, for nobody and even for root.
            got = _as_nobody("head", "-c", str(len(SECRET)), os.path.join(mnt, "disk"))
            assert got.returncode != 0 and SECRET not in got.stdout
            with pytest.raises(PermissionError):
                open(os.path.join(mnt, "disk"), "rb").close()
        finally:
            res = _diskkit("umount", mnt)
            assert res.returncode == 0, res.stderr
    finally:
        os.rmdir(mnt)


def pwd_uid(name: str) -> int:
    """uid of a user name."""
    import pwd

    return pwd.getpwnam(name).pw_uid


def test_mount_options_cover_every_filesystem() -> None:
    for fstype in ("ext4", "ext3", "ext2", "xfs", "btrfs", "vfat", "iso9660", "ntfs"):
        for opts in mount_options(fstype):
            parts = opts.split(",")
            assert parts[0] == "ro"
            assert {"nosuid", "nodev", "noexec"} <= set(parts)


@pytest.mark.slow
def test_guestmount_is_nosuid_nodev_noexec(hostile, tmp_path, monkeypatch) -> None:
    """The FUSE mount of the guestfs backend (guestmount) carries the same options."""
    img, _ = hostile
    monkeypatch.setenv("DISKKIT_RUN_DIR", str(tmp_path / "run"))
    mnt = tempfile.mkdtemp(prefix="dk-sec-gm-")
    os.chmod(mnt, 0o755)
    try:
        res = _diskkit("mount", str(img), mnt, "--backend", "guestfs")
        if res.returncode == 3:
            pytest.skip(f"no libguestfs appliance here: {res.stderr.strip()}")
        assert res.returncode == 0, res.stderr
        try:
            with open("/proc/self/mountinfo") as f:
                row = next(line.split() for line in f if line.split()[4] == mnt)
            opts = set(row[5].split(","))
            assert {"nosuid", "nodev", "noexec"} <= opts, row
            out = _as_nobody(os.path.join(mnt, "suid-id"), "-u")
            assert out.returncode != 0 and out.stdout.strip() != b"0"
        finally:
            res = _diskkit("umount", mnt)
            assert res.returncode == 0, res.stderr
    finally:
        os.rmdir(mnt)
