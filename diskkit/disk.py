"""The guest-visible disk of a target (:func:`open_disk`) and the one report about an image
that ``diskkit info`` prints (:func:`inspect_target`).

``open_disk`` never hands qemu an image it has not checked: it detects the format (or takes
the one given), runs every safety check, and refuses (``ImageError`` listing the finding
codes) unless the caller passes ``allow_unsafe``. qemu is always told the format (``-f``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from diskkit.errors import HostError, ImageError, UserError
from diskkit.findings import Finding
from diskkit.formats import registry, safety
from diskkit.formats.detect import Detection, detect
from diskkit.formats.registry import ReadVia
from diskkit.readers.base import Reader, SliceReader
from diskkit.target import Target, load, open_container, parse_target


def _target(target: str | Target) -> Target:
    return parse_target(target) if isinstance(target, str) else target


def _refuse(target: Target, findings: list[Finding]) -> ImageError:
    codes = ", ".join(dict.fromkeys(f.code for f in findings))
    return ImageError(f"{target.display}: unsafe to open ({codes})", code="unsafe-image",
                      hint=f"run: diskkit check {target.display}")


def _open_format(container: Reader, target: Target, fmt: str, detection: Detection,
                 allow_backing: bool) -> Reader:
    info = registry.get(fmt)
    if info.read is ReadVia.IN_PLACE:
        return container
    if info.read is ReadVia.UNPACK:
        raise ImageError(f"{target.display} is a {fmt} file, not a disk image",
                         code="not-a-disk", hint=f"unpack it first ({info.unpack}) and open "
                         "the disk inside")
    if fmt == "vhd" and (m := detection.match("vhd")) and m.details.get("subformat") == \
            "fixed" and m.virtual_size is not None:
        # A fixed VHD is the guest disk followed by the footer: read it in place.
        return SliceReader(container, 0, m.virtual_size, name=f"{target.display} (vhd)",
                           owns_parent=True)
    if info.read is ReadVia.QCOW2:
        cls = load("diskkit.readers.qcow2:Qcow2Reader", "python3")
        opener = None
        if allow_backing:
            opener = _backing_opener(target)
        return cls(container, backing_opener=opener)
    if info.read is ReadVia.REFUSE:
        raise UserError(f"{target.display} is LUKS-encrypted: diskkit cannot read it without "
                        "the key", code="encrypted", hint="decrypt it first (cryptsetup or "
                        "qemu-img convert --object secret,...)")
    if info.read is ReadVia.QEMU_NBD and info.qemu:
        if target.kind != "file":
            raise UserError(f"{target.display}: {fmt} is read through qemu-nbd, for local "
                            "files only", code="unsupported-target",
                            hint="copy the image to a local file, or convert it to raw/qcow2")
        container.close()
        cls = load("diskkit.readers.nbd:QemuNbdReader", "python3-libnbd qemu-utils")
        return cls(target.path, info.qemu, allow_backing=allow_backing)
    raise UserError(f"cannot open a {fmt} image", code="bad-format")


def _backing_opener(target: Target) -> Callable[..., Reader]:
    """How a qcow2 reader opens its backing file when the caller allowed it: the name is
    resolved next to the image, and the backing image is itself opened through open_disk."""
    import os

    base = os.path.dirname(os.path.abspath(target.path)) if target.path else "."

    def opener(name: str, fmt: str | None = None) -> Reader:
        path = name if os.path.isabs(name) else os.path.join(base, name)
        return open_disk(path, fmt, allow_backing=True)

    return opener


def open_disk(target: str | Target, fmt: str | None = None, *, allow_backing: bool = False,
              allow_unsafe: bool = False) -> Reader:
    """A reader of the guest-visible disk of ``target``.

    ``fmt`` skips detection's choice (detection still runs for the safety checks, and a
    ``fmt`` that is not what the file is, is a ``disk-format-mismatch``). ``allow_backing``
    lets a qcow2 read its backing chain (and qemu-nbd open backing files);
    ``allow_unsafe`` opens images whose checks failed. The caller closes the reader.
    """
    t = _target(target)
    container = open_container(t)
    try:
        return disk_from(container, t, detect(container), fmt, allow_backing=allow_backing,
                         allow_unsafe=allow_unsafe)
    except BaseException:
        container.close()
        raise


def disk_from(container: Reader, target: Target, detection: Detection, fmt: str | None = None,
              *, allow_backing: bool = False, allow_unsafe: bool = False) -> Reader:
    """The guest-visible disk over an already opened and detected ``container``.

    Ownership of ``container`` passes to the returned reader (closing it closes the
    container); on error the caller still owns it. Same checks as :func:`open_disk`.
    """
    findings = list(detection.findings)
    chosen = detection.format
    if fmt is not None:
        chosen = safety.normalise_format(fmt)
        findings += safety.check_declared(detection, fmt)
    bad = safety.blocking(findings, allow_backing=allow_backing)
    if bad and not allow_unsafe:
        raise _refuse(target, bad)
    return _open_format(container, target, chosen, detection, allow_backing)


@dataclass
class ImageReport:
    """Everything ``diskkit info`` says about one image (docs/json.md, ``info``)."""

    target: str
    detection: Detection
    actual_size: int | None
    findings: list[Finding]
    #: Extra sections (partition_table, partitions, filesystems, lvm, boot...), by name.
    sections: dict[str, Any] = field(default_factory=dict)
    #: The Layout and BootInfo objects behind those sections, when the disk was read.
    layout: Any = None
    boot: Any = None

    @property
    def format(self) -> str:
        """The detected (primary) format."""
        return self.detection.format

    @property
    def safe(self) -> bool:
        """True when no finding blocks."""
        return not any(f.blocking for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        d = self.detection
        out: dict[str, Any] = {
            "target": self.target, "format": d.format,
            "formats_matched": list(d.formats_matched), "virtual_size": d.virtual_size,
            "actual_size": self.actual_size, "file_size": d.size, "safe": self.safe,
            "findings": [f.to_dict() for f in self.findings],
            "details": d.details, "partition_table_signature": d.partition_table,
        }
        if d.format == "qcow2":
            out["backing_file"] = d.details.get("backing_file")
            out["data_file"] = d.details.get("data_file")
        if d.format == "iso":
            out["volume_size"] = d.details.get("volume_size")
        out.update(self.sections)
        return out


def describe_disk(report: ImageReport, disk: Reader) -> None:
    """Add what is on the guest-visible ``disk`` to ``report``: the layout (partition_table,
    partitions, filesystems, lvm) and how it boots (boot), with their findings. A part that
    cannot be read records ``{"error": ..., "code": ...}`` instead of failing the report."""
    from diskkit.boot import inspect_boot
    from diskkit.layout.inspect import inspect_layout

    try:
        report.layout = inspect_layout(disk)
    except (ImageError, HostError) as exc:
        report.sections["layout_error"] = {"error": str(exc), "code": exc.code}
        return
    report.sections.update(report.layout.to_dict())
    report.findings.extend(report.layout.findings)
    try:
        report.boot = inspect_boot(disk, report.layout)
    except (ImageError, HostError) as exc:
        report.sections["boot"] = {"error": str(exc), "code": exc.code}
        return
    report.sections["boot"] = report.boot.to_dict()
    report.findings.extend(report.boot.findings)


def inspect_target(target: str | Target, fmt: str | None = None, *,
                   declared_format: str | None = None,
                   allow_backing: bool = False, sections: bool = True) -> ImageReport:
    """Detect, check and describe ``target``: the report ``diskkit info``/``check`` print.

    The target is opened and detected once. ``fmt`` forces the format the disk is read as;
    ``declared_format`` adds the ``disk-format-mismatch`` check; ``sections=False`` skips
    what is on the disk (``check``). The disk is described only when it is safe to open.
    """
    t = _target(target)
    reader = open_container(t)
    try:
        detection = detect(reader)
        actual = getattr(reader, "allocated", None)
        rbd_section, rbd_findings = None, []
        if t.kind == "rbd":  # image facts, clone chain and the raw-ness checks (issue 6)
            from diskkit.rbd.chain import rbd_facts

            rbd_section, rbd_findings = rbd_facts(reader, detection)  # type: ignore[arg-type]
        findings = list(detection.findings) + rbd_findings
        if declared_format is not None:
            findings += safety.check_declared(detection, declared_format)
        report = ImageReport(t.display, detection, actual, findings)
        if rbd_section is not None:
            report.sections["rbd"] = rbd_section
        if sections and not safety.blocking(findings, allow_backing=allow_backing) and \
                registry.get(detection.format).read not in (ReadVia.UNPACK, ReadVia.REFUSE):
            try:
                reader = disk_from(reader, t, detection, fmt, allow_backing=allow_backing)
            except (ImageError, HostError) as exc:
                report.sections["layout_error"] = {"error": str(exc), "code": exc.code}
            else:
                describe_disk(report, reader)
    finally:
        reader.close()
    return report
