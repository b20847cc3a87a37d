"""``diskkit mount/umount/run/cat/ls/cleanup``: look inside an image, read-only, in one step.

Each command turns SIGTERM into an exception while it works, so Ctrl-C and ``kill`` both tear
down what was set up (exit 130 and 143). ``mount`` leaves its mount in place and records it in
the run directory; ``umount DIR`` undoes it; ``cleanup`` removes what a crashed run left.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from diskkit import backends
from diskkit.backends.base import Terminated, signals_as_exceptions
from diskkit.cli.output import console, emit_json
from diskkit.errors import UserError


def _guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with SIGTERM as an exception; a SIGTERM exits 143 after the teardown."""
    from diskkit.cli.main import Signalled

    try:
        with signals_as_exceptions():
            return fn()
    except Terminated as exc:
        raise Signalled(exc.args[0] if exc.args else signal.SIGTERM) from None


def _sel(partition: int | None, lv: str | None, os_root: bool, backend: str) -> dict[str, Any]:
    return {"partition": partition, "lv": lv, "os_root": os_root, "backend": backend}


def _choices(target: str, backend: str) -> str:
    """The filesystems of ``target`` a user can choose from, as options to pass."""
    from diskkit.backends.select import plan

    p = plan(target, os_root=True, backend="loop" if backend == "auto" else backend)
    out = []
    for c in p.candidates:
        opt = f"--lv {c.location[3:]}" if c.location.startswith("lv ") else \
            f"--partition {c.location.split()[-1]}" if c.location.startswith("partition ") \
            else c.location
        label = f" {c.label!r}" if c.label else ""
        out.append(f"{opt} ({c.fstype}{label})")
    return ", ".join(out)


def _with_selection(target: str, sel: dict[str, Any], action: Callable[[dict[str, Any]], Any]
                    ) -> Any:
    """Run ``action(sel)``; with no --partition/--lv/--os, choose as ``guestmount -i`` does: a
    whole-disk filesystem as it is, else the operating system's root (``--os``), else the
    only filesystem; several filesystems and no OS: "choose one", listing them."""
    from diskkit.backends.select import plan

    if sel["partition"] is not None or sel["lv"] is not None or sel["os_root"]:
        return action(sel)
    try:
        plan(target, **sel)
        return action(sel)
    except UserError as exc:
        if exc.code != "choose-partition":
            raise
        asked = exc
    try:
        return action({**sel, "os_root": True})
    except UserError as exc:
        if exc.code not in ("no-os",):
            raise
    p = plan(target, os_root=True, backend=sel["backend"] if sel["backend"] != "auto"
             else "loop")
    if len(p.candidates) == 1:
        only = p.candidates[0].location
        if only.startswith("lv "):
            return action({**sel, "lv": only[3:]})
        return action({**sel, "partition": int(only.split()[-1])})
    raise UserError(f"{target}: no operating system found and several filesystems: choose one",
                    code="choose-partition",
                    hint="one of: " + _choices(target, sel["backend"])) from asked


def mount(target: str, directory: str, partition: int | None = None, lv: str | None = None,
          os_root: bool = False, backend: str = "auto", json_out: bool = False) -> int:
    """Mount an image read-only (never replaying a journal); `diskkit umount DIR` undoes it."""
    m = _guarded(lambda: _with_selection(
        target, _sel(partition, lv, os_root, backend),
        lambda sel: backends.mount(target, directory, **sel)))
    if json_out:
        emit_json(m.to_dict())
        return 0
    for x in m.mounts:
        console.print(f"{x['location']} ({x['fstype']}) -> {x['path']}")
    for s in m.skipped:
        console.print(f"skipped {s['mountpoint']} ({s['spec']}): {s['reason']}")
    console.print(f"mounted read-only with {m.backend}; undo with: diskkit umount {m.root}")
    return 0


def umount(directory: str, json_out: bool = False) -> int:
    """Unmount and detach, in reverse, everything `diskkit mount` made for DIR."""
    run_id = _guarded(lambda: backends.umount(directory))
    if json_out:
        emit_json({"root": os.path.abspath(directory), "run": run_id, "unmounted": True})
    else:
        console.print(f"unmounted {directory}")
    return 0


