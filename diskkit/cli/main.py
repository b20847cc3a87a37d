"""Entry point: parses the command line (argparse, from the table in
:mod:`diskkit.cli.commands`), imports and runs the one command asked for, and maps every
outcome to an exit code, in one place (docs/cli.md "Exit codes").

Errors diskkit raises on purpose print one line (``diskkit: error[CODE]: ...``) and a hint,
never a traceback. Anything else is a bug: one line asking for a report, the traceback only with
``--verbose``. SIGTERM and SIGHUP are handled like Ctrl-C (what was set up is torn down), then
diskkit exits 128+N; a closed stdout (``diskkit info x | head -1``) ends the command quietly
with 141, as a program killed by SIGPIPE would.
"""

from __future__ import annotations

import os
import signal
import sys

from diskkit import __version__, exitcodes

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    import argparse
    from types import FrameType
    from typing import Any, NoReturn

    from diskkit.errors import DiskkitError

PROG = "diskkit"
DESCRIPTION = ("Inspect, check, diagnose, mount and convert virtual disk images "
               "(qcow2, raw, VMDK, VHD(X), VDI, ISO, Ceph RBD).")


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C (every ``finally`` runs), exit 128+N."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class UsageError(Exception):
    """Bad usage: an unknown option, a missing argument, a bad option value (exit 2)."""

    def __init__(self, message: str, command: str | None) -> None:
        super().__init__(message)
        self.command = command


def exit_code_for(exc: DiskkitError) -> int:
    """The exit code of a diskkit error (see :mod:`diskkit.exitcodes`)."""
    from diskkit.errors import HostError, ImageError, InternalError, UserError

    for cls, code in ((UserError, exitcodes.BAD_INPUT), (ImageError, exitcodes.BAD_INPUT),
                      (HostError, exitcodes.HOST), (InternalError, exitcodes.INTERNAL)):
        if isinstance(exc, cls):
            return code
    return exitcodes.INTERNAL


def _say(message: str) -> None:
    try:
        sys.stderr.write(message.rstrip("\n") + "\n")
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Signalled(signum)


