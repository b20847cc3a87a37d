"""``diskkit info TARGET [--json] [-f FORMAT]``: what the image is, its sizes, its details,
and every finding."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diskkit.cli.output import emit_json, human_size

if TYPE_CHECKING:
    from diskkit.findings import Finding
    from diskkit.pipeline import ImageReport

_STYLE = {"info": "cyan", "warning": "yellow", "error": "red", "critical": "bold red"}


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v)
    return str(v)


def print_findings(findings: list[Finding]) -> None:
    """The findings as a rich table, with each fix under it."""
    from rich.table import Table

    from diskkit.cli.output import console

    if not findings:
        console.print("[green]no findings[/green]")
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("severity")
    table.add_column("code")
    table.add_column("message", overflow="fold")
    for f in findings:
        style = _STYLE.get(str(f.severity), "")
        table.add_row(f"[{style}]{f.severity}[/{style}]", f.code, f.message)
    console.print(table)
    for f in findings:
        if f.fix:
            console.print(f"  fix ({f.code}): {f.fix}", markup=False)


def print_summary(report: ImageReport) -> None:
    """Format, sizes and verdict, one per line."""
    from diskkit.cli.output import console

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


def info(target: str, json_out: bool = False, fmt: str | None = None,
         svg: str | None = None) -> int:
    """Show what an image is: format, sizes, details, sections and findings."""
    from diskkit.pipeline import inspect_target

    if fmt is not None:  # a bad -f is bad usage (exit 2), not a layout error in the report
        from diskkit.formats import registry

        registry.get(fmt)
    report = inspect_target(target, fmt)
    layout = report.layout
    if svg:
        from diskkit.cli.render import write_svg

        write_svg(layout, svg)
    if json_out:
        emit_json(report.to_dict())
        return 0
    _print_info(report)
    return 0


def _print_rbd(section: dict[str, Any]) -> None:
    """The ``rbd`` section for a person: object layout, allocation and the clone chain."""
    from diskkit.cli.output import console

    feats = ", ".join(section.get("features", [])) or "none"
    allocated = section["actual_size"]
    alloc = f"{allocated} bytes allocated" if allocated is not None else \
        "allocation unknown (no fast-diff)"
    console.print(f"  rbd:           {section['objects']} objects of {section['object_size']} "
                  f"bytes, {alloc}; features: {feats}", markup=False)
    parents = section.get("parents", [])
    if not parents:
        console.print("  parent:        none (not a clone)", markup=False)
    for depth, link in enumerate(parents, 1):
        what = link["error"] or f"{link['format']}, {link['virtual_size']} bytes"
        label = "parent:" if depth == 1 else f"  ancestor {depth}:"
        console.print(f"  {label:<14} {link['spec']} ({what})", markup=False)


def _print_info(report: ImageReport) -> None:
    from diskkit.boot.report import boot_lines
    from diskkit.cli.output import console
    from diskkit.cli.render import LAYOUT_KEYS, print_bar

    layout = report.layout
    print_summary(report)
    for key, value in report.detection.details.items():
        console.print(f"  {key}: {_value(value)}", markup=False)
    for name, value in report.sections.items():
        if name in LAYOUT_KEYS and layout is not None:
            continue
        if name == "boot":
            for line in boot_lines(value):
                console.print(line, markup=False, highlight=False)
            continue
        if name == "rbd":  # Ceph RBD facts and clone chain (diskkit/rbd/chain.py)
            _print_rbd(value)
            continue
        if name == "os" and report.guest is not None:  # diskkit/guest/report.py
            from diskkit.guest.report import summary_lines

            console.print("  [bold]os[/bold]:", markup=True)
            for line in summary_lines(report.guest):
                console.print("    " + line, markup=False, highlight=False, soft_wrap=True)
            continue
        console.print(f"  [bold]{name}[/bold]: {_value(value)}", markup=True)
    if layout is not None:
        print_bar(layout, console)
    print_findings(report.findings)
    verdict = "[green]safe[/green]" if report.safe else "[red]UNSAFE[/red]"
    console.print(f"verdict: {verdict}")
