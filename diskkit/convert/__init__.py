"""Safe, verified, progress-reporting conversions driven by qemu-img.

Public API::

    from diskkit.convert import Request, convert, run_batch, load_manifest

    result = convert(Request("in.vmdk", "out.qcow2", "qcow2"))   # -> Result
    result.to_dict()                                              # docs/json.md "convert"

:func:`convert` detects and safety-checks the source (:class:`Refused` for a hostile one),
measures the output against the target's free space, converts under a temporary name with
qemu-img, verifies it against the source and renames. See docs/convert.md.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diskkit.convert.batch import BatchItem, BatchReport, load_manifest, run_batch
    from diskkit.convert.engine import Refused, Request, Result, convert, prepare
    from diskkit.convert.plan import OUTPUT_FORMATS, inspect_source, qemu_format
    from diskkit.convert.qemuimg import Cancelled

#: Where each public name lives: imported on first use, so a single conversion does not
#: load the batch machinery (csv, the state file) it does not use.
_HOME = {
    "BatchItem": "batch", "BatchReport": "batch", "load_manifest": "batch",
    "run_batch": "batch", "Refused": "engine", "Request": "engine", "Result": "engine",
    "convert": "engine", "prepare": "engine", "OUTPUT_FORMATS": "plan",
    "inspect_source": "plan", "qemu_format": "plan", "Cancelled": "qemuimg",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'diskkit.convert' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"diskkit.convert.{home}"), name)


__all__ = [
    "OUTPUT_FORMATS",
    "BatchItem",
    "BatchReport",
    "Cancelled",
    "Refused",
    "Request",
    "Result",
    "convert",
    "inspect_source",
    "load_manifest",
    "prepare",
    "qemu_format",
    "run_batch",
]
