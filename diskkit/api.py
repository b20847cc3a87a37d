"""The public Python API (``import diskkit``): one function per command.

Every function returns an object whose ``to_json()`` is exactly what the command prints with
``--json`` (docs/json.md, docs/api.md); the objects' attributes are typed. Errors are the
exceptions of :mod:`diskkit.errors` (``UserError``, ``ImageError``, ``HostError``), each
with a stable ``code`` and a ``hint``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diskkit.jsonable import jsonable

if TYPE_CHECKING:
    from diskkit.backends.session import Mounted
    from diskkit.boottest.run import BootOutcome
    from diskkit.convert.engine import Result as ConvertResult
    from diskkit.diagnose import Diagnosis, Verification
    from diskkit.findings import Finding
    from diskkit.pipeline import ImageReport, Inspection
    from diskkit.rbd.scan import ScanResult
    from diskkit.validate.report import Validation

__all__ = ["CheckReport", "boot_test", "check", "convert", "diagnose", "inspect", "mount",
           "open_image", "scan", "validate"]


def inspect(target: str, fmt: str | None = None, *, allow_backing: bool = False
            ) -> ImageReport:
    """``diskkit info``: what the image is, its layout and how it boots."""
    from diskkit.pipeline import inspect_target

    return inspect_target(target, fmt, allow_backing=allow_backing)


def open_image(target: str, fmt: str | None = None, *, allow_backing: bool = False,
               hypervisor: bool = False) -> Inspection:
    """The inspection pipeline itself, for a ``with`` block: ``.detection``, ``.disk``,
    ``.layout``, ``.boot``, ``.guest`` computed on first use (see :mod:`diskkit.pipeline`)."""
    from diskkit.pipeline import Inspection

    return Inspection(target, fmt, allow_backing=allow_backing, hypervisor=hypervisor)


@dataclass
class CheckReport:
    """``diskkit check``: is the image safe to upload, and is it what it is declared to be."""

    target: str
    declared_format: str | None
    #: Every finding; ``safe`` is False when one of them blocks.
    findings: list[Finding]
    safe: bool
    #: The JSON document (the report's keys plus declared_format and Glance's verdict).
    data: dict[str, Any] = field(default_factory=dict)
    #: The inspection report the verdict comes from; None when the header was too damaged
    #: to read (the findings say so).
    report: ImageReport | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, ``check``)."""
        return self.data

    def to_json(self) -> Any:
        """Exactly what ``diskkit check --json`` prints."""
        return jsonable(self.data)


def check(target: str, disk_format: str | None = None) -> CheckReport:
    """``diskkit check``: every safety check, the declared format's, and Glance's verdict
    (oslo.utils' format inspector) for local files. A header too damaged to read is a
    finding, not an exception."""
    from diskkit.errors import ImageError
    from diskkit.pipeline import inspect_target
    from diskkit.validate import upload as upl

    try:
        report = inspect_target(target, declared_format=disk_format, sections=False)
    except ImageError:
        up = upl.check_damaged(target, disk_format)
        findings = list(up.findings)
        return CheckReport(target, disk_format, findings,
                           not any(f.blocking for f in findings),
                           {"target": target, **up.to_dict()})
    glance = upl.glance_for(target, disk_format, report.detection)
    if glance is not None and glance.refused and report.safe:
        report.findings.append(upl.glance_finding(glance))
    data = report.to_dict()
    data["declared_format"] = disk_format
    data["glance_accepts"] = glance.accepts if glance else None
    data["nova_accepts"] = glance.nova_accepts if glance else None
    data["glance"] = glance.to_dict() if glance else None
    return CheckReport(target, disk_format, report.findings, report.safe, data, report)


def validate(target: str, *, disk_format: str | None = None,
             container_format: str | None = None, guest: bool = True) -> Validation:
    """``diskkit validate``: Glance's own verdict (oslo.utils), cloud readiness of the guest
    and the image properties to set (docs/validate.md)."""
    from diskkit.validate import validate as run_validate

    return run_validate(target, disk_format=disk_format, container_format=container_format,
                        guest=guest)


def diagnose(target: str, fmt: str | None = None, *, firmware: str = "auto",
             media: str = "disk", bus: str = "virtio", verify: bool = False,
             timeout: float | None = None) -> Diagnosis | Verification:
    """``diskkit diagnose``: will it boot under ``firmware`` attached as ``media`` on ``bus``,
    how far (``reaches``), why (not), and the fix. ``verify=True`` also boots it (a
    :class:`Verification`; to the login prompt when an OS was followed)."""
    if verify:
        from diskkit.verify import verify as run_verify

        return run_verify(target, fmt, firmware=firmware, media=media, bus=bus,
                          timeout=timeout)
    from diskkit.diagnose import diagnose as run_diagnose

    return run_diagnose(target, fmt, firmware=firmware, media=media, bus=bus)


def boot_test(target: str, fmt: str | None = None, *, firmware: str = "bios",
              media: str = "disk", bus: str = "virtio", timeout: float = 60.0,
              until: str = "loader") -> BootOutcome:
    """``diskkit boot-test``: boot it read-only under real firmware and report what happened."""
    from diskkit.boottest import boot_test as run_boot

    return run_boot(target, fmt, firmware=firmware, media=media, bus=bus, timeout=timeout,
                    until=until)


def convert(source: str, target: str, out_format: str, *, src_format: str | None = None,
            compress: bool = False, preallocate: bool = False, verify: bool = True,
            force: bool = False, options: tuple[str, ...] = (), copier: str | None = None,
            on_progress: Callable[[float], None] | None = None) -> ConvertResult:
    """``diskkit convert``: a checked, measured, verified conversion (``Refused`` when the
    source is unsafe: its findings say why). ``copier="qemu-img"``: qemu-img copies into a
    new RBD image even where diskkit would copy itself (``--copier``)."""
    from diskkit.convert import Request
    from diskkit.convert import convert as run_convert

    req = Request(source, target, out_format, src_format=src_format, compress=compress,
                  preallocate=preallocate, verify=verify, force=force, options=options,
                  copier=copier)
    return run_convert(req, on_progress=on_progress, quiet=True)


def scan(pool: str, *, namespace: str | None = None, jobs: int = 4) -> ScanResult:
    """``diskkit scan rbd:POOL``: every image of a Ceph pool: format, parent, safety, boot."""
    from diskkit.errors import UserError
    from diskkit.rbd.scan import scan_pool
    from diskkit.target import parse_target

    t = parse_target(pool)
    if t.kind != "rbd" or t.image is not None:
        raise UserError(f"{pool}: scan takes a pool, rbd:POOL", code="bad-uri")
    return scan_pool(t, jobs=jobs, namespace=namespace)


@contextlib.contextmanager
def mount(target: str, root: str | None = None, *, partition: int | None = None,
          lv: str | None = None, os_root: bool = False, backend: str = "auto"
          ) -> Iterator[Mounted]:
    """``diskkit mount`` for a ``with`` block: read-only, at ``root`` (or a private
    directory); everything is undone on leaving the block, whatever happens."""
    from diskkit.backends import mounted

    with mounted(target, root, partition=partition, lv=lv, os_root=os_root,
                 backend=backend) as m:
        yield m
