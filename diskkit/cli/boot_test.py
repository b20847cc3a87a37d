"""``diskkit boot-test TARGET [-f FORMAT] [--firmware bios|uefi] [--as disk|cdrom]
[--bus virtio|ide|sata|scsi] [--timeout S] [--screenshot PNG] [--json]``: boot it read-only
under real firmware. Exit 0 a boot loader or kernel was reached, 1 not, 4 timeout."""

from __future__ import annotations

import typer

from diskkit import exitcodes
from diskkit.boottest import boot_test
from diskkit.cli.app import app
from diskkit.cli.output import console, emit_json


@app.command("boot-test")
def boot_test_cmd(
    target: str = typer.Argument(..., help="Image path, nbd:// URI or rbd:POOL/IMAGE."),
    fmt: str | None = typer.Option(None, "-f", "--format",
                                   help="The format qemu opens it with (default: detected)."),
    firmware: str = typer.Option("bios", "--firmware", help="bios (SeaBIOS) or uefi (OVMF)."),
    media: str = typer.Option("disk", "--as", help="disk or cdrom."),
    bus: str = typer.Option("virtio", "--bus", help="virtio, ide, sata or scsi."),
    timeout: float = typer.Option(60.0, "--timeout", help="Give up after this many seconds."),
    screenshot: str | None = typer.Option(None, "--screenshot",
                                          help="Save the screen as a PNG at the end."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (docs/json.md)."),
) -> None:
    """Boot the target (never written: a snapshot overlay) and report the outcome."""
    o = boot_test(target, fmt, firmware=firmware, media=media, bus=bus, timeout=timeout,
                  screenshot=screenshot)
    if json_out:
        emit_json(o.to_dict())
    else:
        console.print(f"{target}: {o.outcome}" + (f" ({o.loader})" if o.loader else "")
                      + f"  [{o.firmware}, as {o.media} on {o.bus}, {o.format}, {o.accel}, "
                      f"{o.seconds:.1f} s]", markup=False, soft_wrap=True)
        for m in o.messages:
            console.print(f"  firmware: {m}", markup=False, soft_wrap=True)
        if o.screen.strip():
            console.print("  screen:", markup=False, soft_wrap=True)
            for line in o.screen.strip().splitlines()[-12:]:
                console.print(f"  | {line}", markup=False, soft_wrap=True)
        if o.screenshot:
            console.print(f"  screenshot: {o.screenshot}", markup=False, soft_wrap=True)
    raise typer.Exit({True: exitcodes.OK, False: exitcodes.FINDINGS}.get(
        o.booted, exitcodes.UNKNOWN))
