"""Readers over NBD, with python3-libnbd: a server the user names (``nbd://``, ``nbd+unix://``),
or a private ``qemu-nbd`` serving any format qemu reads (vmdk, vpc, vhdx, vdi, qed...).

Extents come from NBD block status on the ``base:allocation`` context (NBD protocol,
"Metadata querying": bit 0 NBD_STATE_HOLE, bit 1 NBD_STATE_ZERO); a range is "no data" only
when the server says it reads as zeros.

The private server is started with an explicit ``-f FORMAT`` and the image given as a
``json:`` filename whose ``file`` child is the ``file`` protocol driver, so nothing in the path
is ever taken for a protocol or an option, and (unless the caller allows it) with
``"backing": null`` so qemu opens no backing file the image names. VMDK descriptor files (whose
extents are host files) and qcow2 images with an external data file are refused before qemu
sees them. The server, its socket and its private directory are removed on :meth:`close`, on
every error, and at interpreter exit (a finalizer) if the caller forgot.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterator
from typing import Any

from diskkit.errors import HostError, ImageError, UserError
from diskkit.formats import registry
from diskkit.readers.base import Extent, Reader
from diskkit.readers.raw import open_readonly
from diskkit.runner import spawn
from diskkit.target import Target, load

#: Seconds to wait for a server to accept and finish the handshake.
CONNECT_TIMEOUT = 15.0
#: Largest single NBD read (qemu-nbd refuses requests over 32 MiB).
MAX_REQUEST = 16 << 20
#: Largest block status request (the classic protocol's count is 32 bits).
MAX_STATUS = 1 << 30


_UNREACHABLE = frozenset({"ECONNREFUSED", "ENOENT", "EHOSTUNREACH", "ENETUNREACH", "ECONNRESET",
                          "ENOTSOCK", "ETIMEDOUT", "EADDRNOTAVAIL"})


def _nbd() -> Any:
    return load("nbd:NBD", "python3-libnbd")


class _NbdReader(Reader):
    """What both NBD readers share: a connected libnbd handle."""

    _handle: Any = None

    def _connect(self, uri: str, *, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect to ``uri`` read-only, asking for base:allocation, within ``timeout``."""
        import nbd

        h = _nbd()()
        h.add_meta_context("base:allocation")
        h.set_uri_allow_local_file(False)  # never let a URI name a local file
        deadline = time.monotonic() + timeout
        try:
            h.aio_connect_uri(uri)
            while not h.aio_is_ready():
                if h.aio_is_dead() or h.aio_is_closed():
                    raise nbd.Error("connection closed during the handshake")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HostError(f"{uri}: the NBD server did not answer within {timeout:g} s",
                                    code="nbd-timeout", hint="check that the server is running")
                h.poll(max(1, int(left * 1000)))
        except nbd.Error as exc:
            with contextlib.suppress(Exception):
                h.close()
            # libnbd gives errno as its name ("ENOENT"), older versions as a number.
            code = exc.errno if isinstance(exc.errno, str) else errno.errorcode.get(
                exc.errno or 0, "")
            if code in _UNREACHABLE:
                raise UserError(f"{uri}: no NBD server there ({exc.string})",
                                code="nbd-unreachable",
                                hint="start the server, or check the host, port and socket"
                                ) from None
            raise HostError(f"{uri}: cannot connect: {exc.string}", code="nbd-connect") from None
        except BaseException:
            with contextlib.suppress(Exception):
                h.close()
            raise
        self._handle = h
        self.size = h.get_size()
        self._allocation = bool(h.can_meta_context("base:allocation"))
        # The server's minimum block size (qemu-nbd: 512 for vhdx...): reads are aligned to it.
        import nbd as _nbd_mod

        self._align = max(1, h.get_block_size(_nbd_mod.SIZE_MINIMUM) or 1)

    def _read(self, offset: int, length: int) -> bytes:
        start = offset - offset % self._align
        end = min(self.size, -(-(offset + length) // self._align) * self._align)
        if start == offset and end == offset + length:
            return self._pread(offset, length)
        return self._pread(start, end - start)[offset - start : offset - start + length]

    def _pread(self, offset: int, length: int) -> bytes:
        import nbd

        chunks = []
        try:
            while length:
                n = min(length, MAX_REQUEST)
                chunks.append(self._handle.pread(n, offset))
                offset += n
                length -= n
        except nbd.Error as exc:
            raise HostError(f"{self.name}: NBD read at {offset} failed: {exc.string}",
                            code="nbd-io") from None
        return b"".join(chunks)

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        """Extents from NBD block status (all data when the server lacks base:allocation).

        Block status is asked once per :data:`MAX_STATUS` window and kept: every later call
        (detection, layout, the blank check, each is_zero) is answered from memory."""
        end = self.size if length is None else min(self.size, offset + length)
        if not self._allocation:
            yield from super().extents(offset, end - offset)
            return
        pos = offset
        while pos < end:
            window = pos // MAX_STATUS
            for ext in self._window_status(window):
                stop = min(ext.end, end)
                if stop > pos and ext.offset <= pos:
                    yield Extent(pos, stop - pos, ext.data)
                    pos = stop
            pos = max(pos, min(end, (window + 1) * MAX_STATUS))

    def _window_status(self, window: int) -> list[Extent]:
        """Block status of ``[window * MAX_STATUS, ...)``, covering it whole (cached)."""
        cache: dict[int, list[Extent]] = self.__dict__.setdefault("_status", {})
        if window in cache:
            return cache[window]
        import nbd

        start = window * MAX_STATUS
        end = min(self.size, start + MAX_STATUS)
        out: list[Extent] = []
        pos = start
        while pos < end:
            got: list[Extent] = []

            def collect(_ctx: str, at: int, entries: list[int], _err: Any,
                        got: list[Extent] = got) -> int:
                if _ctx != "base:allocation":
                    return 0
                for i in range(0, len(entries) - 1, 2):
                    n, flags = entries[i], entries[i + 1]
                    got.append(Extent(at, n, not flags & nbd.STATE_ZERO))
                    at += n
                return 0

            try:
                self._handle.block_status(end - pos, pos, collect)
            except nbd.Error as exc:
                raise HostError(f"{self.name}: NBD block status failed: {exc.string}",
                                code="nbd-io") from None
            if not got or got[0].length == 0:
                out.append(Extent(pos, end - pos, True))  # the server said nothing: data
                break
            for ext in got:
                stop = min(ext.end, end)
                if stop > pos:
                    if out and out[-1].data == ext.data and out[-1].end == pos:
                        out[-1] = Extent(out[-1].offset, stop - out[-1].offset, ext.data)
                    else:
                        out.append(Extent(pos, stop - pos, ext.data))
                    pos = stop
        cache[window] = out
        return out

    def close(self) -> None:
        """Disconnect."""
        h, self._handle = self._handle, None
        if h is not None:
            with contextlib.suppress(Exception):
                h.shutdown()
            with contextlib.suppress(Exception):
                h.close()


class NbdUriReader(_NbdReader):
    """A disk served by an NBD server the user names (``nbd://HOST[:PORT]/EXPORT`` or
    ``nbd+unix:///EXPORT?socket=PATH``), read-only."""

    def __init__(self, target: Target | str, *, timeout: float = CONNECT_TIMEOUT) -> None:
        uri = target if isinstance(target, str) else (target.uri or target.spec)
        self.name = uri
        self._connect(uri, timeout=timeout)


class _Server:
    """The private qemu-nbd and its directory; ``stop`` is idempotent (also a finalizer)."""

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()
        self.tmpdir = tempfile.mkdtemp(prefix="diskkit-nbd-")  # mode 0700
        self.proc: Any = None

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.stack.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _refuse_external_files(path: str, fmt: str) -> None:
    """Refuse images whose format makes qemu open files named inside them (not backing)."""
    from diskkit.readers.raw import FileReader

    with FileReader(path) as f:
        head = f.read(0, 64 * 1024)
        size = f.size
    if fmt == "vmdk" and head[:4] != b"KDMV":
        raise ImageError(f"{path}: a VMDK descriptor file names its extents as host files; "
                         "opening files an image names is refused", code="vmdk-extent-file",
                         hint="convert it on a trusted host, or allow it explicitly")
    if fmt == "qcow2" and head[:4] == b"QFI\xfb":
        from diskkit.formats.qcow2 import parse_header

        if parse_header(head, size).has_data_file:
            raise ImageError(f"{path}: the qcow2 image keeps its data in an external file; "
                             "opening files an image names is refused", code="qcow2-data-file")


class QemuNbdReader(_NbdReader):
    """The guest-visible disk of ``path`` in format ``fmt``, served by a private qemu-nbd.

    ``allow_backing`` lets qemu open the files the image names (its backing file, a VMDK
    descriptor's extents, a qcow2 data file): only for trusted images.
    """

    def __init__(self, path: str, fmt: str, *, allow_backing: bool = False,
                 timeout: float = CONNECT_TIMEOUT) -> None:
        self.path = path
        self.format = fmt
        self.name = f"{path} ({fmt})"
        os.close(open_readonly(path))  # a missing or unreadable file is the user's error
        if not allow_backing:
            _refuse_external_files(path, fmt)
        server = self._server = _Server()
        self._finalizer = weakref.finalize(self, server.stop)
        try:
            self._start(server, allow_backing, timeout)
            try:
                self._connect(f"nbd+unix:///?socket={self._socket}", timeout=timeout)
            except (UserError, HostError):
                # qemu-nbd may listen before it opens the image: say why it went away.
                with contextlib.suppress(Exception):
                    server.proc.wait(timeout=2)
                if server.proc.poll() is None:
                    raise
                raise self._refused(server) from None
        except BaseException:
            self.close()
            raise

    def _start(self, server: _Server, allow_backing: bool, timeout: float) -> None:
        spec: dict[str, Any] = {"driver": self.format,
                                "file": {"driver": "file", "filename": os.path.abspath(self.path)}}
        info = registry.by_qemu(self.format)
        if not allow_backing and (info is None or info.qemu_backing):
            spec["backing"] = None
        self._socket = os.path.join(server.tmpdir, "nbd.sock")
        log_path = os.path.join(server.tmpdir, "qemu-nbd.log")
        log = server.stack.enter_context(open(log_path, "wb"))  # noqa: SIM115 (stack closes it)
        argv = ["qemu-nbd", "--read-only", "--persistent", "-f", self.format,
                "-k", self._socket, "json:" + json.dumps(spec)]
        proc = server.stack.enter_context(spawn(argv, stderr=log.fileno(),
                                                dirs=[server.tmpdir]))
        server.proc = proc
        deadline = time.monotonic() + timeout
        while not os.path.exists(self._socket):
            if proc.poll() is not None:
                raise self._refused(server)
            if time.monotonic() > deadline:
                raise HostError(f"{self.name}: qemu-nbd did not start within {timeout:g} s",
                                code="nbd-timeout")
            time.sleep(0.02)

    def _refused(self, server: _Server) -> ImageError:
        """The error for a qemu-nbd that exited: the last line it wrote."""
        try:
            with open(os.path.join(server.tmpdir, "qemu-nbd.log"), "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        last = lines[-1] if lines else f"exit {server.proc.returncode}"
        return ImageError(f"{self.name}: qemu-nbd cannot open it: {last}",
                          code="qemu-nbd-refused")

    def close(self) -> None:
        """Disconnect, stop qemu-nbd and remove its socket directory."""
        super().close()
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
