"""The layout part of ``diskkit info``: adds ``partition_table``, ``partitions``,
``filesystems`` and ``lvm`` to an :class:`~diskkit.disk.ImageReport`, and the layout's
findings to its findings."""

from __future__ import annotations

from diskkit.disk import UNPACK_FIRST, ImageReport, open_disk
from diskkit.errors import HostError, ImageError
from diskkit.formats import safety
from diskkit.layout.inspect import Layout, inspect_layout


def add_layout(report: ImageReport, target: str, fmt: str | None = None) -> Layout | None:
    """Inspect the guest-visible disk of ``target`` (only when it is safe to open) and merge
    the layout into ``report``. Returns the Layout (for drawing), or None when not read."""
    if safety.blocking(report.findings) or report.format in (*UNPACK_FIRST, "luks"):
        return None
    try:
        with open_disk(target, fmt) as disk:
            layout = inspect_layout(disk)
    except (ImageError, HostError) as exc:
        report.sections["layout_error"] = {"error": str(exc), "code": exc.code}
        return None
    report.sections.update(layout.to_dict())
    report.findings.extend(layout.findings)
    return layout
