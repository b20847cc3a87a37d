"""Batch conversions from a manifest, N at a time, resumable.

A manifest is JSON (a list of objects) or CSV (a header row, or rows without one) with the
fields ``source``, ``target``, ``format`` (the output format; ``target_format`` is accepted
too) and optionally ``source_format``. Relative local paths are relative to the manifest's
directory.

Re-running a manifest skips what is already done: after each verified conversion a state file
next to the manifest (``MANIFEST.diskkit-state.json``) records the source's and the target's
fingerprints (size and modification time for files, size for RBD images); an item is skipped
only when both still match, so a target touched or replaced since is converted again.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from diskkit.errors import DiskkitError, UserError
from diskkit.target import parse_target

from . import engine

#: Most manifest bytes read (a manifest is a list of paths, not an image).
MAX_MANIFEST = 16 << 20
STATE_SUFFIX = ".diskkit-state.json"


@dataclass(frozen=True)
class BatchItem:
    """One line of a manifest."""

    source: str
    target: str
    out_format: str
    src_format: str | None = None

    @property
    def key(self) -> str:
        """Identity of the item in the state file."""
        return "\n".join((self.source, self.target, self.out_format))


@dataclass
class BatchReport:
    """Per-item outcomes, in manifest order, and the totals."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many items ended in each status."""
        out = {"converted": 0, "skipped": 0, "refused": 0, "failed": 0}
        for o in self.outcomes:
            out[o["status"]] = out.get(o["status"], 0) + 1
        return out

    @property
    def ok(self) -> bool:
        """True when every item was converted or skipped."""
        c = self.counts()
        return c["refused"] == 0 and c["failed"] == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (docs/json.md "convert --manifest")."""
        return {"items": self.outcomes, "summary": self.counts()}


def _resolve(value: str, base: str) -> str:
    if "://" in value or value.startswith("rbd:") or os.path.isabs(value):
        return value
    return os.path.join(base, value)


def _item(row: dict[str, Any], base: str, where: str) -> BatchItem:
    def get(*names: str) -> str | None:
        for n in names:
            v = row.get(n)
            if v not in (None, ""):
                return str(v).strip()
        return None

    src, dst = get("source", "src"), get("target", "dst", "destination")
    fmt = get("format", "target_format", "out_format", "output_format")
    if not src or not dst or not fmt:
        raise UserError(f"{where}: needs source, target and format", code="bad-manifest")
    return BatchItem(_resolve(src, base), _resolve(dst, base), fmt,
                     get("source_format", "src_format"))


def load_manifest(path: str) -> list[BatchItem]:
    """Read a JSON or CSV manifest; :class:`UserError` (code bad-manifest) when malformed."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}", code="not-found") from None
    if len(data) > MAX_MANIFEST:
        raise UserError(f"{path}: larger than {MAX_MANIFEST} bytes", code="bad-manifest")
    text = data.decode("utf-8", errors="replace")
    base = os.path.dirname(os.path.abspath(path))
    if text.lstrip().startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{path}: not valid JSON: {exc}", code="bad-manifest") from None
        if isinstance(doc, dict):
            doc = doc.get("items")
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise UserError(f"{path}: expected a list of objects", code="bad-manifest")
        items = [_item(r, base, f"{path} item {i + 1}") for i, r in enumerate(doc)]
    else:
        rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].startswith("#")]
        names = ["source", "target", "format", "source_format"]
        if rows and "source" in [c.strip().lower() for c in rows[0]]:
            names = [c.strip().lower() for c in rows[0]]
            rows = rows[1:]
        items = [_item(dict(zip(names, r, strict=False)), base, f"{path} line {i + 1}")
                 for i, r in enumerate(rows)]
    if not items:
        raise UserError(f"{path}: lists no conversions", code="bad-manifest")
    return items


def fingerprint(spec: str) -> list[Any] | None:
    """What identifies a target's current content cheaply (None when it does not exist)."""
    t = parse_target(spec)
    if t.kind == "file":
        try:
            st = os.stat(t.path or "")
        except OSError:
            return None
        return ["file", st.st_size, st.st_mtime_ns]
    if t.kind == "rbd":
        from diskkit.convert import rbdops

        size = rbdops.image_size(t)
        return None if size is None else ["rbd", size]
    return None


