"""diskkit: inspect, check, diagnose, boot-test, mount and convert virtual disk images.

The Python API is one function per command (docs/api.md)::

    import diskkit

    report = diskkit.inspect("disk.qcow2")      # diskkit info
    report.to_json()                            # exactly what `diskkit info --json` prints
    diskkit.check("disk.qcow2", "qcow2").safe   # diskkit check
    diskkit.diagnose("disk.raw").will_boot      # diskkit diagnose
    with diskkit.mount("disk.qcow2", os_root=True) as m:   # diskkit mount
        ...

Names are loaded on first use, so ``import diskkit`` stays cheap (the CLI starts with it).
"""

from __future__ import annotations

import sys as _sys
import types as _types

__version__ = "0.1.0"

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

    from diskkit.api import (
        CheckReport,
        boot_test,
        check,
        convert,
        diagnose,
        inspect,
        mount,
        open_image,
        scan,
        validate,
    )
    from diskkit.errors import DiskkitError, HostError, ImageError, UserError
    from diskkit.pipeline import ImageReport, Inspection

#: Public name -> module that defines it.
_LAZY = {
    "inspect": "diskkit.api", "check": "diskkit.api", "diagnose": "diskkit.api",
    "boot_test": "diskkit.api", "convert": "diskkit.api", "scan": "diskkit.api",
    "mount": "diskkit.api", "open_image": "diskkit.api", "CheckReport": "diskkit.api",
    "validate": "diskkit.api",
    "Inspection": "diskkit.pipeline", "ImageReport": "diskkit.pipeline",
    "DiskkitError": "diskkit.errors", "UserError": "diskkit.errors",
    "ImageError": "diskkit.errors", "HostError": "diskkit.errors",
}

__all__ = ["CheckReport", "DiskkitError", "HostError", "ImageError", "ImageReport",
           "Inspection", "UserError", "__version__", "boot_test", "check", "convert",
           "diagnose", "inspect", "mount", "open_image", "scan", "validate"]


class _Package(_types.ModuleType):
    """diskkit's own module type: ``diskkit.convert`` and ``diskkit.diagnose`` stay the API
    functions even after the subpackages of the same names are imported (Python's import
    system would otherwise set the package attribute to the subpackage). The subpackages are
    still imported with ``from diskkit.convert import ...``."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _LAZY and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'diskkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
