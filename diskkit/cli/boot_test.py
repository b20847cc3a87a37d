"""``diskkit boot-test TARGET [-f FORMAT] [--firmware bios|uefi] [--as disk|cdrom]
[--bus virtio|ide|sata|scsi] [--timeout S] [--screenshot PNG] [--until loader|login]
[--expect OUTCOME] [--json]``: boot it read-only under real firmware. Exit 0 a boot loader or
kernel was reached (--until login: the expected outcome, login by default), 1 not, 4 timeout."""

from __future__ import annotations

from diskkit import exitcodes
from diskkit.cli.output import emit_json


def boot_test_cmd(target: str, fmt: str | None = None, firmware: str = "bios",
                  media: str = "disk", bus: str = "virtio", timeout: float = 60.0,
                  screenshot: str | None = None, json_out: bool = False,
                  until: str = "loader", expect: str | None = None) -> int:
    """Boot the target (never written: a snapshot overlay) and report the outcome."""
    from diskkit.boottest import boot_test

    if until == "login" and expect is None:
        expect = "login"
    o = boot_test(target, fmt, firmware=firmware, media=media, bus=bus, timeout=timeout,
                  screenshot=screenshot, until=until, expect=expect)
    if json_out:
        emit_json(o.to_dict())
    else:
        from diskkit.cli.output import console

        console.print(f"{target}: {o.outcome}" + (f" ({o.loader})" if o.loader else "")
                      + f"  [{o.firmware}, as {o.media} on {o.bus}, {o.format}, {o.accel}, "
                      f"{o.seconds:.1f} s]", markup=False, soft_wrap=True)
        for m in o.messages:
            console.print(f"  firmware: {m}", markup=False, soft_wrap=True)
        if o.stage:
            console.print(f"  reached: {o.stage}" + (f" (expected {o.expected}: "
                          f"{'yes' if o.as_expected else 'NO'})" if o.expected else ""),
                          markup=False, soft_wrap=True)
        for line in o.evidence:
            console.print(f"  evidence: {line}", markup=False, soft_wrap=True)
        if o.screen.strip():
            console.print("  screen:", markup=False, soft_wrap=True)
            for line in o.screen.strip().splitlines()[-12:]:
                console.print(f"  | {line}", markup=False, soft_wrap=True)
        if o.screenshot:
            console.print(f"  screenshot: {o.screenshot}", markup=False, soft_wrap=True)
    if o.outcome == "timeout":
        return exitcodes.UNKNOWN
    if o.expected is not None:
        return exitcodes.OK if o.as_expected else exitcodes.FINDINGS
    return exitcodes.OK if o.booted else exitcodes.FINDINGS
