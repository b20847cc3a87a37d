"""``validate``: the upload verdict, then cloud readiness, then the suggested image
properties, for one target (docs/validate.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from diskkit import exitcodes
from diskkit.errors import HostError, ImageError
from diskkit.findings import Evidence, Finding, Severity
from diskkit.formats import registry, safety
from diskkit.readers.base import Reader
from diskkit.target import Target, parse_target

try:  # the model engineer moves open_container from target.py to disk.py
    from diskkit.disk import open_container
except ImportError:  # pragma: no cover - older tree
    from diskkit.target import open_container  # type: ignore[attr-defined,no-redef]
from diskkit.validate.glance import GLANCE_CONTAINER_FORMATS
from diskkit.validate.properties import Properties, suggest
from diskkit.validate.readiness import readiness
from diskkit.validate.upload import Upload, check_upload


@dataclass
class Validation:
    """Everything ``diskkit validate`` says about one image."""

    target: str
    cloud: str
    upload: Upload
    #: Cloud readiness findings (empty when the guest could not be read; see ``notes``).
    readiness: list[Finding] = field(default_factory=list)
    properties: Properties | None = None
    #: ``openstack image create ...``, shell-quoted (None when the upload is blocked).
    command: str | None = None
    #: The guest operating system facts behind readiness and properties (GuestInfo.to_dict).
    guest: dict[str, Any] | None = None
    #: Why a part was skipped (the guest disk unreadable, no OS...).
    notes: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        """Upload and readiness findings together."""
        return [*self.upload.findings, *self.readiness]

    @property
    def verdict(self) -> str:
        """``blocked`` (a finding blocks), ``warnings`` (ready, with warnings) or ``ready``."""
        if any(f.blocking for f in self.findings):
            return "blocked"
        if any(f.severity >= Severity.WARNING for f in self.findings):
            return "warnings"
        return "ready"

    @property
    def exit_code(self) -> int:
        """0 ready, 1 blocked, 5 ready with warnings (diskkit/exitcodes.py)."""
        return {"ready": exitcodes.OK, "blocked": exitcodes.FINDINGS,
                "warnings": exitcodes.WARNINGS}[self.verdict]

    def to_json(self) -> dict[str, Any]:
        """The JSON ``diskkit validate --json`` prints (docs/validate.md)."""
        props = self.properties
        return {
            "target": self.target, "cloud": self.cloud, "verdict": self.verdict,
            "exit_code": self.exit_code,
            "glance_accepts": self.upload.glance.accepts if self.upload.glance else None,
            "nova_accepts": self.upload.glance.nova_accepts if self.upload.glance else None,
            "upload": self.upload.to_dict(),
            "readiness": [f.to_dict() for f in self.readiness],
            "properties": props.values if props else {},
            "image": props.to_dict() if props else None,
            "command": self.command, "notes": self.notes,
        }


def _describe(container: Reader, t: Target, up: Upload, v: Validation) -> None:
    """Open the guest disk through the inspection pipeline (:class:`diskkit.pipeline.
    Inspection`, lent ``container``: it stays the caller's), read layout, boot and guest OS;
    fill readiness and properties. A disk or layout that cannot be read raises its error."""
    from diskkit.pipeline import Inspection

    det = up.detection
    assert det is not None
    with Inspection(t, container=container) as insp:
        layout, disk = insp.layout, insp.disk
        if layout is None or disk is None:
            raise insp.error("layout") or ImageError(f"{t.display}: the guest disk cannot "
                                                     "be read", code="image-unreadable")
        boot = insp.boot
        if boot is None and insp.error("boot") is not None:
            v.notes.append(f"boot code not read: {insp.error('boot')}")
        guest = insp.guest
        if guest is not None:
            v.guest = guest.to_dict()
        elif insp.error("guest") is not None:
            v.notes.append(f"guest operating system not read: {insp.error('guest')}")
        v.readiness, firmware = readiness(layout, boot, guest, disk.size)
    name = os.path.basename(t.path or t.display).rsplit(".", 1)[0] or "image"
    v.properties = suggest(disk_format=up.declared or up.disk_format,
                           container_format=None, layout=layout, guest=guest,
                           firmware=firmware, virtual_size=det.virtual_size, name=name)


def validate(target: str | Target, *, disk_format: str | None = None,
             container_format: str | None = None, cloud: str = "openstack",
             guest: bool = True) -> Validation:
    """Validate ``target`` for upload to ``cloud`` (only "openstack" is known).

    ``disk_format``/``container_format`` are what the image will be created with (Glance's
    values; default: what diskkit detects, and ``bare``). A damaged image gives a finding
    (never an exception); an unknown format name or missing file raises UserError.
    ``guest=False`` skips readiness and the OS properties (the upload verdict only).
    """
    _check_args(cloud, container_format)
    if isinstance(target, str) and (target.startswith("fat:") or os.path.isdir(target)):
        return _vvfat(target, cloud)
    t = parse_target(target) if isinstance(target, str) else target
    container = open_container(t)
    try:
        path = t.path if t.kind == "file" else None
        up = check_upload(container, path, disk_format)
        v = Validation(t.display, cloud, up)
        if up.glance is None:
            v.notes.append("Glance's verdict needs a local file: oslo.utils was not run")
        if guest and _opens(up):
            try:
                _describe(container, t, up, v)
            except ImageError as exc:  # the header passed, the tables behind it did not
                v.readiness.append(Finding(
                    "image-unreadable", Severity.ERROR,
                    f"the image is damaged: its guest disk cannot be read ({exc.message})",
                    (Evidence(f"{exc.code}: {exc.message}"),),
                    "refuse the image; get a complete copy from its source (compare its "
                    "checksum)", {"error_code": exc.code}))
            except HostError as exc:
                v.notes.append(f"the guest disk could not be read on this host: {exc}")
        elif guest:
            v.notes.append("the guest disk was not opened: the image is not safe to open, "
                           "or not readable without a key or unpacking")
        _finish(v, t, path, disk_format, container_format)
    finally:
        container.close()
    return v


def _check_args(cloud: str, container_format: str | None) -> None:
    from diskkit.errors import UserError

    if cloud != "openstack":
        raise UserError(f"unknown cloud {cloud!r}", code="bad-usage", hint="use openstack")
    if container_format is not None and container_format not in GLANCE_CONTAINER_FORMATS:
        raise UserError(f"{container_format!r} is not a Glance container_format",
                        code="bad-format", hint="use one of: "
                        + ", ".join(GLANCE_CONTAINER_FORMATS))


def _opens(up: Upload) -> bool:
    """The guest disk is read whenever it is safe to open (upload-only refusals, such as a
    hybrid MBR, still get readiness and properties) and readable without a key or unpacking."""
    det = up.detection
    info = registry.lookup(det.format) if det is not None else None
    return (det is not None and info is not None and not safety.blocking(det.findings)
            and info.read not in (registry.ReadVia.REFUSE, registry.ReadVia.UNPACK))


def _finish(v: Validation, t: Target, path: str | None, disk_format: str | None,
            container_format: str | None) -> None:
    """Properties for images whose guest was not read, the container format, the command."""
    if v.properties is None and v.upload.detection is not None:
        v.properties = Properties(disk_format=disk_format or v.upload.disk_format,
                                  name=os.path.basename(t.display).rsplit(".", 1)[0])
    if v.properties is not None:
        v.properties.container_format = container_format or "bare"
        if v.verdict != "blocked":
            v.command = v.properties.command(path)


def _vvfat(target: str, cloud: str) -> Validation:
    """A host directory (``DIR`` or qemu's ``fat:[OPTS:]DIR``): qemu's vvfat driver shows it
    as a FAT disk, but it is not an image: refused, with qemu's size and the conversion."""
    import shlex

    from diskkit.validate.upload import qemu_info

    spec = target if target.startswith("fat:") else f"fat:{target}"
    qinfo = qemu_info(spec, "vvfat")
    directory = spec.rsplit(":", 1)[-1]
    out = (directory.rstrip("/") or "fat") + ".qcow2"
    convert = (f"qemu-img convert -f vvfat {shlex.quote(spec)} -O qcow2 "
               f"{shlex.quote(out)}")
    finding = Finding(
        "vvfat-directory", Severity.ERROR,
        f"{target} is a host directory: qemu's vvfat driver shows it as a FAT disk of "
        f"{qinfo.get('virtual_size')} bytes, but there is no image file to upload",
        (), f"make an image of it first: {convert}", qinfo)
    up = Upload(None, None, None, [finding], convert=convert, qemu_info=qinfo)
    return Validation(target, cloud, up, notes=["vvfat: nothing to inspect but a directory"])
