"""``diskkit convert``: one safe, verified conversion, or a batch from a manifest."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from diskkit import exitcodes
from diskkit.cli import output
from diskkit.cli.output import emit_json, human_size
from diskkit.errors import UserError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class _NoProgress:
    """What the commands use of rich's Progress, doing nothing: no terminal on stderr, so
    nothing to draw, and rich (some 40 ms of imports) is never loaded."""

    disable = True

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kw: Any) -> int:
        return 0

    def update(self, *args: Any, **kw: Any) -> None:
        return None

    def advance(self, *args: Any, **kw: Any) -> None:
        return None


def _progress() -> Progress:
    if not sys.stderr.isatty():
        return _NoProgress()  # type: ignore[return-value]
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=output.err_console,
                    transient=False, disable=not output.err_console.is_terminal)


def _print_findings(source: str, findings: list[dict[str, Any]]) -> None:
    output.console.print(f"[bold red]refused[/]: {source} is not safe to convert")
    for f in findings:
        output.console.print(f"  [{f['severity']}] {f['code']}: {f['message']}")
        if f.get("fix"):
            output.console.print(f"      fix: {f['fix']}")
    output.console.print("  (pass --allow-unsafe to convert it anyway)")


_HOW = {"qemu-img": "qemu-img compare",
        "digest": "source hashed during the copy, output read back and hashed by diskkit"}


def _summary(d: dict[str, Any]) -> None:
    rate = d["throughput_bytes_per_second"]
    if d["target_bytes"] is not None:
        written = f"occupies {human_size(d['target_bytes'])}"
    else:
        written = f"measured {human_size(d['required_bytes'])}"
    output.console.print(f"[bold green]converted[/] {d['source']} ({d['source_format']}) -> "
                  f"{d['target']} ({d['target_format']})")
    output.console.print(f"  virtual size {human_size(d['virtual_size'])}, {written}"
                  f", {d['convert_seconds']:.2f} s"
                  + (f" ({human_size(rate)}/s)" if rate else ""))
    if d["available_bytes"] is None:
        output.console.print("  room not checked: the target reports no free space (a Ceph cluster "
                      "without ceph-mgr keeps no pool statistics)")
    if d.get("copied_by") == "diskkit":
        output.console.print("  copied by diskkit through librbd (no qemu-img)")
    if d["verified"]:
        how = _HOW.get(d.get("verify_method") or "", "qemu-img compare")
        if d.get("verify_method") == "digest" and d["target"].startswith("rbd:"):
            how = "source hashed during the copy, the image's objects hashed by their OSDs"
        output.console.print(f"  verified identical ({how}, {d['verify_seconds']:.2f} s)")
    else:
        output.console.print("  not verified (--no-verify)")


def _single(source: str, target: str, fmt: str, **kw: Any) -> int:
    from diskkit.convert import Refused, Request, convert
    from diskkit.convert.progress import describe

    json_out = kw.pop("json_out")
    req = Request(source, target, fmt, **kw)
    try:
        with _progress() as progress:
            label = f"{source} -> {target}"
            task = progress.add_task(label, total=100)
            res = convert(req, on_update=lambda p: progress.update(
                task, completed=p.percent, description=f"{label} {describe(p)}"))
    except Refused as exc:
        findings = [f.to_dict() for f in exc.findings]
        if json_out:
            emit_json({"status": "refused", "source": source, "target": target,
                       "findings": findings})
        else:
            _print_findings(source, findings)
        return exitcodes.FINDINGS
    if json_out:
        emit_json(res.to_dict())
    else:
        _summary(res.to_dict())
    return exitcodes.OK


class _BatchView:
    """One progress view for a batch: a bar per running item and one for the whole."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.overall = progress.add_task("[bold]all items", total=total)
        self.tasks: dict[int, TaskID] = {}

    def start(self, index: int, item: Any) -> None:
        self.tasks[index] = self.progress.add_task(f"#{index + 1} {item.target}", total=100)

    def progress_(self, index: int, percent: float) -> None:
        if index in self.tasks:
            self.progress.update(self.tasks[index], completed=percent)

    def update_(self, index: int, label: str, p: Any) -> None:
        from diskkit.convert.progress import describe

        if index in self.tasks:
            self.progress.update(self.tasks[index], completed=p.percent,
                                 description=f"#{index + 1} {label} {describe(p)}")

    def done(self, index: int, outcome: dict[str, Any]) -> None:
        if index in self.tasks:
            self.progress.update(self.tasks[index], completed=100, visible=False)
        self.progress.advance(self.overall)
        if not self.progress.disable:
            self.progress.console.print(f"#{index + 1} {outcome['status']}: {outcome['target']}")


