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
from types import FrameType, TracebackType
from typing import Any

from diskkit.backends.state import RunState
from diskkit.errors import DiskkitError, InternalError

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
        entry = {"kind": kind, "done": False, "data": dict(data)}
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
