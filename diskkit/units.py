"""Sizes for people (foundation: imports nothing from diskkit)."""

from __future__ import annotations


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
