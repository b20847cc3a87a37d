"""``diskkit scan rbd:POOL [--namespace NS] [--jobs N] [--json]``: every image of a Ceph pool:
size, format of its bytes, parent, safety, bootability, and the images that are not raw.
Exit 0 when nothing is flagged, 1 when an image is not raw, unsafe or unreadable."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from diskkit import exitcodes
from diskkit.cli.output import emit_json, human_size
from diskkit.errors import UserError

if TYPE_CHECKING:
    from diskkit.rbd.scan import ScanResult, ScanRow

_BOOT = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "[yellow]?[/yellow]"}


def _print(result: ScanResult) -> None:
    from rich.table import Table

    from diskkit.cli.output import console
    from diskkit.rbd.chain import raw_like
    from diskkit.rbd.scan import BOOT_METHOD

    where = result.pool + (f"/{result.namespace}" if result.namespace else "")
    table = Table(title=f"rbd:{where}: {len(result.rows)} images "
                  f"({result.seconds:.1f} s)", box=None, header_style="bold")
    for col in ("image", "size", "allocated", "format", "parent", "safe", "boots"):
        table.add_column(col, overflow="fold")
    for r in result.rows:
        if r.error:
            table.add_row(r.image, "", "", "[red]error[/red]", r.error, "", "")
            continue
        fmt = r.format or "?"
        if r.raw is False and not raw_like(r.format):
            fmt = f"[red]{fmt}[/red]"
        parent = r.parent or ""
        if r.parent and r.parent_format:
            style = "red" if r.raw is False else ""
            parent = f"{r.parent} ([{style}]{r.parent_format}[/{style}])" if style else \
                f"{r.parent} ({r.parent_format})"
        table.add_row(r.image, human_size(r.size), human_size(r.allocated), fmt, parent,
                      "[green]yes[/green]" if r.safe else "[red]NO[/red]",
                      _BOOT[r.will_boot])
    console.print(table)
    console.print(f"bootability: {BOOT_METHOD}", markup=False)
    bad = result.not_raw
    if bad:
        console.print(f"[red]{len(bad)} image(s) whose bytes are not raw[/red] (cannot be "
                      "cloned copy-on-write, will not boot as volumes):")
        for r in bad:
            own = not raw_like(r.format)
            why = f"holds {r.format}" if own else f"parent {r.parent} holds {r.parent_format}"
            if own and r.parent and r.parent_format is not None \
                    and not raw_like(r.parent_format):
                why += f" (clone of {r.parent}, whose chain holds {r.parent_format})"
            console.print(f"  {r.spec}: {why}", markup=False)
    else:
        console.print("[green]every image's bytes are raw[/green]")
    flagged = result.flagged
    others = [r for r in flagged if r.raw is not False]
    for r in others:
        console.print(f"  flagged {r.spec}: {r.error or 'unsafe: ' + ', '.join(r.findings)}",
                      markup=False)


def scan(pool: str, namespace: str | None = None, jobs: int = 4,
         json_out: bool = False) -> int:
    """Check every image of a Ceph pool; exit 1 when any is not raw, unsafe or unreadable."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from diskkit.cli.output import err_console
    from diskkit.rbd.scan import scan_pool
    from diskkit.target import parse_target

    target = parse_target(pool)
    if target.kind != "rbd":
        raise UserError(f"{pool}: scan takes an RBD pool", code="bad-uri",
                        hint="write rbd:POOL (e.g. rbd:images, rbd:volumes)")
    if target.image is not None:
        raise UserError(f"{pool}: names an image; scan takes a pool", code="bad-uri",
                        hint=f"write rbd:{target.pool} (--namespace NS for a namespace), or "
                        f"use: diskkit info {pool}")
    show = not json_out and sys.stderr.isatty()
    with Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=not show) as progress:
        task = progress.add_task("", total=None)

        def step(row: ScanRow, total: int) -> None:
            progress.update(task, total=total, advance=1, description=row.image)

        result = scan_pool(target, jobs=jobs, namespace=namespace, progress=step)
    if json_out:
        emit_json(result.to_dict())
    else:
        _print(result)
    return exitcodes.FINDINGS if result.flagged else exitcodes.OK
