"""One conversion, start to finish: plan, write under a temporary name, verify, rename.

The output is never visible under its final name until qemu-img has finished, the output is
on disk, and the verification (verify.py: diskkit's own readers where it reads both sides,
``qemu-img compare`` otherwise) has found the guest-visible content (and size) identical.
A new local file is written with ``-t unsafe`` (no flush per format-driver flush) while
diskkit starts its write-back as the data comes (writeback.py), then fsynced once while the
verification reads it from the page cache (the two overlap: one is disk-bound, the other
memory- and CPU-bound), then linked or renamed into place and the directory fsynced: the
durability of ``qemu-img convert`` followed by ``fsync``. On any failure or interruption
(Ctrl-C, SIGTERM, a cancelled batch) qemu-img's process group is killed first and then the
partial output (the temporary file, or the temporary RBD image) is removed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diskkit.errors import ImageError, UserError
from diskkit.findings import Finding
from diskkit.target import Target, parse_target

from . import plan, qemuimg
from .progress import FINISH, Progress, Tracker
from .writeback import Writeback

if TYPE_CHECKING:
    from .osdverify import Connecting
    from .rbdcopy import RbdCopy

#: Slowest throughput (bytes/s) a conversion is allowed before its timeout kills it.
MIN_RATE = 2 << 20
#: Every conversion gets at least this long (seconds).
MIN_TIMEOUT = 600.0


class Refused(Exception):
    """The source is hostile: ``findings`` say why (the CLI exits 1 with them)."""

    def __init__(self, source: str, findings: tuple[Finding, ...]) -> None:
        super().__init__(f"{source}: refused: " + "; ".join(f.code for f in findings))
        self.source = source
        self.findings = findings


@dataclass(frozen=True)
class Request:
    """What to convert, and how."""

    source: str
    target: str
    out_format: str
    src_format: str | None = None
    compress: bool = False
    preallocate: bool = False
    verify: bool = True
    force: bool = False
    allow_unsafe: bool = False
    coroutines: int = 16
    options: tuple[str, ...] = ()
    #: RBD targets: create the image with librbd and pass ``-n --target-is-zero`` (True), or
    #: let qemu-img create it (False). Both verified; the first measured faster
    #: (docs/benchmarks.md "## Conversion").
    rbd_precreate: bool = True
    #: Verification with ``qemu-img compare -s`` (strict): also fails where one image has
    #: data and the other unallocated zeros. Off by default (sparse outputs differ there).
    strict_verify: bool = False
    #: ``-W`` (out-of-order writes): None = diskkit's measured choice per target
    #: (:func:`diskkit.convert.qemuimg.out_of_order`).
    out_of_order: bool | None = None
    #: What copies into a new RBD image: None = diskkit itself where it reads the source
    #: (raw, qcow2: rbdcopy.py, measured faster), "qemu-img" = always qemu-img convert.
    copier: str | None = None


@dataclass
class Result:
    """What a conversion did (the JSON shape in docs/json.md "convert")."""

    source: str
    target: str
    source_format: str
    target_format: str
    virtual_size: int | None
    required_bytes: int
    available_bytes: int | None
    target_bytes: int | None = None
    convert_seconds: float = 0.0
    verify_seconds: float = 0.0
    #: Seconds after qemu-img exited until the output was on disk and verified (the fsync
    #: and the comparison overlap), renamed and the directory synced.
    finish_seconds: float = 0.0
    verified: bool | None = None
    #: How it was verified: "digest" (the source hashed during the copy, the output after,
    #: by diskkit's readers and librbd), "qemu-img" (qemu-img compare); None without
    #: verification.
    verify_method: str | None = None
    #: What copied the data: "qemu-img" (``command``) or "diskkit" (into RBD, in process
    #: through librbd: rbdcopy.py; ``command`` is then empty).
    copied_by: str = "qemu-img"
    command: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Wall time of the copy plus everything until the output was published."""
        return self.convert_seconds + self.finish_seconds

    def to_json(self) -> Any:
        """Exactly what the command prints with --json (:func:`diskkit.jsonable.jsonable`)."""
        from diskkit.jsonable import jsonable

        return jsonable(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        rate = (self.virtual_size or 0) / self.convert_seconds if self.convert_seconds else None
        return {"status": "converted", "source": self.source, "target": self.target,
                "source_format": openstack_name(self.source_format),
                "target_format": openstack_name(self.target_format),
                "virtual_size": self.virtual_size, "required_bytes": self.required_bytes,
                "available_bytes": self.available_bytes, "target_bytes": self.target_bytes,
                "convert_seconds": round(self.convert_seconds, 3),
                "verify_seconds": round(self.verify_seconds, 3),
                "finish_seconds": round(self.finish_seconds, 3),
                "seconds": round(self.seconds, 3),
                "throughput_bytes_per_second": int(rate) if rate else None,
                "verified": self.verified, "verify_method": self.verify_method,
                "copied_by": self.copied_by, "command": self.command,
                "findings": [f.to_dict() for f in self.findings]}


def openstack_name(fmt: str) -> str:
    """The OpenStack/diskkit name of a format or qemu driver name (``vpc`` -> ``vhd``), as
    every command's JSON says it (docs/json.md)."""
    from diskkit.formats import registry

    info = registry.lookup(fmt)
    return info.name if info is not None else fmt


def _say(message: str) -> None:
    sys.stderr.write(f"diskkit: {message}\n")
    sys.stderr.flush()


def _temp_name(name: str) -> str:
    return f".{name}.diskkit-partial-{os.getpid()}-{threading.get_ident() % 100000}"


class _Output:
    """Where qemu-img writes, and how to publish or discard it."""

    def __init__(self, dst: Target, room: plan.Room, force: bool) -> None:
        self.dst, self.room, self.force = dst, room, force
        self.created = False
        self.temp: str | None
        if room.kind == "file":
            base = os.path.basename(dst.path or "")
            self.temp = os.path.join(room.directory or ".", _temp_name(base))
            self.qemu_name = self.temp
        elif room.kind == "rbd":
            self.temp = _temp_name(dst.image or "").lstrip(".")
            self.qemu_name = plan.rbd_spec(dst, self.temp)
        else:  # a block device or an NBD export: written in place
            self.temp = None
            self.qemu_name = plan.qemu_filename(dst)

    def discard(self) -> str | None:
        """Remove the partial output; return what was removed (None when nothing was)."""
        if self.room.kind == "file" and self.temp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
                return self.temp
        elif self.room.kind == "rbd" and self.temp:
            from . import rbdops

            if self.created or rbdops.exists(self.dst, self.temp):
                rbdops.remove(self.dst, self.temp)
                return plan.rbd_spec(self.dst, self.temp)
        return None

    def publish(self) -> None:
        """Give the finished output its final name (never replacing without ``force``)."""
        if self.room.kind == "file" and self.temp:
            final = self.dst.path or ""
            if self.force:
                os.replace(self.temp, final)
            else:
                try:
                    os.link(self.temp, final)
                except FileExistsError:
                    raise UserError(f"{final}: appeared while converting; not replaced",
                                    code="target-exists", hint="pass --force") from None
                os.unlink(self.temp)
            fd = os.open(self.room.directory or ".", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        elif self.room.kind == "rbd" and self.temp:
            from . import rbdops

            rbdops.rename(self.dst, self.temp, self.dst.image or "", replace=self.force)


def _target_bytes(dst: Target, kind: str) -> int | None:
    if kind == "file" and dst.path:
        return os.stat(dst.path).st_blocks * 512
    return None


def prepare(req: Request) -> tuple[plan.SourceFacts, plan.Measure, plan.Room, Target, str]:
    """Every check, before anything is written. Raises :class:`Refused` for a hostile
    source, :class:`UserError` for an existing target (without force) or one without room."""
    out_format = plan.qemu_format(req.out_format)
    if req.copier not in (None, "qemu-img"):
        raise UserError(f"copier {req.copier!r}: give None (diskkit chooses) or 'qemu-img'",
                        code="bad-option")
    dst = parse_target(req.target)
    if dst.kind == "rbd" and out_format != "raw":
        raise UserError(f"{req.target}: RBD images are written raw (-O raw)",
                        code="bad-option", hint="use -O raw for rbd: targets")
    # A cluster is asked (connection, image list, pool statistics) while the source is
    # inspected here: 20-30 ms of waiting on the monitors overlapped.
    asking = _Background("room", plan.room_for, dst) if dst.kind == "rbd" else None
    try:
        src = plan.inspect_source(req.source, req.src_format)
    except BaseException:
        if asking is not None:
            asking.join()  # the source's error is the one reported
        raise
    room = asking.result() if asking is not None else None
    if src.blocking and not req.allow_unsafe:
        raise Refused(req.source, src.blocking)
    if room is None:
        room = plan.room_for(dst)
    if room.exists and not req.force:
        raise UserError(f"{req.target}: exists; not overwritten", code="target-exists",
                        hint="pass --force to replace it")
    if src.target.kind == "file" and dst.kind == "file" and os.path.exists(req.target) \
            and os.path.samefile(req.source, req.target):
        raise UserError("the source and the target are the same file", code="bad-input")
    opts = qemuimg.check_options(req.options)
    m = plan.measure(src, out_format, opts)
    # A device or export must hold the whole output; a new file only what is allocated.
    full = req.preallocate or room.kind in ("device", "nbd")
    need = m.fully_allocated if full else m.required
    plan.check_room(dst, room, need)
    return src, m, room, dst, out_format


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Background(threading.Thread):
    """``fn(*args)`` in a thread (work that waits on a disk or a cluster: the GIL is
    released); :meth:`result` waits for it and re-raises its error."""

    def __init__(self, name: str, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__(name=f"diskkit-{name}", daemon=True)
        self.fn, self.args = fn, args
        self.value: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except BaseException as exc:  # re-raised by result()
            self.error = exc

    def result(self) -> Any:
        self.join()
        if self.error is not None:
            raise self.error
        return self.value


class _Verifier:
    """How the finished output is compared with its source (docs/convert.md, step 5), and
    the source digest that runs during the copy when that is the method (verify.py)."""

    def __init__(self, req: Request, src: plan.SourceFacts, out_format: str,
                 kind: str, copier: RbdCopy | None = None, timeout: float = MIN_TIMEOUT) -> None:
        from . import verify

        self.req, self.src, self.out_format, self.kind = req, src, out_format, kind
        self.method = "qemu-img"
        self.open_source: verify.Opener | None = None
        #: qemu-img map's reading of a qcow2 source against diskkit's, when diskkit copies
        #: (rbdcopy.check_mapping): (agree, message).
        self.map_check: _Background | None = None
        self.digest: verify.SourceDigest | RbdCopy | None = None
        self.connecting: Connecting | None = None  # an RBD output's OSD connection
        if copier is not None:  # the copy hashes what it writes
            from . import osdverify, rbdcopy

            self.method, self.open_source, self.digest = "digest", copier.open_source, copier
            self.connecting = osdverify.Connecting(parse_target(req.target))
            self.connecting.start()
            runs = copier.source_runs
            if runs is not None:  # runs beside the copy
                self.map_check = _Background("map-check", rbdcopy.check_mapping,
                                             src.target.path or "", lambda: iter(runs), timeout)
            return
        if src.target.kind == "file" and src.target.path and not req.strict_verify:
            self.method = verify.method(src.format, out_format,
                                        "file" if kind == "rbd" else kind, req.strict_verify)
            if self.method != "qemu-img":
                self.open_source = verify.opener(src.target.path, src.format)
                if self.open_source is None:
                    self.method = "qemu-img"
        if self.method == "digest" and self.open_source is not None:
            # An RBD output is checked by its OSDs, which hash with xxhash64 only
            # (osdverify.py): the source is hashed the same way.
            fn = None
            if kind == "rbd":
                from . import osdverify

                fn = osdverify.trimmed_digest
                self.connecting = osdverify.Connecting(parse_target(req.target))
                self.connecting.start()
            self.digest = verify.SourceDigest(self.open_source,
                                              verify.digest_workers(src.format), fn)
            self.digest.start()

    def close(self) -> None:
        """Stop the digest if it still runs; close an unused OSD connection."""
        if self.digest is not None:
            self.digest.cancel()
        if self.map_check is not None:
            self.map_check.join()
        if self.connecting is not None:
            self.connecting.close()

    def run(self, dst: Target, out: _Output, timeout: float) -> tuple[bool, str]:
        """(identical, message); ``qemu-img compare`` where diskkit does not read a side
        itself."""
        from diskkit.errors import DiskkitError

        from . import verify

        try:
            if self.open_source is not None and out.temp:
                if self.kind == "rbd" and self.digest is not None and \
                        self.connecting is not None:
                    from diskkit.readers.rbd import RbdReader

                    from . import osdverify

                    if self.map_check is not None:
                        agree, message = self.map_check.result()
                        if not agree:
                            return False, message
                    image = osdverify.image_target(dst, out.temp)
                    verdict = osdverify.compare_on_osds(self.open_source, self.digest, image,
                                                        self.connecting)
                    if verdict is not None:
                        return verdict
                    # Not a plain layout, or OSDs without the op: read the image back.
                    return verify.compare_digests(self.open_source, self.digest,
                                                  lambda: RbdReader(image),
                                                  workers=verify.IN_FLIGHT)
                open_target = verify.opener(out.temp, self.out_format)
                if open_target is not None and self.digest is not None:
                    return verify.compare_digests(self.open_source, self.digest, open_target)
        except DiskkitError:
            pass  # a side diskkit does not read after all: qemu-img compares (below)
        self.method = "qemu-img"
        return qemuimg.compare(plan.qemu_filename(self.src.target), self.src.format,
                               out.qemu_name, self.out_format, timeout=timeout,
                               strict=self.req.strict_verify)


def _in_process_copy(req: Request, src: plan.SourceFacts, dst: Target, out: _Output,
                     precreate: bool) -> RbdCopy | None:
    """diskkit's own copier into the new RBD image (rbdcopy.py), holding for a verified
    qcow2 source its mapping (to check against qemu-img map's) and the reader that read it;
    None where qemu-img copies: another target or source format, options for qemu-img, a
    source diskkit does not read whole (backing or data file, compressed clusters, which
    qemu-img map cannot place)."""
    from . import rbdcopy

    if req.copier == "qemu-img" or not precreate or not out.temp or req.compress or \
            req.preallocate or req.options or req.strict_verify or \
            src.target.kind != "file" or not src.target.path or \
            src.format not in rbdcopy.FORMATS:
        return None
    from diskkit.errors import DiskkitError

    from . import osdverify, verify

    open_source = verify.opener(src.target.path, src.format)
    if open_source is None:
        return None
    reader = runs = None
    if src.format == "qcow2" and req.verify:
        reader = open_source()
        try:
            runs = list(reader.host_runs())  # type: ignore[attr-defined]
        except BaseException as exc:
            reader.close()
            if isinstance(exc, DiskkitError):
                return None
            raise
    rate = os.environ.get(qemuimg.RATE_LIMIT_ENV)  # the same limit qemu-img gets (-r)
    return rbdcopy.RbdCopy(open_source, osdverify.image_target(dst, out.temp),
                           hash_pieces=req.verify, rate=int(rate) if rate else None,
                           in_flight=req.coroutines, reader=reader, source_runs=runs)


def _finish(result: Result, verifier: _Verifier | None, dst: Target, out: _Output,
            kind: str, timeout: float) -> None:
    """After qemu-img: the fsync (in the background) and the verification, overlapped;
    then the output is published under its final name."""
    sync = _Background("fsync", _fsync_path, out.temp) if kind == "file" and out.temp \
        else None
    try:
        if verifier is not None:
            started = time.monotonic()
            same, message = verifier.run(dst, out, timeout)
            result.verify_seconds = time.monotonic() - started
            result.verify_method = verifier.method
            if not same:
                raise ImageError(f"verification failed: {message}", code="verify-failed",
                                 hint="the output was removed; check the source with "
                                 "qemu-img check")
            result.verified = True
    finally:
        if sync is not None:
            sync.result()
    if kind == "device" and dst.path:
        _fsync_path(dst.path)  # -t writeback flushed qemu's writes; the device cache too
    out.publish()


def convert(req: Request, *, on_progress: Callable[[float], None] | None = None,
            cancel: threading.Event | None = None, quiet: bool = False,
            on_update: Callable[[Progress], None] | None = None) -> Result:
    """Convert ``req.source`` into ``req.target`` safely; see the module docstring.

    ``on_progress`` gets qemu-img's percentages; ``on_update`` gets :class:`Progress`
    reports (bytes done of the total, throughput, time left; phase "finish" while the output
    is synced and verified)."""
    src, m, room, dst, out_format = prepare(req)
    out = _Output(dst, room, req.force)
    no_create = room.kind in ("device", "nbd")
    precreate = room.kind == "rbd" and req.rbd_precreate
    zero = precreate
    no_create = no_create or precreate
    # A new local file is published only once complete: no flushes while writing it, one
    # fsync after (see the module docstring). Outputs written in place or remote: writeback.
    cache = "unsafe" if room.kind == "file" else "writeback"
    ooo = req.out_of_order if req.out_of_order is not None else \
        qemuimg.out_of_order(src.format, out_format, room.kind)
    opts = qemuimg.ConvertOptions(
        src.format, out_format, compress=req.compress, preallocate=req.preallocate,
        coroutines=req.coroutines, options=qemuimg.check_options(req.options),
        no_create=no_create, target_is_zero=zero, cache=cache, out_of_order=ooo)
    argv = qemuimg.convert_argv(opts, plan.qemu_filename(src.target), out.qemu_name)
    size = src.virtual_size or m.fully_allocated
    timeout = max(MIN_TIMEOUT, size / MIN_RATE)
    result = Result(req.source, req.target, src.format, out_format, src.virtual_size,
                    m.fully_allocated if req.preallocate else m.required, room.available,
                    command=argv, findings=list(src.findings))
    tracker = Tracker(size, on_update)

    def percent(pct: float) -> None:
        if on_progress is not None:
            on_progress(pct)
        tracker.percent(pct)

    verifier: _Verifier | None = None
    copier = _in_process_copy(req, src, dst, out, precreate) if room.kind == "rbd" else None
    if copier is not None:
        result.copied_by, result.command = "diskkit", []
        copier.on_bytes = lambda done, total: percent(100.0 * done / total if total else 100.0)
    try:
        if req.verify:  # a costly source is hashed while qemu-img copies (verify.py)
            verifier = _Verifier(req, src, out_format, room.kind, copier, timeout)
        out.created = True
        if precreate:
            from . import rbdops

            rbdops.create(dst, out.temp or "", size)
        if copier is not None:
            result.convert_seconds = copier.run_until_done(timeout=timeout, cancel=cancel)
        else:
            # A new local file: its write-back starts while qemu-img writes (writeback.py).
            with Writeback(out.temp) if room.kind == "file" and out.temp else \
                    contextlib.nullcontext():
                result.convert_seconds = qemuimg.run_convert(
                    argv, timeout=timeout, on_progress=percent, cancel=cancel)
        finish_started = time.monotonic()
        tracker.phase(FINISH)
        _finish(result, verifier, dst, out, room.kind, timeout)
        result.finish_seconds = time.monotonic() - finish_started
    except BaseException as exc:
        try:
            removed = out.discard()
        except Exception as cleanup:  # never hide why we stopped behind a cleanup failure
            _say(f"could not remove the partial output {out.qemu_name}: {cleanup}")
            raise exc from None
        if not quiet or isinstance(exc, KeyboardInterrupt):
            if removed:
                _say(f"stopped: removed the partial output {removed}")
            elif room.kind in ("device", "nbd") and isinstance(exc, KeyboardInterrupt):
                _say(f"stopped: {req.target} was written in place and is incomplete")
        raise
    finally:
        if verifier is not None:
            verifier.close()  # the copier's cancel among it
        elif copier is not None:
            copier.cancel()  # closes a reader it was given and never used
    result.target_bytes = _target_bytes(dst, room.kind)
    return result
