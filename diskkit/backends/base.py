"""The backend interface: steps that are recorded, then undone in reverse on every exit path.

Each thing a backend does to the host (a loop device, a FUSE export, an nbd connection, a
kpartx map, an activated VG, a mount, a libguestfs FUSE mount) is a *step* of a kind that has
an *undo* function registered here with :func:`undoer`. :class:`Teardown` records each step
in the run's ``state.json`` before doing it and undoes recorded steps in reverse order, so the
Python API (a ``with`` block), ``diskkit umount`` and ``diskkit cleanup`` (after a crash) all
use the same undo code. Undo functions are idempotent: undoing something already gone is fine.

Test hook: ``DISKKIT_TEST_PAUSE_AT=<stage>`` makes the process print
``diskkit: paused at <stage> (pid N)`` on stderr and sleep (up to 120 s) when it reaches that
stage, so a test can signal it there. Stages are ``after-<kind>`` for every step kind, plus
``before-attach`` and ``in-command`` (``diskkit run``, while the command runs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Protocol

from diskkit.backends.state import RunState
from diskkit.errors import DiskkitError, InternalError, UserError

log = logging.getLogger("diskkit.backends")

#: kind -> function undoing one recorded step (given its data dict).
_UNDO: dict[str, Callable[[dict[str, Any]], None]] = {}


def undoer(kind: str) -> Callable[[Callable[[dict[str, Any]], None]], Callable[..., None]]:
    """Register the undo function of a step kind (decorator)."""

    def register(fn: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
        _UNDO[kind] = fn
        return fn

    return register


def _load_undoers() -> None:
    # Importing the backend modules registers their undo functions.
    from diskkit.backends import fuse, guestfs, loop, lvm, mounts, nbd  # noqa: F401


def pause_at(stage: str) -> None:
    """The test hook described in the module docstring (does nothing unless asked)."""
    if os.environ.get("DISKKIT_TEST_PAUSE_AT") != stage:
        return
    sys.stderr.write(f"diskkit: paused at {stage} (pid {os.getpid()})\n")
    sys.stderr.flush()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)


class Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives during a CLI run (like Ctrl-C)."""


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Turn SIGTERM (and SIGHUP) into :class:`Terminated` for the duration of the block, so
    ``finally`` clauses and context managers tear down what was set up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM/SIGHUP while tearing down: a second Ctrl-C must not stop the undo
    half-way (a third party can still SIGKILL us; then `diskkit cleanup` finishes the job)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def undo_step(step: dict[str, Any]) -> None:
    """Undo one recorded step (idempotent)."""
    _load_undoers()
    fn = _UNDO.get(step.get("kind", ""))
    if fn is None:
        raise InternalError(f"no undo for step kind {step.get('kind')!r}")
    fn(step.get("data", {}))


class Teardown:
    """The steps of one run, recorded in its :class:`RunState` and undone in reverse.

    Use as a context manager: on leaving the block (normally, by an exception, Ctrl-C or
    :class:`Terminated`) every step is undone unless :meth:`keep` was called (a CLI mount that
    must outlive the command).
    """

    def __init__(self, run: RunState) -> None:
        self.run = run
        self._keep = False

    def step(self, kind: str, **data: Any) -> dict[str, Any]:
        """Record a step about to be done; returns its data dict, to be completed with
        :meth:`done` once the step succeeded (the undo must cope with either state)."""
        entry: dict[str, Any] = {"kind": kind, "done": False, "data": dict(data)}
        self.run.steps.append(entry)
        self.run.save()
        return entry["data"]

    def done(self, data: dict[str, Any], **more: Any) -> None:
        """Mark the step owning ``data`` done, adding ``more`` facts (a device name, a pid)."""
        for entry in reversed(self.run.steps):
            if entry["data"] is data:
                entry["data"].update(more)
                entry["done"] = True
                self.run.save()
                pause_at(f"after-{entry['kind']}")
                return
        raise InternalError("done() for a step that was not recorded")

    def forget(self, data: dict[str, Any]) -> None:
        """Drop a recorded step that turned out not to have been done at all."""
        self.run.steps[:] = [e for e in self.run.steps if e["data"] is not data]
        self.run.save()

    def keep(self) -> None:
        """Leave everything in place on exit (the run directory remembers it)."""
        self._keep = True
        self.run.info["complete"] = True
        self.run.save()

    def close(self) -> None:
        """Undo every step, last first. Every step is tried; the first failure is raised after."""
        with _signals_deferred():
            undo_all(self.run)

    def __enter__(self) -> Teardown:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._keep and exc_type is None:
            return
        try:
            self.close()
        except DiskkitError:
            if exc_type is None:
                raise
            log.warning("teardown after an error failed too", exc_info=True)


