"""The one way diskkit runs external programs.

Every command goes through :func:`run` (or :func:`spawn` for servers that live while we use
them): the exact command line is logged on the ``diskkit.runner`` logger (shown by
``--verbose``), every call has a timeout, a missing program becomes a :class:`HostError` naming
the Debian package to install, and a failure becomes a :class:`CommandError` carrying stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from diskkit.errors import CommandError, CommandTimeout, HostError

log = logging.getLogger("diskkit.runner")

#: Which Debian package provides each program diskkit runs (for the "install X" hint).
PACKAGE_OF: dict[str, str] = {
    "qemu-img": "qemu-utils",
    "qemu-nbd": "qemu-utils",
    "qemu-storage-daemon": "qemu-system-common",
    "qemu-system-x86_64": "qemu-system-x86",
    "nbdkit": "nbdkit",
    "losetup": "mount",
    "mount": "mount",
    "umount": "mount",
    "kpartx": "kpartx",
    "lvm": "lvm2",
    "vgchange": "lvm2",
    "pvs": "lvm2",
    "dmsetup": "dmsetup",
    "sfdisk": "fdisk",
    "sgdisk": "gdisk",
    "blkid": "util-linux",
    "rbd": "ceph-common",
    "ceph": "ceph-common",
    "xorriso": "xorriso",
    "mkfs.vfat": "dosfstools",
    "mkfs.ext4": "e2fsprogs",
    "mkfs.xfs": "xfsprogs",
    "guestfish": "libguestfs-tools",
    "virt-filesystems": "libguestfs-tools",
    "grub-mkimage": "grub-common",
    "grub-bios-setup": "grub-pc-bin",
    "modprobe": "kmod",
    "fusermount3": "fuse3",
    "fusermount": "fuse3",
}

#: Default timeout, in seconds, of a command that is expected to be quick.
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Result:
    """What a finished command gave."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _missing(program: str) -> HostError:
    package = PACKAGE_OF.get(program)
    hint = f"install it: apt-get install {package}" if package else "install it"
    return HostError(f"{program} is not installed on this host", code="program-missing", hint=hint)


def which(program: str) -> str | None:
    """Path of ``program`` on PATH (and in the sbin directories root's tools live in)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return shutil.which(program, path=path)


def require(program: str) -> str:
    """Path of ``program``, or a :class:`HostError` saying which package provides it."""
    found = which(program)
    if not found:
        raise _missing(program)
    return found


def _fmt(argv: Sequence[str]) -> str:
    return shlex.join(str(a) for a in argv)


def run(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    input: bytes | str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    binary: bool = False,
) -> Result:
    """Run ``argv`` to completion and return its :class:`Result`.

    ``timeout`` is mandatory in spirit: the process group is killed when it expires and a
    :class:`CommandTimeout` is raised. With ``check`` a non-zero exit raises
    :class:`CommandError` whose message is the last line of stderr. stdin is closed (or fed
    ``input``) so that no program ever waits on the terminal.
    """
    argv = [str(a) for a in argv]
    exe = require(argv[0]) if os.sep not in argv[0] else argv[0]
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    log.info("run: %s", _fmt(argv))
    started = time.monotonic()
    if isinstance(input, str):
        input = input.encode()
    try:
        proc = subprocess.Popen(
            [exe, *argv[1:]],
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise _missing(argv[0]) from exc
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        out, err = proc.communicate()
        raise CommandTimeout(
            f"{argv[0]} did not finish within {timeout:g} s and was stopped",
            argv=argv,
            stderr=err.decode(errors="replace"),
        ) from exc
    except BaseException:
        # Ctrl-C or any other exit: never leave the child running.
        _kill_group(proc)
        proc.wait()
        raise
    seconds = time.monotonic() - started
    stdout = out if binary else out.decode(errors="replace")
    stderr = err.decode(errors="replace")
    log.debug("exit %s after %.2f s: %s", proc.returncode, seconds, argv[0])
    if check and proc.returncode != 0:
        last = next((ln for ln in reversed(stderr.strip().splitlines()) if ln.strip()), "")
        raise CommandError(
            f"{argv[0]} failed (exit {proc.returncode}): {last or 'no message'}",
            argv=argv,
            returncode=proc.returncode,
            stderr=stderr,
        )
    return Result(tuple(argv), proc.returncode, stdout, stderr, seconds)  # type: ignore[arg-type]


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


@contextlib.contextmanager
def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: int | None = subprocess.DEVNULL,
    stderr: int | None = subprocess.PIPE,
    cwd: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a long-running program (a server) for the duration of a ``with`` block.

    The process runs in its own session; on every exit from the block (Ctrl-C included) its
    whole process group is terminated and reaped, so no server outlives its user.
    """
    argv = [str(a) for a in argv]
    exe = require(argv[0]) if os.sep not in argv[0] else argv[0]
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    log.info("spawn: %s", _fmt(argv))
    try:
        proc = subprocess.Popen(
            [exe, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise _missing(argv[0]) from exc
    try:
        yield proc
    finally:
        _kill_group(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def wait_for(predicate, *, timeout: float, interval: float = 0.05, what: str = "") -> None:
    """Poll ``predicate()`` until it is true; :class:`CommandTimeout` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise CommandTimeout(
                f"timed out after {timeout:g} s waiting for {what or 'a condition'}"
            )
        time.sleep(interval)
