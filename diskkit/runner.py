"""The one way diskkit runs external programs.

Every command goes through :func:`run` (or :func:`spawn` for servers that live while we use
them): the exact command line is logged on the ``diskkit.runner`` logger (shown by
``--verbose``), every call has a timeout, a missing program becomes a :class:`HostError` naming
the Debian package to install, and a failure becomes a :class:`CommandError` carrying stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from diskkit.errors import CommandError, CommandTimeout, HostError

if TYPE_CHECKING:
    import pathlib


class _Log:
    """The ``diskkit.runner`` logger, looked up only once something imported ``logging``
    (the CLI's --verbose configures it; an API user's program does): a command that never
    logs does not pay for importing it (3 ms of every start-up). Without ``logging``
    imported nothing was configured, so info and debug records would go nowhere anyway."""

    @staticmethod
    def _logger() -> Any:
        logging = sys.modules.get("logging")
        return logging.getLogger("diskkit.runner") if logging is not None else None

    def debug(self, msg: str, *args: object) -> None:
        if (logger := self._logger()) is not None:
            logger.debug(msg, *args)

    def info(self, msg: str, *args: object) -> None:
        if (logger := self._logger()) is not None:
            logger.info(msg, *args)


log = _Log()

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
#: How much of a command's stderr is kept (its tail): error messages are at the end.
STDERR_TAIL = 64 << 10


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


# --- Children die with diskkit ----------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_libc: Any = None


def _child_setup() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when diskkit dies (prctl
    PR_SET_PDEATHSIG), even by SIGKILL; None off Linux or off the main thread (the signal is
    sent when the *thread* that forked exits, so a worker thread's child would die early)."""
    global _libc
    if threading.current_thread() is not threading.main_thread():
        return None
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.prctl  # noqa: B018 - fails here, not in the child, when missing
        except (OSError, AttributeError):
            _libc = False
    if _libc is False:
        return None
    parent = os.getpid()
    prctl = _libc.prctl

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # diskkit died between fork and prctl
            os._exit(1)

    return setup


def run_root() -> pathlib.Path:
    """Where diskkit keeps its run state: ``$DISKKIT_RUN_DIR``, else /run/diskkit (root) or
    /tmp/diskkit-UID."""
    import pathlib

    return pathlib.Path(_run_root())


def _run_root() -> str:
    """:func:`run_root` as a string (the server records are written on every spawn: no
    pathlib import for them, 5 ms of a command's start-up)."""
    env = os.environ.get("DISKKIT_RUN_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/diskkit"
    return f"/tmp/diskkit-{os.geteuid()}"


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks): a pid's identity over reuse."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _record_server(argv: Sequence[str], dirs: Sequence[str]) -> str | None:
    """Write down a server about to be spawned (owner, private directories; its pid once
    known, :func:`_record_pid`) in ``<run root>/servers/`` so ``diskkit cleanup`` can end it
    and remove its directories after a crash. Written *before* the server starts, so a kill
    at any moment after leaves a record. Best effort: an unwritable run directory only costs
    that safety net."""
    try:
        d = os.path.join(_run_root(), "servers")
        path = os.path.join(d, f"{os.getpid()}-{os.urandom(4).hex()}.json")
        for attempt in (1, 2):  # another diskkit may remove the empty directory meanwhile
            os.makedirs(d, mode=0o700, exist_ok=True)
            try:
                _write_record(path, {
                    "pid": None, "start": None, "argv": list(argv), "owner": os.getpid(),
                    "owner_start": _start_time(os.getpid()),
                    "dirs": [os.path.abspath(x) for x in dirs]})
                return path
            except FileNotFoundError:
                if attempt == 2:
                    raise
    except OSError as exc:
        log.debug("cannot record server %s: %s", argv[0], exc)
    return None


def _write_record(path: str, info: dict[str, Any]) -> None:
    """Write a record whole (a temporary name, then rename: cleanup reads only *.json)."""
    tmp = os.path.splitext(path)[0] + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(info))
    os.replace(tmp, path)


def _record_pid(path: str | None, pid: int) -> None:
    """Add the started server's pid and start time to its record."""
    if path is None:
        return
    try:
        with open(path, encoding="utf-8") as f:
            info = json.loads(f.read())
        info.update(pid=pid, start=_start_time(pid))
        _write_record(path, info)
    except (OSError, ValueError) as exc:
        log.debug("cannot record server pid %s: %s", pid, exc)


def _drop_record(path: str | None) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))  # only when no other server is recorded


def _alive(pid: Any, start: Any) -> bool:
    return isinstance(pid, int) and pid > 0 and start is not None and _start_time(pid) == start


def _safe_dir(path: str) -> bool:
    """Only diskkit's own private directories are ever removed by cleanup."""
    import tempfile

    name = os.path.basename(path.rstrip("/"))
    parent = os.path.dirname(os.path.abspath(path))
    return name.startswith("diskkit-") and parent in (tempfile.gettempdir(), "/tmp",
                                                       str(run_root()))


