"""``diskkit check TARGET [--disk-format F] [--json]``: is it safe to upload, and is it what
it is declared to be? Exit 0 safe and matching, 1 a finding blocks, 2 unreadable input."""

from __future__ import annotations

from diskkit import exitcodes
from diskkit.cli.output import emit_json


def check(target: str, disk_format: str | None = None, json_out: bool = False) -> int:
    """Run every safety check; exit 1 when a finding blocks upload."""
    from diskkit.errors import ImageError
    from diskkit.pipeline import inspect_target
    from diskkit.validate import upload as upl

    try:
        report = inspect_target(target, declared_format=disk_format, sections=False)
    except ImageError:  # a damaged header is a finding (validate), never exit 2
        return _damaged(target, disk_format, json_out)
    glance = upl.glance_for(target, disk_format, report.detection)  # what Glance does
    if glance is not None and glance.refused and report.safe:
        report.findings.append(upl.glance_finding(glance))  # Glance blocks what we passed
    if json_out:
        data = report.to_dict()
        data["declared_format"] = disk_format
        data["glance_accepts"] = glance.accepts if glance else None
        data["nova_accepts"] = glance.nova_accepts if glance else None
        data["glance"] = glance.to_dict() if glance else None
        emit_json(data)
    else:
        from diskkit.cli.info import print_findings, print_summary
        from diskkit.cli.output import console

        print_summary(report)
        if disk_format:
            console.print(f"  declared:      {disk_format}", markup=False)
        print_findings(report.findings)
        verdict = ("[green]SAFE[/green]: no finding blocks upload" if report.safe
                   else "[red]BLOCKED[/red]: " + ", ".join(
                       dict.fromkeys(f.code for f in report.findings if f.blocking)))
        console.print(verdict)
    return exitcodes.OK if report.safe else exitcodes.FINDINGS


def _damaged(target: str, disk_format: str | None, json_out: bool) -> int:
    """check's verdict on an image whose header cannot be read: exit 1 with the finding."""
    from diskkit.validate.upload import check_damaged

    up = check_damaged(target, disk_format)
    if json_out:
        data = {"target": target, **up.to_dict()}
        emit_json(data)
    else:
        from diskkit.cli.info import print_findings
        from diskkit.cli.output import console

        print_findings(up.findings)
        console.print("[red]BLOCKED[/red]: " + ", ".join(
            dict.fromkeys(f.code for f in up.findings if f.blocking)))
    return exitcodes.FINDINGS
