"""``diskkit check TARGET [--disk-format F] [--json]``: is it safe to upload, and is it what
it is declared to be? Exit 0 safe and matching, 1 a finding blocks, 2 unreadable input."""

from __future__ import annotations

import typer

from diskkit import exitcodes
from diskkit.cli.app import app
from diskkit.cli.info import print_findings, print_summary
from diskkit.cli.output import console, emit_json
from diskkit.disk import inspect_target


@app.command()
def check(
    target: str = typer.Argument(..., help="Image path, nbd:// URI or rbd:POOL/IMAGE."),
    disk_format: str | None = typer.Option(
        None, "--disk-format", help="The format the image is declared as (Glance disk_format)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (docs/json.md)."),
) -> None:
    """Run every safety check; exit 1 when a finding blocks upload."""
    report = inspect_target(target, declared_format=disk_format, sections=False)
    if json_out:
        data = report.to_dict()
        data["declared_format"] = disk_format
        emit_json(data)
    else:
        print_summary(report)
        if disk_format:
            console.print(f"  declared:      {disk_format}", markup=False)
        print_findings(report.findings)
        verdict = ("[green]SAFE[/green]: no finding blocks upload" if report.safe
                   else "[red]BLOCKED[/red]: " + ", ".join(
                       dict.fromkeys(f.code for f in report.findings if f.blocking)))
        console.print(verdict)
    raise typer.Exit(exitcodes.OK if report.safe else exitcodes.FINDINGS)