def reap_servers() -> list[dict[str, Any]]:
    """End the servers a crashed diskkit left (its pid gone, the server's still there, both
    checked by start time so a reused pid is never touched) and remove their private
    directories. Returns one dict per record handled: pid, argv (program only), killed,
    removed directories."""
    d = run_root() / "servers"
    out: list[dict[str, Any]] = []
    for rec in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            info = json.loads(rec.read_text())
        except (OSError, ValueError):
            info = {}
        if _alive(info.get("owner"), info.get("owner_start")):
            continue  # its diskkit still runs and will end it
        killed = False
        pid = info.get("pid")
        if _alive(pid, info.get("start")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _start_time(pid) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            killed = True
        removed = []
        for path in info.get("dirs", []):
            if isinstance(path, str) and _safe_dir(path) and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        with contextlib.suppress(OSError):
            rec.unlink()
        argv = info.get("argv") or ["?"]
        out.append({"pid": pid, "program": str(argv[0]), "killed": killed, "removed": removed})
    for tmp in sorted(d.glob("*.tmp")) if d.is_dir() else []:  # a record half-written
        owner = tmp.name.split("-", 1)[0]
        if not (owner.isdigit() and _start_time(int(owner)) is not None):
            with contextlib.suppress(OSError):
                tmp.unlink()
    with contextlib.suppress(OSError):
        d.rmdir()
    out += _orphan_dirs()
    return out


#: Private directories of servers (readers/nbd.py) that no record names are removed by
#: cleanup once this old and unused: a diskkit killed between making one and starting its
#: server leaves it unrecorded.
ORPHAN_AGE = 600.0


def _orphan_dirs() -> list[dict[str, Any]]:
    import pathlib
    import tempfile

    tmp = tempfile.gettempdir()
    candidates = []
    now = time.time()
    for path in sorted(pathlib.Path(tmp).glob("diskkit-nbd-*")):
        try:
            st = path.lstat()
        except OSError:
            continue
        if path.is_dir() and not path.is_symlink() and st.st_uid == os.geteuid() and \
                now - st.st_mtime > ORPHAN_AGE:
            candidates.append(str(path))
    if not candidates:
        return []
    used: set[str] = set()
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        used.update(c for c in candidates if c in cmd)
    out = []
    for c in candidates:
        if c not in used and _safe_dir(c):
            shutil.rmtree(c, ignore_errors=True)
            out.append({"pid": None, "program": "(none)", "killed": False, "removed": [c]})
    return out


def _fmt(argv: Sequence[str]) -> str:
    import shlex

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
    # stderr is drained by a thread that keeps only its tail: a tool fed a hostile image can
    # print gigabytes of diagnostics (qemu-img check printed 1.5 GB for a crafted 400 KB
    # qcow2), and holding them would be memory in proportion to the image.
    return _run(argv, exe, timeout, check, input, full_env, cwd, binary, started)


class _Tail:
    """Drains a pipe in a thread, keeping its last :data:`STDERR_TAIL` bytes."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._buf = bytearray()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while chunk := self._pipe.read(65536):
            self._buf += chunk
            if len(self._buf) > 2 * STDERR_TAIL:
                del self._buf[:-STDERR_TAIL]

    def result(self) -> bytes:
        """Wait for the end of the pipe (a few seconds at most: a daemon the command left
        behind may hold it open); the tail."""
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self._pipe.close()
        return bytes(self._buf[-STDERR_TAIL:])


def _run(argv: list[str], exe: str, timeout: float, check: bool, input: bytes | None,
         full_env: dict[str, str] | None, cwd: str | None, binary: bool, started: float
         ) -> Result:
    try:
        proc = subprocess.Popen(
            [exe, *argv[1:]],
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup(),  # prctl only: no lock taken
        )
    except FileNotFoundError as exc:
        raise _missing(argv[0]) from exc
    assert proc.stderr is not None
    tail = _Tail(proc.stderr)
    proc.stderr = None  # communicate() reads stdout only; the thread has stderr
    try:
        out, _ = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        out, _ = proc.communicate()
        err = tail.result()
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
    stderr = tail.result().decode(errors="replace")
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
    dirs: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a long-running program (a server) for the duration of a ``with`` block.

    The process runs in its own session; on every exit from the block (Ctrl-C included) its
    whole process group is terminated and reaped, so no server outlives its user. If diskkit
    itself dies (even by SIGKILL), the kernel kills the child (PR_SET_PDEATHSIG), and the
    server is written down in the run directory with its private ``dirs`` so
    :func:`reap_servers` (``diskkit cleanup``) can remove what is left.
    """
    argv = [str(a) for a in argv]
    exe = require(argv[0]) if os.sep not in argv[0] else argv[0]
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    log.info("spawn: %s", _fmt(argv))
    record = _record_server(argv, dirs)
    try:
        proc = subprocess.Popen(
            [exe, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup(),  # prctl only: no lock taken
        )
    except FileNotFoundError as exc:
        _drop_record(record)
        raise _missing(argv[0]) from exc
    except BaseException:
        _drop_record(record)
        raise
    _record_pid(record, proc.pid)
    try:
        yield proc
    finally:
        _kill_group(proc)
        _drop_record(record)
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
