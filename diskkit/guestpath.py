"""Guest paths resolved inside the guest root, never on the host.

A mounted image's files are the guest's: an absolute symlink ``/etc/fstab -> /etc/shadow`` in
the image means the *guest's* /etc/shadow. Joining the path onto the mountpoint and calling
``open`` would follow it on the host. Everything diskkit opens inside a mounted guest goes
through this module instead:

- :func:`read_file` / :func:`open_file`: a regular file only (``O_NONBLOCK`` then an
  ``fstat`` S_ISREG check, so a FIFO or a device never blocks or opens), at most ``limit``
  bytes.
- :func:`resolve`: the host path of a guest directory or file, with every symlink resolved
  inside the root (for mountpoints of sub-filesystems).
- :func:`kind`: "file", "dir", "link", "other" or None, without following the last link.

Resolution uses ``openat2(2)`` with ``RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`` (Linux 5.6+): the
kernel treats the root as "/" for absolute links and ``..``. Where openat2 is missing, or where
it cannot follow links at all (diskkit's mounts are ``nosymfollow``: ELOOP), a component walk
does the same in user space: each component opened with ``O_PATH | O_NOFOLLOW`` relative to its
parent, symlinks read with ``readlinkat`` and resolved against the root, ``..`` never above it,
at most :data:`MAX_LINKS` links.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from diskkit.errors import ImageError, UserError

#: Largest number of symlinks followed in one resolution (Linux's MAXSYMLINKS).
MAX_LINKS = 40
#: Default bound on the bytes :func:`read_file` returns.
DEFAULT_LIMIT = 1 << 20

_SYS_OPENAT2 = 437  # the same number on every architecture (asm-generic unified table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc: ctypes.CDLL | None = None
_openat2_ok: bool | None = None


def _openat2(dirfd: int, path: str, flags: int) -> int:
    """openat2(dirfd, path, {flags, 0, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS}); OSError."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(flags, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), ctypes.c_char_p(os.fsencode(path)),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def _loop(path: str) -> ImageError:
    return ImageError(f"{path}: too many levels of symbolic links in the image",
                      code="symlink-loop")


def _walk(rootfd: int, path: str, flags: int, follow_last: bool = True) -> int:
    """The user-space resolution (see the module docstring): an fd opened with ``flags`` on
    the last component (``O_PATH`` for directories on the way)."""
    parts = [p for p in path.split("/") if p]
    stack = [os.dup(rootfd)]  # fds of the directories resolved so far; stack[0] is the root
    links = 0
    try:
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not parts
            fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode) and (follow_last or not last):
                os.close(fd)
                links += 1
                if links > MAX_LINKS:
                    raise _loop(path)
                target = os.readlink(part, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts = [p for p in target.split("/") if p] + parts
                continue
            if last:
                if flags & os.O_PATH:
                    return fd
                os.close(fd)
                # The last component, a regular file by now: open it for reading without
                # following anything (a race that swapped it for a link gives ELOOP).
                return os.open(part, flags | os.O_NOFOLLOW, dir_fd=stack[-1])
            if not stat.S_ISDIR(mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(fd)
        return os.dup(stack[-1]) if flags & os.O_PATH else os.open(
            ".", flags, dir_fd=stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def _open(root: str, path: str, flags: int, follow_last: bool = True) -> int:
    """An fd of guest ``path`` under the host directory ``root`` (see the module docstring)."""
    global _openat2_ok
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if follow_last and _openat2_ok is not False:
            try:
                return _openat2(rootfd, path.lstrip("/") or ".", flags)
            except OSError as exc:
                if exc.errno in (errno.ENOSYS, errno.EPERM) and _openat2_ok is None:
                    _openat2_ok = False  # no openat2 (or a seccomp filter refusing it)
                elif exc.errno != errno.ELOOP:
                    raise
                # ELOOP: a nosymfollow mount, or a real loop: the walk tells which.
            else:
                _openat2_ok = True
        return _walk(rootfd, path, flags, follow_last)
    finally:
        os.close(rootfd)


def _translate(exc: OSError, path: str) -> Exception:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return UserError(f"{path}: no such file in the image", code="not-found")
    if exc.errno == errno.ELOOP:
        return _loop(path)
    return UserError(f"{path}: cannot open it in the image: {exc.strerror}",
                     code="guest-file-unreadable")


def open_file(root: str, path: str) -> int:
    """A read-only fd of the regular file guest ``path`` under ``root``.

    Never blocks (``O_NONBLOCK``, cleared again for a regular file) and never opens a FIFO,
    socket or device: those give :class:`UserError` ``not-a-regular-file``. A missing file
    gives ``not-found``; a symlink loop :class:`ImageError` ``symlink-loop``.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = _open(root, path, flags)
    except OSError as exc:
        raise _translate(exc, path) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UserError(f"{path}: not a regular file in the image", code="not-a-regular-file")
    os.set_blocking(fd, True)
    return fd


def read_file(root: str, path: str, limit: int = DEFAULT_LIMIT, *,
              truncate: bool = False) -> bytes:
    """The bytes of the regular file guest ``path`` under ``root`` (see :func:`open_file`).

    A file larger than ``limit`` bytes gives :class:`ImageError` ``guest-file-too-large``, or
    its first ``limit`` bytes with ``truncate``.
    """
    fd = open_file(root, path)
    try:
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        if not truncate:
            raise ImageError(f"{path}: larger than {limit} bytes in the image",
                             code="guest-file-too-large")
        data = data[:limit]
    return data


def kind(root: str, path: str) -> str | None:
    """"file", "dir", "link", "other" (FIFO, device, socket) or None (missing) for guest
    ``path``; the directories on the way are resolved inside the root, the last component is
    not followed."""
    parent, _, name = path.rstrip("/").rpartition("/")
    if not name:
        return "dir"
    try:
        fd = _open(root, parent or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(fd)
    if stat.S_ISLNK(st.st_mode):
        return "link"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def is_file(root: str, path: str) -> bool:
    """True when guest ``path`` (links followed inside the root) is a regular file."""
    try:
        fd = _open(root, path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ImageError):
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def is_dir(root: str, path: str) -> bool:
    """True when guest ``path`` (links followed inside the root) is a directory."""
    try:
        fd = _open(root, path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ImageError):
        return False
    try:
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def resolve(root: str, path: str) -> str:
    """The host path of guest ``path`` under ``root`` with every symlink resolved inside the
    root (the path need not exist past its first missing component)."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        if os.path.islink(host):
            links += 1
            if links > MAX_LINKS:
                raise _loop(path)
            target = os.readlink(host)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)
