"""The run directory: what a mount made, written down step by step so it can be undone.

Every attach or mount diskkit performs (from the CLI or the Python API) belongs to a *run*: a
directory ``<root>/<id>/`` (``/run/diskkit`` for root; ``$DISKKIT_RUN_DIR`` overrides it) that
holds ``state.json`` and the run's private files (FUSE export files, pid files, mountpoints of
``run``/``cat``/``ls``). ``state.json`` lists every step, written *before* the step is done
(``"done": false``) and updated after it, so ``diskkit umount`` and ``diskkit cleanup`` can undo
exactly what was done, in reverse, even after a crash or a ``kill -9``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from diskkit.errors import HostError, UserError


def run_root() -> pathlib.Path:
    """Where run directories live: ``$DISKKIT_RUN_DIR``, else /run/diskkit (root) or a
    per-user directory under /tmp (:func:`diskkit.runner.run_root`)."""
    from diskkit.runner import run_root as root

    return root()


def pid_alive(pid: int | None) -> bool:
    """True when process ``pid`` exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            # Field 3 is the state; the command name (field 2) may contain spaces: split after ')'.
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@dataclass
class RunState:
    """One run: its directory and the steps it made (see the module docstring)."""

    dir: pathlib.Path
    id: str
    #: Free-form facts: target, mountpoint, backend, owner pid, "complete".
    info: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def path(self) -> pathlib.Path:
        """The state file."""
        return self.dir / "state.json"

    @classmethod
    def create(cls, **info: Any) -> RunState:
        """A new run directory (mode 0700) owned by this process."""
        root = run_root()
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise HostError(f"cannot create the run directory {root}: {exc.strerror}",
                            code="run-dir",
                            hint="set DISKKIT_RUN_DIR to a writable place") from None
        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        d = root / run_id
        state = cls(d, run_id, {"pid": os.getpid(), "created": time.time(), "complete": False,
                                **info})
        try:  # a run directory that exists but cannot be written to: one line, exit 3
            d.mkdir(mode=0o700)
            state.save()
        except OSError as exc:
            raise HostError(f"cannot write in the run directory {root}: {exc.strerror}",
                            code="run-dir",
                            hint="set DISKKIT_RUN_DIR to a writable place") from None
        return state

    @classmethod
    def load(cls, d: pathlib.Path) -> RunState:
        """Read a run directory; a damaged state file gives an empty step list."""
        try:
            data = json.loads((d / "state.json").read_text())
        except (OSError, ValueError):
            data = {}
        return cls(d, d.name, data.get("info", {}), list(data.get("steps", [])))

    def save(self) -> None:
        """Write ``state.json`` atomically (a crash leaves the old or the new one, whole)."""
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps({"id": self.id, "info": self.info, "steps": self.steps},
                                  indent=1))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def owner_alive(self) -> bool:
        """True while the process that created the run still runs."""
        return pid_alive(self.info.get("pid"))

    def remove_dir(self) -> None:
        """Remove the run directory once every step is undone (only our own files in it)."""
        for child in sorted(self.dir.glob("**/*"), reverse=True):
            with contextlib.suppress(OSError):
                if child.is_dir() and not child.is_symlink():
                    child.rmdir()
                else:
                    child.unlink()
        with contextlib.suppress(OSError):
            self.dir.rmdir()


def all_runs() -> Iterator[RunState]:
    """Every run directory under :func:`run_root`, oldest first."""
    root = run_root()
    if not root.is_dir():
        return
    for d in sorted(root.iterdir()):
        if d.is_dir() and (d / "state.json").exists():
            yield RunState.load(d)


def find_by_mountpoint(path: str) -> RunState:
    """The completed run whose mountpoint is ``path``; :class:`UserError` when none is."""
    want = os.path.realpath(path)
    for run in all_runs():
        mp = run.info.get("mountpoint")
        if mp and os.path.realpath(mp) == want:
            return run
    raise UserError(f"{path}: not a diskkit mount", code="not-mounted",
                    hint="`diskkit cleanup --list` shows what diskkit has mounted")
