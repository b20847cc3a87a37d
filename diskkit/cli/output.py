"""Output helpers shared by every command: JSON to stdout, rich text to a terminal.

``rich`` is imported only when a command prints text: ``console`` and ``err_console`` are
made on first use (``from diskkit.cli.output import console`` inside the text path).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

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


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def emit_json(data: Any) -> None:
    """Write ``data`` as indented JSON, one document, to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=_default, sort_keys=False))
    sys.stdout.write("\n")
    sys.stdout.flush()


def human_size(n: int | None) -> str:
    """1536 -> '1.5 KiB'; exact bytes are always in the JSON."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
