"""Raw files and block devices: pread, and SEEK_DATA/SEEK_HOLE for the allocated extents."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from collections.abc import Iterator
from typing import NoReturn

from diskkit.errors import UserError
from diskkit.readers.base import Extent, Reader

_BLKGETSIZE64 = 0x80081272  # <linux/fs.h>: _IOR(0x12, 114, size_t)


def _device_size(fd: int) -> int:
    buf = fcntl.ioctl(fd, _BLKGETSIZE64, b"\0" * 8)
    return struct.unpack("<Q", buf)[0]


def open_readonly(path: str) -> int:
    """Open ``path`` read-only, turning the usual failures into one clear :class:`UserError`.

    Only regular files, block devices (and directories, for the caller's own message) are
    opened: a FIFO, a socket or a character device (``/dev/null``, a tty) is refused at once
    (``O_NONBLOCK``, so opening a FIFO never waits for a writer) with ``not-a-disk-file``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a device with nothing behind it
            raise UserError(f"{path}: not a disk image file (a socket or a device)",
                            code="not-a-disk-file") from None
        _raise_open_error(path, exc)
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode)):
        os.close(fd)
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a character device" if stat.S_ISCHR(mode) else "not a regular file")
        raise UserError(f"{path}: {kind}, not a disk image (diskkit reads regular files and "
                        "block devices)", code="not-a-disk-file")
    os.set_blocking(fd, True)
    return fd


def _raise_open_error(path: str, exc: OSError) -> NoReturn:
    """Raise the :class:`UserError` for a failed open of ``path``."""
    if isinstance(exc, FileNotFoundError):
        raise UserError(f"{path}: no such file", code="not-found") from None
    if isinstance(exc, PermissionError):
        raise UserError(f"{path}: permission denied", code="permission-denied",
                        hint="run as a user who can read it") from None
    if isinstance(exc, IsADirectoryError):
        raise UserError(f"{path}: is a directory, not an image", code="is-a-directory") from None
    raise UserError(f"{path}: cannot open: {exc.strerror}", code="cannot-open") from None


class FileReader(Reader):
    """The bytes of a regular file or a block device, opened read-only."""

    concurrent_reads = True  # pread/preadv on one descriptor, no shared offset

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = path
        self._fd = open_readonly(path)
        try:
            st = os.fstat(self._fd)
            if stat.S_ISDIR(st.st_mode):
                raise UserError(f"{path}: is a directory, not an image", code="is-a-directory")
            self.is_block_device = stat.S_ISBLK(st.st_mode)
            self.size = _device_size(self._fd) if self.is_block_device else st.st_size
            #: Bytes the file occupies on the host (allocated blocks), for ``actual_size``.
            self.allocated = st.st_blocks * 512 if not self.is_block_device else self.size
        except BaseException:
            os.close(self._fd)
            raise

    def _read(self, offset: int, length: int) -> bytes:
        chunks = []
        while length:
            data = os.pread(self._fd, length, offset)
            if not data:  # the file shrank under us: the rest reads as zeros
                chunks.append(b"\0" * length)
                break
            chunks.append(data)
            offset += len(data)
            length -= len(data)
        return b"".join(chunks)

    def readinto(self, offset: int, buf: memoryview) -> int:
        """``preadv`` straight into ``buf`` (up to the end of the file)."""
        want = min(len(buf), max(0, self.size - offset))
        done = 0
        while done < want:
            got = os.preadv(self._fd, [buf[done:want]], offset + done)
            if not got:  # the file shrank under us
                break
            done += got
        return done

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        end = self.size if length is None else min(self.size, offset + length)
        pos = offset
        while pos < end:
            try:
                data = os.lseek(self._fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos: the rest is a hole
                    yield Extent(pos, end - pos, False)
                    return
                if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # no hole support
                    yield Extent(pos, end - pos, True)
                    return
                raise
            if data >= end:
                yield Extent(pos, end - pos, False)
                return
            if data > pos:
                yield Extent(pos, data - pos, False)
            try:
                hole = min(os.lseek(self._fd, data, os.SEEK_HOLE), end)
            except OSError:
                hole = end
            yield Extent(data, hole - data, True)
            pos = hole

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
