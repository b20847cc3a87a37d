"""Kernel mounts, read-only for real: the options that forbid journal replay, and helpers to
probe a device's filesystem and to resolve a guest path inside a mounted root safely.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from typing import Any

from diskkit.backends.base import Teardown, undoer
from diskkit.errors import CommandError, HostError, UserError
from diskkit.runner import run

#: Mount options per filesystem type. ``noload`` (ext3/4) and ``norecovery`` (xfs) stop the
#: journal replay a plain ``ro`` mount still does; btrfs's is ``rescue=nologreplay`` (5.9+,
#: see Documentation/filesystems/btrfs.rst), the older spelling ``nologreplay`` as fallback.
RO_OPTIONS: dict[str, tuple[str, ...]] = {
    "ext4": ("ro,noload",),
    "ext3": ("ro,noload",),
    "ext2": ("ro",),
    "xfs": ("ro,norecovery",),
    "btrfs": ("ro,rescue=nologreplay", "ro,nologreplay"),
}

#: Options every mount diskkit makes carries, whatever the filesystem: a hostile image's
#: setuid binaries give no privilege, its device nodes open nothing, its programs do not run
#: from the mount (mount(8), "FILESYSTEM-INDEPENDENT MOUNT OPTIONS").
SAFE_OPTIONS = "nosuid,nodev,noexec"


def nosymfollow_supported() -> bool:
    """True when the running kernel knows ``nosymfollow`` (MS_NOSYMFOLLOW, Linux 5.10+):
    symlinks on the mount are then never followed by any path walk on the host (readlink
    still works, so diskkit resolves guest links inside the guest root itself)."""
    release = os.uname().release
    m = re.match(r"(\d+)\.(\d+)", release)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (5, 10)


def mount_options(fstype: str) -> list[str]:
    """The ``-o`` strings to try, in order, for a read-only mount of ``fstype``: the
    journal-replay options of :data:`RO_OPTIONS` plus :data:`SAFE_OPTIONS` (and
    ``nosymfollow`` where the kernel has it)."""
    extra = SAFE_OPTIONS + (",nosymfollow" if nosymfollow_supported() else "")
    return [f"{opts},{extra}" for opts in RO_OPTIONS.get(fstype, ("ro",))]


#: Kernel filesystem name of a blkid TYPE, where they differ.
_KERNEL_FS = {"vfat": "vfat", "iso9660": "iso9660", "ntfs": "ntfs3"}


def probe(device: str) -> dict[str, str]:
    """``blkid -p`` of a device or file: TYPE, UUID, LABEL... ({} when nothing is found)."""
    res = run(["blkid", "-p", "-o", "export", device], timeout=30, check=False)
    if res.returncode not in (0, 2):
        raise HostError(f"blkid failed on {device}: {res.stderr.strip()}", code="blkid-failed")
    out: dict[str, str] = {}
    for line in res.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


_SUPPORTED: set[str] = set()


def kernel_supports(fstype: str) -> bool:
    """True when the running kernel can mount ``fstype`` (listed in /proc/filesystems, or a
    module that modprobe can load)."""
    name = _KERNEL_FS.get(fstype, fstype)
    if name in _SUPPORTED:
        return True
    try:
        with open("/proc/filesystems", encoding="ascii") as f:
            if any(line.split()[-1] == name for line in f if line.strip()):
                _SUPPORTED.add(name)
                return True
    except OSError:
        return False
    res = run(["modprobe", "-q", name], timeout=30, check=False) if _has_modprobe() else None
    if res is None or res.returncode != 0:
        return False
    with open("/proc/filesystems", encoding="ascii") as f:
        return any(line.split()[-1] == name for line in f if line.strip())


def _has_modprobe() -> bool:
    from diskkit.runner import which

    return which("modprobe") is not None


def check_mountable(info: dict[str, str], what: str) -> str:
    """The filesystem type to mount, or a :class:`UserError` for what cannot be mounted."""
    fstype = info.get("TYPE", "")
    if fstype == "crypto_LUKS" or fstype == "BitLocker":
        raise UserError(f"{what} is encrypted ({fstype}); diskkit does not unlock volumes",
                        code="encrypted", hint="unlock it yourself (cryptsetup open --readonly)")
    if fstype == "LVM2_member":
        raise UserError(f"{what} is an LVM physical volume", code="is-lvm",
                        hint="mount a logical volume with --lv VG/LV, or use --os")
    if fstype in ("swap", ""):
        raise UserError(f"{what} holds no mountable filesystem"
                        + (f" ({fstype})" if fstype else ""), code="no-filesystem")
    return fstype


def mounted_at(path: str) -> bool:
    """True when ``path`` is a mountpoint (from /proc/self/mountinfo, no stat of the target)."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and _unescape(fields[4]) == real:
                    return True
    except OSError:
        return False
    return False


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def make_dir(td: Teardown, path: str) -> None:
    """Create a mountpoint directory, removed again (if still empty) on teardown."""
    if os.path.isdir(path):
        return
    data = td.step("mkdir", path=os.path.abspath(path))
    os.makedirs(path, exist_ok=True)
    td.done(data)


@undoer("mkdir")
def _undo_mkdir(data: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(data["path"])


def mount(td: Teardown, device: str, path: str, fstype: str) -> None:
    """Mount ``device`` at ``path`` read-only, never replaying a journal, with
    :func:`mount_options` (nosuid, nodev, noexec, nosymfollow)."""
    data = td.step("mount", path=os.path.abspath(path), device=device)
    last: CommandError | None = None
    for opts in mount_options(fstype):
        try:
            run(["mount", "-t", _KERNEL_FS.get(fstype, fstype), "-o", opts, device, path],
                timeout=60)
            td.done(data, options=opts, fstype=fstype)
            return
        except CommandError as exc:
            last = exc
    assert last is not None
    raise HostError(f"cannot mount {device} ({fstype}) at {path}: {last.message}",
                    code="mount-failed", hint="try --backend guestfs") from None


@undoer("mount")
def _undo_mount(data: dict[str, Any]) -> None:
    path = data["path"]
    for attempt in range(10):
        if not mounted_at(path):
            return
        res = run(["umount", path], timeout=60, check=False)
        if res.returncode == 0:
            return
        time.sleep(0.2 * (attempt + 1))
    if mounted_at(path):
        raise HostError(f"cannot unmount {path}: it is busy", code="busy",
                        hint=f"see who uses it: fuser -vm {path}; then diskkit cleanup")


def resolve_in_root(root: str, path: str) -> str:
    """Host path of guest ``path`` under ``root``, following symlinks as the guest would: an
    absolute link target is taken relative to ``root`` and ``..`` never climbs above it, so a
    hostile image cannot make ``cat`` read a host file (:func:`diskkit.guestpath.resolve`)."""
    from diskkit.guestpath import resolve

    return resolve(root, path)
