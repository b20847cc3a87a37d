"""JSON form of diskkit's result objects (foundation: imports nothing from diskkit).

:func:`jsonable` turns what a ``to_dict()`` returns (which may hold bytes, tuples, sets and
nested objects with ``to_dict``) into plain JSON values, the same way the CLI writes --json;
so ``obj.to_json()`` in the Python API is exactly what the command prints.
"""

from __future__ import annotations

import json
from typing import Any


def default(obj: Any) -> Any:
    """``json.dumps`` hook: bytes as hex, objects by ``to_dict()``, tuples and sets as lists."""
    if isinstance(obj, bytes):
        return obj.hex()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def jsonable(data: Any) -> Any:
    """``data`` as the JSON document the CLI prints for it, parsed back (dicts, lists,
    strings, numbers, booleans, None)."""
    return json.loads(json.dumps(data, default=default))
