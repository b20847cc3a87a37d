"""Output helpers shared by every command: JSON to stdout, rich text to a terminal.

``rich`` is imported only when a command prints text: ``console`` and ``err_console`` are
made on first use (``from diskkit.cli.output import console`` inside the text path).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from diskkit.jsonable import default
from diskkit.units import human_size

__all__ = ["console", "emit_json", "human_size"]

if TYPE_CHECKING:
    from rich.console import Console

    #: Human output goes to stdout; diagnostics and errors to stderr.
    console: Console
    err_console: Console

_consoles: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name not in ("console", "err_console"):
        raise AttributeError(name)
    if name not in _consoles:
        from rich.console import Console

        class _Console(Console):
            def on_broken_pipe(self) -> None:
                # rich would exit 1; cli/main.py ends a closed pipe with 141, quietly.
                self.quiet = True
                raise BrokenPipeError

        if name == "console":
            _consoles[name] = _Console(highlight=False, soft_wrap=False)
        else:
            _consoles[name] = _Console(stderr=True, highlight=False)
    return _consoles[name]


def emit_json(data: Any) -> None:
    """Write ``data`` as indented JSON, one document, to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=default, sort_keys=False))
    sys.stdout.write("\n")
    sys.stdout.flush()