class _State:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        try:
            with open(path) as f:
                self.done: dict[str, Any] = json.load(f).get("done", {})
        except (OSError, ValueError, AttributeError):
            self.done = {}

    def is_done(self, item: BatchItem) -> bool:
        entry = self.done.get(item.key)
        if not isinstance(entry, dict):
            return False
        src, dst = fingerprint(item.source), fingerprint(item.target)
        return src is not None and dst is not None and entry.get("source") == src \
            and entry.get("target") == dst

    def record(self, item: BatchItem) -> None:
        with self.lock:
            self.done[item.key] = {"source": fingerprint(item.source),
                                   "target": fingerprint(item.target)}
            tmp = f"{self.path}.tmp-{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump({"version": 1, "done": self.done}, f, indent=1)
            os.replace(tmp, self.path)


class Listener:
    """Receives batch events (the CLI draws its progress view from them)."""

    def start(self, index: int, item: BatchItem) -> None:
        """Item ``index`` began converting."""

    def progress(self, index: int, percent: float) -> None:
        """Item ``index`` reached ``percent``."""

    def update(self, index: int, progress: engine.Progress) -> None:
        """Item ``index`` reports bytes done of its total, throughput and time left (by
        default passed on to :meth:`progress` as a percentage)."""
        self.progress(index, progress.percent)

    def done(self, index: int, outcome: dict[str, Any]) -> None:
        """Item ``index`` ended (converted, skipped, refused or failed)."""


def _one(i: int, item: BatchItem, base: engine.Request, state: _State, listener: Listener,
         cancel: threading.Event) -> dict[str, Any]:
    # "index" is 1-based, as the text output's "#1" (docs/json.md: numbering starts at 1)
    out: dict[str, Any] = {"index": i + 1, "source": item.source, "target": item.target,
                           "target_format": engine.openstack_name(item.out_format)}
    if cancel.is_set():
        raise engine.qemuimg.Cancelled()
    try:
        if state.is_done(item):
            out["status"] = "skipped"
            listener.done(i, out)
            return out
        listener.start(i, item)
        req = engine.Request(item.source, item.target, item.out_format, item.src_format,
                             verify=True, force=base.force, allow_unsafe=base.allow_unsafe,
                             coroutines=base.coroutines)
        cb: Callable[[engine.Progress], None] = lambda p: listener.update(i, p)  # noqa: E731
        res = engine.convert(req, on_update=cb, cancel=cancel, quiet=True)
        state.record(item)
        out.update(res.to_dict())
    except engine.Refused as exc:
        out.update(status="refused", findings=[f.to_dict() for f in exc.findings])
    except DiskkitError as exc:
        out.update(status="failed", error={"code": exc.code, "message": exc.message,
                                           "hint": exc.hint})
    except OSError as exc:
        out.update(status="failed", error={"code": "os-error", "message": str(exc),
                                           "hint": None})
    except Exception as exc:  # a bug in diskkit must not take the other items down
        out.update(status="failed", error={"code": "internal-error",
                                           "message": f"{type(exc).__name__}: {exc}",
                                           "hint": "a bug in diskkit, please report it"})
    listener.done(i, out)
    return out


def run_batch(items: list[BatchItem], *, state_path: str, jobs: int = 2, force: bool = False,
              allow_unsafe: bool = False, listener: Listener | None = None) -> BatchReport:
    """Convert every item, ``jobs`` at a time; every item is verified. Ctrl-C cancels the
    running conversions (each removes its partial output) and re-raises KeyboardInterrupt."""
    listener = listener or Listener()
    state = _State(state_path)
    base = engine.Request("", "", "raw", force=force, allow_unsafe=allow_unsafe,
                          coroutines=8 if jobs > 1 else 16)
    cancel = threading.Event()
    import concurrent.futures as cf  # here: a single conversion never pays for it

    pool = cf.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="convert")
    futures = [pool.submit(_one, i, it, base, state, listener, cancel)
               for i, it in enumerate(items)]
    try:
        pending = set(futures)
        while pending:
            _done, pending = cf.wait(pending, timeout=0.2)
    except BaseException:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return BatchReport([f.result() for f in futures])
