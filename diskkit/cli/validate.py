"""``diskkit validate TARGET [--disk-format F] [--container-format C] [--cloud openstack]
[--json]``: the upload verdict (Glance's own, beside diskkit's), cloud readiness, and the
image properties to set. Exit 0 ready, 1 blocked, 5 ready with warnings, 2 bad input."""

from __future__ import annotations

from typing import Any

from diskkit.cli.output import emit_json


def validate_cmd(target: str, disk_format: str | None = None,
                 container_format: str | None = None, cloud: str = "openstack",
                 json_out: bool = False) -> int:
    """Validate an image for upload to OpenStack."""
    from diskkit.validate import validate

    v = validate(target, disk_format=disk_format, container_format=container_format,
                 cloud=cloud)
    if json_out:
        emit_json(v.to_json())
    else:
        _print(v)
    return v.exit_code


def _print(v: Any) -> None:
    from diskkit.cli.info import print_findings
    from diskkit.cli.output import console, human_size

    up = v.upload
    d = up.detection
    say = console.print
    say(f"[bold]{v.target}[/bold]")
    if d is not None:
        say(f"  format:        {d.format}, virtual size {human_size(d.virtual_size)}",
            markup=False)
    g = up.glance
    if g is not None:
        verdict = "accepts" if g.accepts else "REFUSES"
        say(f"  Glance:        {verdict} it as disk_format {g.disk_format} (oslo.utils "
            f"{g.oslo_version} sees {g.oslo_format})", markup=False)
        if g.reason:
            say(f"                 {g.reason}", markup=False)
        nova = "boots" if g.nova_accepts else "REFUSES to boot"
        say(f"  Nova:          {nova} it as disk_format {g.disk_format}", markup=False)
        if g.nova_reason and g.nova_reason != g.reason:
            say(f"                 {g.nova_reason}", markup=False)
    for diff in up.differences:
        say(f"  differs:       diskkit {diff['diskkit']}, oslo {diff['oslo']}: {diff['why']}",
            markup=False)
    say("[bold]upload[/bold]")
    print_findings(up.findings)
    if up.convert:
        say(f"  convert:       {up.convert}", markup=False)
    say("[bold]cloud readiness[/bold]")
    print_findings(v.readiness)
    for note in v.notes:
        say(f"  note: {note}", markup=False)
    if v.properties is not None and v.properties.values:
        say("[bold]properties[/bold]")
        for key, value in v.properties.values.items():
            why = v.properties.evidence.get(key, "")
            say(f"  {key}={value}  ({why})", markup=False)
    if v.command:
        say("[bold]upload with[/bold]")
        say(f"  {v.command}", markup=False, soft_wrap=True)
    colour = {"ready": "green", "warnings": "yellow", "blocked": "red"}[v.verdict]
    say(f"[{colour}]{v.verdict.upper()}[/{colour}]")
