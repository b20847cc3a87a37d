"""Safe, verified, progress-reporting conversions driven by qemu-img.

Public API::

    from diskkit.convert import Request, convert, run_batch, load_manifest

    result = convert(Request("in.vmdk", "out.qcow2", "qcow2"))   # -> Result
    result.to_dict()                                              # docs/json.md "convert"

:func:`convert` detects and safety-checks the source (:class:`Refused` for a hostile one),
measures the output against the target's free space, converts under a temporary name with
qemu-img, verifies with ``qemu-img compare`` and renames. See docs/convert.md.
"""

from diskkit.convert.batch import BatchItem, BatchReport, load_manifest, run_batch
from diskkit.convert.engine import Refused, Request, Result, convert, prepare
from diskkit.convert.plan import OUTPUT_FORMATS, inspect_source, qemu_format
from diskkit.convert.qemuimg import Cancelled

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
