"""Pre-upload validation: Glance's own verdict (oslo.utils' inspector, run in process) beside
diskkit's stricter findings, cloud readiness from the guest, and the image properties to set.

``validate(target, ...) -> Validation`` (``.to_json()``, ``.exit_code``); the upload verdict
alone is :func:`diskkit.validate.upload.check_upload`. Names are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diskkit.validate.report import Validation, validate

__all__ = ["Validation", "validate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from diskkit.validate import report

        return getattr(report, name)
    raise AttributeError(name)
