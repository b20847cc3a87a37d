"""A small parser of LVM2's text metadata format (lib/format_text/ in lvm2).

The format: ``key = value`` lines and ``name { ... }`` sections; values are integers,
double-quoted strings (with backslash escapes) or ``[ ... ]`` lists of those; ``#`` starts a
comment outside strings. The result is nested dicts. Input is bounded by the caller; nesting
depth is bounded here, and any syntax error raises :class:`ImageError`.
"""

from __future__ import annotations

import re
from typing import Any

from diskkit.errors import ImageError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>\#[^\n]*)
      | "(?P<string>(?:[^"\\]|\\.)*)"
      | (?P<number>-?\d+(?:\.\d+)?)(?![\w.+-])
      | (?P<punct>[{}\[\]=,])
      | (?P<name>[A-Za-z0-9_.+\-]+)
    )""",
    re.VERBOSE | re.DOTALL,
)
MAX_DEPTH = 32
#: Work bound: tokens in one metadata text (a VG of a thousand LVs has some tens of thousands).
MAX_TOKENS = 1 << 18
#: Digits of one number: LVM writes 64-bit values (20 digits); longer is hostile, and Python
#: refuses to convert more than 4,300 digits anyway.
MAX_DIGITS = 24
_SPACE = re.compile(r"\s*")


def _tokens(text: str) -> list[tuple[str, Any]]:
    """The tokens of ``text``, in one linear pass (at most :data:`MAX_TOKENS`)."""
    out: list[tuple[str, Any]] = []
    pos = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ImageError(f"LVM metadata: unexpected text at {pos}: {text[pos:pos + 20]!r}",
                             code="bad-lvm-metadata")
        pos = _SPACE.match(text, m.end()).end()  # type: ignore[union-attr]
        kind = m.lastgroup
        if kind == "comment":
            continue
        if len(out) >= MAX_TOKENS:
            raise ImageError(f"LVM metadata has more than {MAX_TOKENS} tokens: work bound hit, "
                             "not parsed", code="work-bound-hit")
        if kind == "string":
            out.append(("value", re.sub(r"\\(.)", r"\1", m.group("string"))))
        elif kind == "number":
            num = m.group("number")
            if len(num) > MAX_DIGITS:
                raise ImageError(f"LVM metadata: a number of {len(num)} digits at {m.start()}",
                                 code="bad-lvm-metadata")
            out.append(("value", float(num) if "." in num else int(num)))
        elif kind == "punct":
            out.append((m.group("punct"), None))
        else:
            out.append(("name", m.group("name")))
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.t = tokens
        self.i = 0

    def _next(self) -> tuple[str, Any]:
        if self.i >= len(self.t):
            raise ImageError("LVM metadata ends early", code="bad-lvm-metadata")
        tok = self.t[self.i]
        self.i += 1
        return tok

    def _value(self) -> Any:
        kind, val = self._next()
        if kind == "value":
            return val
        if kind == "[":
            items: list[Any] = []
            while True:
                kind, val = self._next()
                if kind == "]":
                    return items
                if kind == ",":
                    continue
                if kind != "value":
                    raise ImageError("LVM metadata: bad list", code="bad-lvm-metadata")
                items.append(val)
        raise ImageError(f"LVM metadata: expected a value, got {kind}", code="bad-lvm-metadata")

    def section(self, depth: int, closing: bool) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise ImageError("LVM metadata nested too deeply", code="bad-lvm-metadata")
        out: dict[str, Any] = {}
        while self.i < len(self.t):
            kind, val = self._next()
            if kind == "}" and closing:
                return out
            if kind != "name":
                raise ImageError(f"LVM metadata: expected a name, got {kind}",
                                 code="bad-lvm-metadata")
            kind2, _ = self._next()
            if kind2 == "=":
                out[val] = self._value()
            elif kind2 == "{":
                out[val] = self.section(depth + 1, True)
            else:
                raise ImageError(f"LVM metadata: unexpected {kind2} after {val}",
                                 code="bad-lvm-metadata")
        if closing:
            raise ImageError("LVM metadata: unclosed section", code="bad-lvm-metadata")
        return out


def parse_text(text: str) -> dict[str, Any]:
    """Parse LVM text metadata into nested dicts (sections) of values and lists."""
    return _Parser(_tokens(text)).section(0, False)