def undo_all(run: RunState) -> None:
    """Undo the run's steps in reverse, dropping each from the state file once undone; remove
    the run directory when none is left. Raises the first failure after trying them all."""
    first: DiskkitError | None = None
    for entry in list(reversed(run.steps)):
        try:
            undo_step(entry)
        except DiskkitError as exc:
            log.warning("undo of %s failed: %s", entry.get("kind"), exc)
            first = first or exc
            continue
        run.steps.remove(entry)
        run.save()
    if first is not None:
        raise first
    run.remove_dir()


# -- the Backend protocol -------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """Where a filesystem is on a disk: the whole ``disk``, ``partition`` N, or the logical
    volume ``vg``/``lv``. ``str()`` gives the layout's spelling ("partition 2", "lv vg/root")."""

    kind: str
    number: int | None = None
    vg: str | None = None
    lv: str | None = None

    @classmethod
    def whole_disk(cls) -> Location:
        """The whole disk."""
        return cls("disk")

    @classmethod
    def partition(cls, number: int) -> Location:
        """Partition ``number`` (1-based, as the partition table numbers it)."""
        return cls("partition", number=number)

    @classmethod
    def logical_volume(cls, vg: str, lv: str) -> Location:
        """The logical volume ``vg``/``lv``."""
        return cls("lv", vg=vg, lv=lv)

    @classmethod
    def parse(cls, text: str) -> Location:
        """The layout's spelling back to a Location; :class:`UserError` for anything else."""
        if text == "disk":
            return cls.whole_disk()
        kind, _, rest = text.partition(" ")
        if kind == "partition" and rest.isdigit() and int(rest) > 0:
            return cls.partition(int(rest))
        if kind == "lv" and rest.count("/") == 1 and all(rest.split("/")):
            vg, lv = rest.split("/")
            return cls.logical_volume(vg, lv)
        raise UserError(f"not a location: {text!r}", code="bad-location",
                        hint='use "disk", "partition N" or "lv VG/LV"')

    def __str__(self) -> str:
        if self.kind == "partition":
            return f"partition {self.number}"
        if self.kind == "lv":
            return f"lv {self.vg}/{self.lv}"
        return "disk"


@dataclass(frozen=True)
class Requirement:
    """One thing a backend needs from the host, and whether this host has it."""

    name: str
    #: "program", "device", "kernel-module", "python-module" or "privilege".
    kind: str
    ok: bool
    fix: str | None = None


@dataclass
class Attachment:
    """What :meth:`Backend.attach` made: the image's disk made available to this host.

    ``source`` is the raw view a kernel backend attaches loop devices or partitions to (a
    file, a FUSE-exported file or an nbd device); ``devices`` the block devices made so far,
    by location. ``first_step`` is where the attachment's steps start in the run.
    """

    backend: str
    td: Teardown
    image: str
    fmt: str
    source: str | None = None
    devices: dict[Location, str] = field(default_factory=dict)
    #: number -> (start, size) in bytes, from the partition table.
    partitions: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: PV locations of each VG name.
    pvs: dict[str, list[Location]] = field(default_factory=dict)
    first_step: int = 0
    #: Backend-private state (kpartx map...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MountSpec:
    """One filesystem to mount: where it is, its type, and its mountpoint under the root."""

    location: Location
    fstype: str
    mountpoint: str = "/"


class Backend(Protocol):
    """A way to attach an image and mount its filesystems read-only.

    Every step is recorded in the :class:`Teardown` given to :meth:`attach`, so leaving the
    Teardown's ``with`` block (or :meth:`detach`) undoes everything, last first.
    """

    #: "loop", "fuse", "nbd" or "guestfs".
    name: str

    def requirements(self) -> list[Requirement]:
        """What this backend needs from the host, each marked present or not."""
        ...

    def attach(self, td: Teardown, image: str, fmt: str, *,
               partitions: dict[int, tuple[int, int]] | None = None,
               pvs: dict[str, list[Location]] | None = None) -> Attachment:
        """Make ``image`` (qemu format ``fmt``) available to the host."""
        ...

    def mount(self, att: Attachment, specs: list[MountSpec], root: str) -> list[dict[str, Any]]:
        """Mount ``specs`` (shallowest first) under ``root``; one dict per mount made
        (location, fstype, device, path, mountpoint)."""
        ...

    def detach(self, att: Attachment) -> None:
        """Undo everything the attachment (and its mounts) did, last first."""
        ...


def undo_since(td: Teardown, first_step: int) -> None:
    """Undo the run's steps from index ``first_step`` on, last first (a detach)."""
    first: DiskkitError | None = None
    with _signals_deferred():
        for entry in list(reversed(td.run.steps[first_step:])):
            try:
                undo_step(entry)
            except DiskkitError as exc:
                first = first or exc
                continue
            td.run.steps.remove(entry)
            td.run.save()
    if first is not None:
        raise first
