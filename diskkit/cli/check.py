"""``diskkit check TARGET [--disk-format F] [--json]``: is it safe to upload, and is it what
it is declared to be? Exit 0 safe and matching, 1 a finding blocks, 2 unreadable input."""

from __future__ import annotations

from diskkit import exitcodes
from diskkit.cli.output import emit_json

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from diskkit.api import CheckReport


def check(target: str, disk_format: str | None = None, json_out: bool = False) -> int:
    """Run every safety check; exit 1 when a finding blocks upload. The verdict is
    :func:`diskkit.api.check`'s (one code path for the CLI and the Python API)."""
    from diskkit.api import check as check_image

    result = check_image(target, disk_format)
    if json_out:
        emit_json(result.to_dict())
    else:
        _print(result)
    if result.report is None:  # a damaged header: the finding says so, exit 1 (never 2)
        return exitcodes.FINDINGS
    return exitcodes.OK if result.safe else exitcodes.FINDINGS


def _print(result: CheckReport) -> None:
    """The text form of ``check``'s verdict."""
    from diskkit.cli.info import print_findings, print_summary
    from diskkit.cli.output import console

    report = result.report
    if report is not None:
        print_summary(report)
        if result.declared_format:
            console.print(f"  declared:      {result.declared_format}", markup=False)
    print_findings(result.findings)
    if report is not None and result.safe:
        console.print("[green]SAFE[/green]: no finding blocks upload")
    else:
        console.print("[red]BLOCKED[/red]: " + ", ".join(
            dict.fromkeys(f.code for f in result.findings if f.blocking)))
