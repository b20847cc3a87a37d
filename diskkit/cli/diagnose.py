"""``diskkit diagnose TARGET [-f FORMAT] [--firmware bios|uefi|auto] [--as disk|cdrom]
[--verify] [--json]``: will it boot, and if not, why, with the evidence and the fix.
Exit 0 will boot, 1 will not, 4 cannot tell (and with --verify: firmware disagreed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from diskkit import exitcodes
from diskkit.cli.output import emit_json

if TYPE_CHECKING:
    from diskkit.diagnose import Diagnosis
    from diskkit.findings import Finding

_VERDICT = {True: "[green]WILL BOOT[/green]", False: "[red]WILL NOT BOOT[/red]",
            None: "[yellow]CANNOT TELL[/yellow]"}


def _exit(will_boot: bool | None) -> int:
    if will_boot is None:
        return exitcodes.UNKNOWN
    return exitcodes.OK if will_boot else exitcodes.FINDINGS


def print_finding(f: Finding, first: bool) -> None:
    """A finding: code and message, its evidence, its fix."""
    from diskkit.cli.output import console

    tag = "cause" if first else str(f.severity)
    console.print(f"  [bold]{tag}[/bold] {f.code}: ", end="")
    console.print(f.message, markup=False, soft_wrap=True)
    for e in f.evidence:
        where = f" @0x{e.offset:x}" if e.offset is not None else ""
        data = f" = {e.data.hex(' ')}" if e.data else ""
        console.print(f"    evidence{where}{data}: {e.note}", markup=False, soft_wrap=True)
    if f.fix:
        console.print(f"    fix: {f.fix}", markup=False, soft_wrap=True)


def print_diagnosis(d: Diagnosis) -> None:
    """The human form: verdict line, reason, findings cause first."""
    from diskkit.cli.output import console

    console.print(f"{d.target}: {_VERDICT[d.will_boot]} ({d.firmware}, as {d.media} on "
                  f"{d.bus}, opened as {d.format}; the bytes are {d.detected_format})",
                  soft_wrap=True)
    console.print(f"  reaches {d.reaches}" + (f" ({d.outcome})" if d.outcome else "")
                  + f": {d.reason}", markup=False, soft_wrap=True)
    for s in d.stages:
        if s.verdict == "not-checked":
            continue
        console.print(f"    {s.name}: {s.verdict}: {s.reason}", markup=False, soft_wrap=True)
        for line in s.evidence:
            console.print(f"      {line}", markup=False, soft_wrap=True)
    for i, f in enumerate(d.findings):
        print_finding(f, i == 0 and d.will_boot is False)


def diagnose_cmd(target: str, fmt: str | None = None, firmware: str = "auto",
                 media: str = "disk", do_verify: bool = False, timeout: float | None = None,
                 json_out: bool = False, bus: str = "virtio") -> int:
    """Say whether the target will boot, why not, and the fix."""
    from diskkit.diagnose import diagnose
    from diskkit.verify import verify

    if not do_verify:
        d = diagnose(target, fmt, firmware=firmware, media=media, bus=bus)
        if json_out:
            emit_json(d.to_dict())
        else:
            print_diagnosis(d)
        return _exit(d.will_boot)
    v = verify(target, fmt, firmware=firmware, media=media, bus=bus, timeout=timeout)
    if json_out:
        emit_json(v.to_dict())
    else:
        from diskkit.cli.output import console

        print_diagnosis(v.diagnosis)
        b = v.boot
        console.print(f"  firmware boot ({b.firmware}, {b.accel}, {b.seconds:.1f} s): "
                      f"{b.outcome}" + (f" ({b.loader})" if b.loader else "")
                      + (f", stage {b.stage}" if b.stage else ""),
                      markup=False, soft_wrap=True)
        for line in b.evidence[-4:]:
            console.print(f"    boot: {line}", markup=False, soft_wrap=True)
        for m in b.messages[-4:]:
            console.print(f"    firmware: {m}", markup=False, soft_wrap=True)
        state = {True: "[green]AGREE[/green]", False: "[red]DISAGREE[/red]: the prediction "
                 "is wrong, please report it", None: "[yellow]NOT COMPARED[/yellow]: one side "
                 "could not tell"}[v.agree]
        console.print(f"  verify: {state}", soft_wrap=True)
    if v.agree is False or v.agree is None:
        return exitcodes.UNKNOWN
    return _exit(v.diagnosis.will_boot)