def _batch(manifest: str, jobs: int, force: bool, allow_unsafe: bool, json_out: bool) -> int:
    from diskkit.convert.batch import STATE_SUFFIX, Listener, load_manifest, run_batch

    items = load_manifest(manifest)
    with _progress() as progress:
        view = _BatchView(progress, len(items))

        class _L(Listener):
            def start(self, index: int, item: Any) -> None:
                view.start(index, item)

            def progress(self, index: int, percent: float) -> None:
                view.progress_(index, percent)

            def update(self, index: int, p: Any) -> None:
                view.update_(index, items[index].target, p)

            def done(self, index: int, outcome: dict[str, Any]) -> None:
                view.done(index, outcome)

        report = run_batch(items, state_path=manifest + STATE_SUFFIX, jobs=jobs, force=force,
                           allow_unsafe=allow_unsafe, listener=_L())
    if json_out:
        emit_json(report.to_dict())
    else:
        for o in report.outcomes:
            line = f"#{o['index']} {o['status']:9} {o['source']} -> {o['target']}"
            if o["status"] == "converted":
                line += f" ({o['convert_seconds']:.2f} s, verified)"
            elif o["status"] == "failed":
                line += f": {o['error']['code']}: {o['error']['message']}"
            elif o["status"] == "refused":
                line += ": " + ", ".join(f["code"] for f in o["findings"] if f)
            output.console.print(line, markup=False)
        c = report.counts()
        output.console.print(f"{len(items)} items: {c['converted']} converted, "
                             f"{c['skipped']} skipped (already done), {c['refused']} "
                             f"refused, {c['failed']} failed")
    return exitcodes.OK if report.ok else exitcodes.FINDINGS


def convert(source: str | None = None, target: str | None = None,
            output_format: str | None = None, source_format: str | None = None,
            compress: bool = False, preallocate: bool = False, no_verify: bool = False,
            force: bool = False, allow_unsafe: bool = False, jobs: int | None = None,
            option: list[str] | None = None, manifest: str | None = None,
            json_out: bool = False, copier: str = "auto") -> int:
    """Convert a disk image safely: detect and check the source, measure the room, convert
    with qemu-img under a temporary name, verify (docs/convert.md), rename. SIGTERM and
    Ctrl-C unwind (cli/main.py turns SIGTERM into KeyboardInterrupt): qemu-img is stopped and
    the partial output removed."""
    if manifest:
        if source or target:
            raise UserError("give either --manifest or SOURCE TARGET, not both",
                            code="bad-usage")
        return _batch(manifest, jobs or 2, force, allow_unsafe, json_out)
    if not source or not target or not output_format:
        raise UserError("convert needs SOURCE, TARGET and -O FORMAT (or --manifest)",
                        code="bad-usage", hint="diskkit convert in.vmdk out.qcow2 -O qcow2")
    return _single(source, target, output_format, src_format=source_format,
                   compress=compress, preallocate=preallocate, verify=not no_verify,
                   force=force, allow_unsafe=allow_unsafe, coroutines=jobs or 16,
                   options=tuple(option or ()), json_out=json_out,
                   copier=None if copier == "auto" else copier)
