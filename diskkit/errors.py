"""Errors, split by whose fault they are.

The command line maps each class to an exit code in exactly one place
(:mod:`diskkit.cli.main`) and prints one line: ``diskkit: error[code]: message`` and, when there
is one, a hint that says what to do. Only :class:`InternalError` and exceptions that are not
:class:`DiskkitError` are bugs in diskkit; they are the only ones that may show a traceback, and
only under ``--verbose``.
"""

from __future__ import annotations


class DiskkitError(Exception):
    """Base of every error diskkit raises on purpose.

    ``code`` is a stable kebab-case identifier scripts may match on; ``hint`` says what to do.
    """

    default_code = "diskkit-error"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UserError(DiskkitError):
    """The user's input is wrong: a missing file, a bad URI, an unknown option value."""

    default_code = "bad-input"


class ImageError(DiskkitError):
    """The image itself is bad, truncated or hostile: it cannot be read as it claims to be."""

    default_code = "bad-image"


class HostError(DiskkitError):
    """This host lacks a capability: a program, a kernel module, a Python binding, rights."""

    default_code = "host-missing"


class CommandError(HostError):
    """An external program failed. Carries the command line, exit status and stderr."""

    default_code = "command-failed"

    def __init__(
        self,
        message: str,
        *,
        argv: list[str] | None = None,
        returncode: int | None = None,
        stderr: str = "",
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, code=code, hint=hint)
        self.argv = argv or []
        self.returncode = returncode
        self.stderr = stderr


class CommandTimeout(CommandError):
    """An external program did not finish within its timeout and was killed."""

    default_code = "command-timeout"


class InternalError(DiskkitError):
    """A bug in diskkit: an invariant did not hold."""

    default_code = "internal-error"
