"""``diskkit doctor``: what this host can do for attach/mount, and what to install for the rest."""

from __future__ import annotations

import typer

from diskkit.cli.app import app
from diskkit.cli.output import console, emit_json


@app.command()
def doctor(
    json_out: bool = typer.Option(False, "--json", help="Print JSON (docs/json.md)."),
    no_kvm_probe: bool = typer.Option(False, "--no-kvm-probe",
                                      help="Skip the KVM probe (a few seconds)."),
) -> None:
    """Check kernel modules, programs, Python bindings, FUSE and KVM; say what is missing."""
    from diskkit.doctor import check_host

    checks = check_host(probe_kvm=not no_kvm_probe)
    if json_out:
        emit_json({"checks": [c.to_dict() for c in checks],
                   "missing": [c.name for c in checks if c.ok is False]})
        return
    for c in checks:
        mark = {True: "ok  ", False: "MISSING", None: "?   "}[c.ok]
        line = f"{mark:7} {c.kind:17} {c.name:20} {c.detail}  [{c.needed_for}]"
        console.print(line, markup=False, soft_wrap=True)
        if c.fix and c.ok is not True:
            console.print(f"        fix: {c.fix}", markup=False, soft_wrap=True)