def run(target: str, command: list[str], partition: int | None = None, lv: str | None = None,
        os_root: bool = False, backend: str = "auto", timeout: float = 3600.0,
        json_out: bool = False) -> int:
    """Mount, run COMMAND with the root in $DISKKIT_ROOT, tear down; exit with its status.
    With --json, COMMAND's output goes to stderr and stdout has one JSON document: the mounts
    made and COMMAND's exit status."""
    from diskkit.backends.base import pause_at
    from diskkit.runner import spawn

    done: dict[str, Any] = {}

    def work(sel: dict[str, Any]) -> int:
        with backends.mounted(target, **sel) as m:
            env = {"DISKKIT_ROOT": m.root}
            done["mount"] = m.to_dict()
            with spawn(command, env=env, stdout=sys.stderr.fileno() if json_out else None,
                       stderr=None) as proc:
                pause_at("in-command")
                try:
                    rc = proc.wait(timeout=timeout)
                except Exception as exc:  # subprocess.TimeoutExpired
                    raise UserError(f"{command[0]} did not finish within {timeout:g} s",
                                    code="command-timeout") from exc
        return rc if rc >= 0 else 128 - rc

    rc = _guarded(lambda: _with_selection(target, _sel(partition, lv, os_root, backend), work))
    if json_out:
        m = done["mount"]
        emit_json({"target": target, "command": command, "exit_status": rc,
                   "backend": m["backend"], "run": m["run"], "mounts": m["mounts"],
                   "skipped": m["skipped"]})
    return int(rc)


def cat(target: str, path: str, partition: int | None = None, lv: str | None = None,
        os_root: bool = False, backend: str = "auto", json_out: bool = False) -> int:
    """Print a file of the image (symlinks resolved inside the guest, never on the host)."""
    from diskkit.guest.fs import service  # no root, no mount when readable in-process

    sel = _sel(partition, lv, os_root, backend)
    if json_out:
        data = _guarded(lambda: _with_selection(
            target, sel, lambda s: service.read_file(target, path, **s)))
        emit_json(file_json(path, data or b""))
        return 0
    _guarded(lambda: _with_selection(
        target, sel, lambda s: service.read_file(target, path, out=sys.stdout.buffer, **s)))
    sys.stdout.flush()
    return 0


def file_json(path: str, data: bytes) -> dict[str, Any]:
    """``cat --json``: the file's path, size, SHA-256 and content, as UTF-8 text when it is
    valid UTF-8, else base64."""
    import base64
    import hashlib

    try:
        content, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(data).decode("ascii"), "base64"
    return {"path": path, "type": "file", "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "encoding": encoding,
            "content": content}


def ls_(target: str, path: str = "/", partition: int | None = None, lv: str | None = None,
        os_root: bool = False, backend: str = "auto", json_out: bool = False) -> int:
    """List a directory of the image."""
    from diskkit.guest.fs import service  # no root, no mount when readable in-process

    sel = _sel(partition, lv, os_root, backend)
    entries = _guarded(lambda: _with_selection(
        target, sel, lambda s: service.list_dir(target, path, **s)))
    if json_out:
        emit_json({"path": path, "entries": entries})
        return 0
    for e in entries:
        console.print(e["name"] + ("/" if e["type"] == "dir" else ""), markup=False, soft_wrap=True)
    return 0


def cleanup(all_runs: bool = False, list_only: bool = False, json_out: bool = False) -> int:
    """Undo what crashed diskkit runs left attached (loop, nbd, dm, mounts, qemu daemons)."""
    if list_only:
        runs = backends.list_runs()
        if json_out:
            emit_json({"runs": runs})
        for r in runs if not json_out else ():
            state = "mounted" if r["complete"] else ("running" if r["owner_alive"] else "crashed")
            console.print(f"{r['run']}  {state:8} {r['mountpoint'] or '-'}  {r['target']}")
        return 0
    cleaned = _guarded(lambda: backends.cleanup(everything=all_runs))
    failed = [c for c in cleaned if c.get("error")]
    if json_out:
        emit_json({"cleaned": cleaned})
    else:
        for c in cleaned:
            if c.get("error"):
                console.print(f"could not clean {c['run']} ({c['mountpoint'] or '-'}): "
                              f"{c['error']}", markup=False, soft_wrap=True)
            else:
                console.print(f"cleaned {c['run']} ({c['mountpoint'] or '-'}): "
                              f"{', '.join(c['undone']) or 'nothing left'}", markup=False)
        if not cleaned:
            console.print("nothing to clean up")
    return 3 if failed else 0
