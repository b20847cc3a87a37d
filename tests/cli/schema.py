"""Validating a command's JSON output against docs/schemas/<command>.schema.json, and the
vocabulary rules a schema cannot state alone (format names are OpenStack's)."""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jsonschema

SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "schemas"

#: Glance's disk_format names (glance-api.conf ``disk_formats`` default, OpenStack 2024.x):
#: wherever diskkit names one of these formats, it uses this name, never qemu's driver name.
GLANCE_DISK_FORMATS = {"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi",
                       "iso", "ploop"}
#: qemu driver names that differ from Glance's name for the same format.
QEMU_ONLY_NAMES = {"vpc"}


@functools.cache
def _validator(command: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{command}.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def format_values(doc: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (json path, value) of a key named ``format`` or ending in ``_format``."""
    out: list[tuple[str, Any]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            p = f"{path}.{k}"
            if (k == "format" or k.endswith("_format")) and not isinstance(v, (dict, list)):
                out.append((p, v))
            out += format_values(v, p)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += format_values(v, f"{path}[{i}]")
    return out


def validate(command: str, stdout: str) -> dict[str, Any]:
    """Parse ``stdout`` (one JSON document), validate it against the command's schema and the
    format-name rule; return the document."""
    doc = json.loads(stdout)
    errors = sorted(_validator(command).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    qemu_names = [(p, v) for p, v in format_values(doc) if v in QEMU_ONLY_NAMES]
    assert not qemu_names, f"qemu driver names where OpenStack's belong: {qemu_names}"
    return doc  # type: ignore[no-any-return]
