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

import typer

from diskkit import backends
from diskkit.backends.base import Terminated, signals_as_exceptions
from diskkit.cli.app import app
from diskkit.cli.output import console, emit_json
from diskkit.errors import UserError

_PARTITION = typer.Option(None, "--partition", "-p", help="Partition number (as sfdisk counts).")
_LV = typer.Option(None, "--lv", help="Logical volume, VG/LV.")
_OS = typer.Option(False, "--os", help="Find the OS root and mount its fstab tree.")
_BACKEND = typer.Option("auto", "--backend", "-b", help="auto, loop, nbd or guestfs.")
_JSON = typer.Option(False, "--json", help="Print JSON (docs/json.md).")
_TARGET_HELP = "Image file, rbd:POOL/IMAGE\\[@SNAP][:conf=PATH][:id=USER] or NBD URI (raw)."
_COMMAND = typer.Argument(..., help="The command, after `--`.")


def _guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with SIGTERM as an exception; a SIGTERM exits 143 after the teardown."""
    try:
        with signals_as_exceptions():
            return fn()
    except Terminated as exc:
        sys.stderr.write("diskkit: terminated\n")
        raise typer.Exit(128 + (exc.args[0] if exc.args else signal.SIGTERM)) from None


def _sel(partition: int | None, lv: str | None, os_root: bool, backend: str) -> dict[str, Any]:
    return {"partition": partition, "lv": lv, "os_root": os_root, "backend": backend}


@app.command()
def mount(
    target: str = typer.Argument(..., help=_TARGET_HELP),
    directory: str = typer.Argument(..., help="Empty directory to mount at."),
    partition: int | None = _PARTITION, lv: str | None = _LV, os_root: bool = _OS,
    backend: str = _BACKEND, json_out: bool = _JSON,
) -> None:
    """Mount an image read-only (never replaying a journal); `diskkit umount DIR` undoes it."""
    m = _guarded(lambda: backends.mount(target, directory, **_sel(partition, lv, os_root,
                                                                    backend)))
    if json_out:
        emit_json(m.to_dict())
        return
    for x in m.mounts:
        console.print(f"{x['location']} ({x['fstype']}) -> {x['path']}")
    for s in m.skipped:
        console.print(f"skipped {s['mountpoint']} ({s['spec']}): {s['reason']}")
    console.print(f"mounted read-only with {m.backend}; undo with: diskkit umount {m.root}")


@app.command()
def umount(directory: str = typer.Argument(..., help="Where `diskkit mount` mounted."),
           json_out: bool = _JSON) -> None:
    """Unmount and detach, in reverse, everything `diskkit mount` made for DIR."""
    run_id = _guarded(lambda: backends.umount(directory))
    if json_out:
        emit_json({"root": os.path.abspath(directory), "run": run_id, "unmounted": True})
    else:
        console.print(f"unmounted {directory}")


@app.command()
def run(
    target: str = typer.Argument(..., help=_TARGET_HELP),
    command: list[str] = _COMMAND,
    partition: int | None = _PARTITION, lv: str | None = _LV, os_root: bool = _OS,
    backend: str = _BACKEND,
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds COMMAND may run."),
) -> None:
    """Mount, run COMMAND with the root in $DISKKIT_ROOT, tear down; exit with its status."""
    from diskkit.backends.base import pause_at
    from diskkit.runner import spawn

    def work() -> int:
        with backends.mounted(target, **_sel(partition, lv, os_root, backend)) as m:
            env = {"DISKKIT_ROOT": m.root}
            with spawn(command, env=env, stdout=None, stderr=None) as proc:
                pause_at("in-command")
                try:
                    rc = proc.wait(timeout=timeout)
                except Exception as exc:  # subprocess.TimeoutExpired
                    raise UserError(f"{command[0]} did not finish within {timeout:g} s",
                                    code="command-timeout") from exc
        return rc if rc >= 0 else 128 - rc

    raise typer.Exit(_guarded(work))


@app.command()
def cat(
    target: str = typer.Argument(..., help=_TARGET_HELP),
    path: str = typer.Argument(..., help="Path inside the guest, e.g. /etc/fstab."),
    partition: int | None = _PARTITION, lv: str | None = _LV, os_root: bool = _OS,
    backend: str = _BACKEND,
) -> None:
    """Print a file of the image (symlinks resolved inside the guest, never on the host)."""
    sel = _sel(partition, lv, os_root, backend)
    if partition is None and lv is None and not os_root:
        sel["os_root"] = _default_os(target)
    _guarded(lambda: backends.read_file(target, path, out=sys.stdout.buffer, **sel))
    sys.stdout.flush()


@app.command(name="ls")
def ls_(
    target: str = typer.Argument(..., help=_TARGET_HELP),
    path: str = typer.Argument("/", help="Directory inside the guest."),
    partition: int | None = _PARTITION, lv: str | None = _LV, os_root: bool = _OS,
    backend: str = _BACKEND, json_out: bool = _JSON,
) -> None:
    """List a directory of the image."""
    sel = _sel(partition, lv, os_root, backend)
    if partition is None and lv is None and not os_root:
        sel["os_root"] = _default_os(target)
    entries = _guarded(lambda: backends.list_dir(target, path, **sel))
    if json_out:
        emit_json({"path": path, "entries": entries})
        return
    for e in entries:
        console.print(e["name"] + ("/" if e["type"] == "dir" else ""), markup=False, soft_wrap=True)


def _default_os(target: str) -> bool:
    """cat/ls without a selection: the whole-disk filesystem, else the OS root (--os)."""
    from diskkit.backends.select import plan

    try:
        plan(target, backend="loop")
        return False
    except UserError as exc:
        if exc.code == "choose-partition":
            return True
        raise


@app.command()
def cleanup(
    all_runs: bool = typer.Option(False, "--all", help="Undo every diskkit mount, not only "
                                  "the leftovers of crashed runs."),
    list_only: bool = typer.Option(False, "--list", help="Only list the runs."),
    json_out: bool = _JSON,
) -> None:
    """Undo what crashed diskkit runs left attached (loop, nbd, dm, mounts, qemu daemons)."""
    if list_only:
        runs = backends.list_runs()
        if json_out:
            emit_json({"runs": runs})
        for r in runs if not json_out else ():
            state = "mounted" if r["complete"] else ("running" if r["owner_alive"] else "crashed")
            console.print(f"{r['run']}  {state:8} {r['mountpoint'] or '-'}  {r['target']}")
        return
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
    if failed:
        raise typer.Exit(3)
