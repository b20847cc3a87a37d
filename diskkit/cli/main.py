"""Entry point: runs the typer app and maps every outcome to an exit code, in one place.

Errors diskkit raises on purpose print one line (``diskkit: error: ...``) and a hint, never a
traceback. Anything else is a bug: one line asking for a report, the traceback only with
``--verbose``.
"""

from __future__ import annotations

import sys
import traceback

import typer

try:  # click itself, when typer depends on it
    from click.exceptions import Abort as _Abort
    from click.exceptions import ClickException as _ClickException
    from click.exceptions import Exit as _Exit
except ImportError:  # typer >= 0.2x vendors click as typer._click and has no click dependency
    from typer._click.exceptions import ClickException as _ClickException
    from typer.exceptions import Abort as _Abort
    from typer.exceptions import Exit as _Exit

from diskkit import exitcodes
from diskkit.errors import (
    DiskkitError,
    HostError,
    ImageError,
    InternalError,
    UserError,
)

_EXIT_FOR: list[tuple[type[DiskkitError], int]] = [
    (UserError, exitcodes.BAD_INPUT),
    (ImageError, exitcodes.BAD_INPUT),
    (HostError, exitcodes.HOST),
    (InternalError, exitcodes.INTERNAL),
]


def exit_code_for(exc: DiskkitError) -> int:
    """The exit code of a diskkit error (see :mod:`diskkit.exitcodes`)."""
    for cls, code in _EXIT_FOR:
        if isinstance(exc, cls):
            return code
    return exitcodes.INTERNAL


def _say(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> None:
    """Run diskkit with ``argv`` (default: sys.argv[1:]) and exit with its code."""
    from diskkit.cli.app import app

    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=args, prog_name="diskkit", standalone_mode=False)
    except _Exit as exc:
        rc = exc.exit_code
    except _Abort:
        _say("diskkit: interrupted")
        rc = exitcodes.INTERRUPTED
    except _ClickException as exc:
        # Bad usage: unknown option, missing argument.
        _say(f"diskkit: error: {exc.format_message()}")
        _say("  (see: diskkit --help)")
        rc = exitcodes.BAD_INPUT
    except KeyboardInterrupt:
        _say("diskkit: interrupted")
        rc = exitcodes.INTERRUPTED
    except DiskkitError as exc:
        _say(f"diskkit: error[{exc.code}]: {exc.message}")
        if exc.hint:
            _say(f"  hint: {exc.hint}")
        if verbose or isinstance(exc, InternalError):
            traceback.print_exc()
        rc = exit_code_for(exc)
    except BrokenPipeError:
        rc = exitcodes.OK
    except Exception as exc:  # a bug: say so in one line, details under --verbose
        _say(f"diskkit: internal error (a bug in diskkit, please report it): "
             f"{type(exc).__name__}: {exc}")
        if verbose:
            traceback.print_exc()
        else:
            _say("  hint: run again with --verbose for the traceback")
        rc = exitcodes.INTERNAL
    sys.exit(rc if isinstance(rc, int) else exitcodes.OK)
