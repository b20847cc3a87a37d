"""``diskkit doctor``: what this host can do for attach/mount, and what to install for the rest."""

from __future__ import annotations

from diskkit.cli.output import emit_json


def doctor(json_out: bool = False, no_kvm_probe: bool = False) -> int:
    """Check kernel modules, programs, Python bindings, FUSE and KVM; say what is missing."""
    from diskkit.doctor import check_host

    checks = check_host(probe_kvm=not no_kvm_probe)
    if json_out:
        emit_json({"checks": [c.to_dict() for c in checks],
                   "missing": [c.name for c in checks if c.ok is False]})
        return 0
    from diskkit.cli.output import console

    for c in checks:
        mark = {True: "ok  ", False: "MISSING", None: "?   "}[c.ok]
        line = f"{mark:7} {c.kind:17} {c.name:20} {c.detail}  [{c.needed_for}]"
        console.print(line, markup=False, soft_wrap=True)
        if c.fix and c.ok is not True:
            console.print(f"        fix: {c.fix}", markup=False, soft_wrap=True)
    return 0
