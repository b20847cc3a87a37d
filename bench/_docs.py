"""Writing a benchmark's figures into docs/benchmarks.md, one section per benchmark."""

from __future__ import annotations

import pathlib

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def replace_section(heading: str, section: str, path: pathlib.Path = DOCS) -> None:
    """Put ``section`` (text starting with ``heading``, e.g. "## Conversion") where that
    heading's section stands in ``path``, up to the next "## " heading; append it if absent."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = section.rstrip("\n") + "\n"
    if heading in text:
        start = text.index(heading)
        nxt = text.find("\n## ", start + len(heading))
        rest = text[nxt + 1 :] if nxt >= 0 else ""
        text = text[:start] + section + ("\n" + rest if rest else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
