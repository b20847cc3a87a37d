"""The typer application. Each command lives in its own module and registers itself on
:data:`app` when imported; the imports at the bottom are the list of commands."""

from __future__ import annotations

import logging

import typer

from diskkit import __version__

app = typer.Typer(
    name="diskkit",
    help="Inspect, check, diagnose, mount and convert virtual disk images "
    "(qcow2, raw, VMDK, VHD(X), VDI, ISO, Ceph RBD).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"diskkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log every external command and what diskkit reads."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """diskkit: exact, fast and safe answers about virtual disk images."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="diskkit: %(name)s: %(message)s")
    logging.getLogger("diskkit").setLevel(level)


# The commands. Each module decorates functions with @app.command().
# (Keep one import per line: several people add to this list.)

from diskkit.cli import boot_test as _boot_test  # noqa: E402,F401
from diskkit.cli import check as _check  # noqa: E402,F401
from diskkit.cli import convert as _convert  # noqa: E402,F401
from diskkit.cli import diagnose as _diagnose  # noqa: E402,F401
from diskkit.cli import doctor as _doctor  # noqa: E402,F401
from diskkit.cli import info as _info  # noqa: E402,F401
from diskkit.cli import mount as _mount  # noqa: E402,F401
from diskkit.cli import scan as _scan  # noqa: E402,F401