def _untranslated(argparse: Any) -> None:
    """argparse passes each of its texts through gettext, and gettext looks for a message
    catalog on disk at every call (60-odd stat walks while the parser is built: several ms
    per start). When the locale has no catalog for the current domain, every such call
    returns its text unchanged: say so to argparse once, which is the same output."""
    import gettext

    domain = gettext.textdomain()
    if gettext.find(domain, gettext.bindtextdomain(domain)) is None:
        argparse._ = lambda message: message
        argparse.ngettext = lambda singular, plural, n: singular if n == 1 else plural


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with ``only``, the arguments of that one command
    (``only=""``: of none; the top-level help needs only the names): a faster start."""
    import argparse

    from diskkit.cli.commands import COMMANDS

    _untranslated(argparse)

    class Formatter(argparse.HelpFormatter):
        """argparse makes a formatter per argument added; asking the terminal's width once
        (without importing shutil) keeps building the parser cheap."""

        width: int | None = None

        def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                     width: int | None = None) -> None:
            if width is None:
                if Formatter.width is None:
                    try:
                        cols = int(os.environ.get("COLUMNS", "0")) or \
                            os.get_terminal_size(sys.stdout.fileno()).columns
                    except (OSError, ValueError):
                        cols = 80
                    Formatter.width = max(cols - 2, 40)
                width = Formatter.width
            super().__init__(prog, indent_increment, max_help_position, width)

    class Parser(argparse.ArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", Formatter)
            super().__init__(*args, **kwargs)

        def error(self, message: str) -> NoReturn:
            name = self.prog.split()[1] if " " in self.prog else None
            raise UsageError(message, name)

    parser = Parser(prog=PROG, description=DESCRIPTION, allow_abbrev=False,
                    epilog="Run `diskkit COMMAND --help` for a command's options. Exit codes: "
                    "docs/cli.md.")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="Log every external command and what diskkit reads.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                        help="Show the version and exit.")
    sub = parser.add_subparsers(dest="_command", metavar="COMMAND", title="commands",
                                parser_class=Parser)
    for name, (_where, help_text, args) in COMMANDS.items():
        if only in COMMANDS and name != only:
            continue  # parsing one known command needs only its parser (no help lists all)
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        if only is not None and name != only:
            continue
        for flags, kwargs in args:
            p.add_argument(*flags, **kwargs)
        p.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS,
                       help="Log every external command and what diskkit reads.")
    return parser


def _command_of(args: list[str]) -> str | None:
    """The command named in ``args`` (the first word that is not an option), if any."""
    from diskkit.cli.commands import COMMANDS

    for a in args:
        if a == "--":
            return None
        if not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def _run(args: list[str]) -> int:
    from diskkit.cli.commands import COMMANDS

    if not args:
        build_parser(only="").print_help()
        return exitcodes.BAD_INPUT
    ns = build_parser(only=_command_of(args) or "").parse_args(args)
    kwargs = vars(ns)
    verbose = bool(kwargs.pop("verbose", False))
    name = kwargs.pop("_command")
    if name is None:
        raise UsageError("a command is required", None)
    if verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="diskkit: %(name)s: %(message)s")
        logging.getLogger("diskkit").setLevel(logging.DEBUG)
    module, function = COMMANDS[name][0].split(":")
    import importlib

    handler = getattr(importlib.import_module(module), function)
    rc = handler(**kwargs)
    sys.stdout.flush()
    return exitcodes.OK if rc is None else int(rc)


def _quiet_stdout() -> None:
    """After EPIPE: point fd 1 at /dev/null so the interpreter's last flush cannot complain."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def run_cli(args: list[str]) -> int:
    """Run diskkit with ``args``; return the exit code (never raises, never exits)."""
    mine = args[:args.index("--")] if "--" in args else args  # not `run`'s COMMAND's -v
    verbose = "-v" in mine or "--verbose" in mine
    try:
        return _run(args)
    except UsageError as exc:
        command = exc.command or _command_of(args)
        _say(f"diskkit: error[bad-usage]: {exc}")
        _say(f"  hint: see: diskkit {command + ' ' if command else ''}--help")
        return exitcodes.BAD_INPUT
    except SystemExit as exc:  # argparse's --help and --version
        code = exc.code
        return code if isinstance(code, int) else (exitcodes.OK if code is None else 1)
    except BrokenPipeError:
        _quiet_stdout()
        return exitcodes.BROKEN_PIPE
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        _say("diskkit: interrupted" if signum == signal.SIGINT else "diskkit: terminated")
        return 128 + signum
    except Exception as exc:
        from diskkit.errors import DiskkitError, InternalError

        if isinstance(exc, DiskkitError):
            _say(f"diskkit: error[{exc.code}]: {exc.message}")
            if exc.hint:
                _say(f"  hint: {exc.hint}")
            if verbose or isinstance(exc, InternalError):
                import traceback

                traceback.print_exc()
            return exit_code_for(exc)
        if isinstance(exc, OSError) and exc.errno == 32:  # EPIPE wrapped by a library
            _quiet_stdout()
            return exitcodes.BROKEN_PIPE
        # a bug: say so in one line, details under --verbose
        _say(f"diskkit: internal error (a bug in diskkit, please report it): "
             f"{type(exc).__name__}: {exc}")
        if verbose:
            import traceback

            traceback.print_exc()
        else:
            _say("  hint: run again with --verbose for the traceback")
        return exitcodes.INTERNAL


def main(argv: list[str] | None = None) -> NoReturn:
    """Run diskkit with ``argv`` (default: sys.argv[1:]) and exit with its code."""
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    rc = run_cli(sys.argv[1:] if argv is None else list(argv))
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        _quiet_stdout()
        rc = rc or exitcodes.BROKEN_PIPE
    sys.exit(rc)
