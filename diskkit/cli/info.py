"""``diskkit info TARGET [--json] [-f FORMAT]``: what the image is, its sizes, its details,
and every finding."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from diskkit.boot.report import print_boot
from diskkit.cli.app import app
from diskkit.cli.output import console, emit_json, human_size
from diskkit.cli.render import LAYOUT_KEYS, print_bar, write_svg
from diskkit.disk import ImageReport, inspect_target
from diskkit.findings import Finding, Severity

_STYLE = {Severity.INFO: "cyan", Severity.WARNING: "yellow", Severity.ERROR: "red",
          Severity.CRITICAL: "bold red"}


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v)
    return str(v)


def print_findings(findings: list[Finding]) -> None:
    """The findings as a rich table, with each fix under it."""
    if not findings:
        console.print("[green]no findings[/green]")
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("severity")
    table.add_column("code")
    table.add_column("message", overflow="fold")
    for f in findings:
        style = _STYLE.get(f.severity, "")
        table.add_row(f"[{style}]{f.severity}[/{style}]", f.code, f.message)
    console.print(table)
    for f in findings:
        if f.fix:
            console.print(f"  fix ({f.code}): {f.fix}", markup=False)


def print_summary(report: ImageReport) -> None:
    """Format, sizes and verdict, one per line."""
    d = report.detection
    console.print(f"[bold]{report.target}[/bold]", markup=True, highlight=False)
    matched = ", ".join(d.formats_matched) or "nothing but raw"
    console.print(f"  format:        {d.format}   (matched: {matched})", markup=False)
    vs = d.virtual_size
    shown = f"{human_size(vs)} ({vs} bytes)" if vs is not None else "unknown (not a disk)"
    console.print(f"  virtual size:  {shown}", markup=False)
    console.print(f"  file size:     {human_size(d.size)} ({d.size} bytes); allocated "
                  f"{human_size(report.actual_size)}", markup=False)
    if d.partition_table:
        console.print(f"  partition table signature: {_value(d.partition_table)}",
                      markup=False)


@app.command()
def info(
    target: str = typer.Argument(..., help="Image path, nbd:// URI or rbd:POOL/IMAGE."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (docs/json.md)."),
    fmt: str | None = typer.Option(None, "--format", "-f",
                                   help="Read the disk as this format (detection still runs)."),
    svg: str | None = typer.Option(None, "--svg", metavar="FILE",
                                   help="Also write the disk layout, drawn to scale, as SVG."),
) -> None:
    """Show what an image is: format, sizes, details, sections and findings."""
    report = inspect_target(target, fmt)
    layout = report.layout
    if svg:
        write_svg(layout, svg)
    if json_out:
        emit_json(report.to_dict())
        return
    print_summary(report)
    for key, value in report.detection.details.items():
        console.print(f"  {key}: {_value(value)}", markup=False)
    for name, value in report.sections.items():
        if name in LAYOUT_KEYS and layout is not None:
            continue
        if name == "boot":
            print_boot(value, console)
            continue
        if name == "rbd":  # Ceph RBD facts and clone chain (diskkit/rbd/chain.py)
            from diskkit.rbd.chain import print_rbd

            print_rbd(value, console)
            continue
        console.print(f"  [bold]{name}[/bold]: {_value(value)}", markup=True)
    if layout is not None:
        print_bar(layout, console)
    print_findings(report.findings)
    verdict = "[green]safe[/green]" if report.safe else "[red]UNSAFE[/red]"
    console.print(f"verdict: {verdict}")
