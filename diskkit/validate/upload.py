"""The upload verdict: diskkit's own findings (detection, the declared format), OpenStack's
verdict (:mod:`diskkit.validate.glance`), and where the two differ, with why.

A damaged image (a header that is truncated or cannot be parsed) is a finding here
(``image-unreadable``, with the error and the bytes at its start), never an exception.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from diskkit.errors import ImageError
from diskkit.findings import Evidence, Finding, Severity
from diskkit.formats import registry, safety
from diskkit.formats.detect import Detection, detect
from diskkit.formats.legacy import convert_command
from diskkit.readers.base import Reader
from diskkit.validate.glance import GlanceVerdict

#: oslo.utils' names for what diskkit calls ``raw`` (gpt: a raw disk with a partition table).
_OSLO_RAW = ("raw", "gpt")


@dataclass
class Upload:
    """Is the file safe to upload, and what will Glance do with it."""

    #: What diskkit detected (None when the header could not be read at all).
    detection: Detection | None
    #: The disk_format the user declared, or None.
    declared: str | None
    #: The disk_format diskkit suggests for these bytes (None: there is none to suggest).
    disk_format: str | None
    #: Every finding: detection's, the declared-format check's, unreadable headers.
    findings: list[Finding]
    #: OpenStack's verdict (None for targets that are not local files).
    glance: GlanceVerdict | None = None
    #: Where diskkit and oslo.utils disagree (format or verdict), each with why.
    differences: list[dict[str, Any]] = field(default_factory=list)
    #: The command that makes an uploadable image, when the format needs converting.
    convert: str | None = None
    #: ``qemu-img info -f DRIVER`` for formats OpenStack does not take: {"driver",
    #: "virtual_size"} (qemu's own word on the size diskkit read from the header).
    qemu_info: dict[str, Any] | None = None

    @property
    def safe(self) -> bool:
        """No finding blocks (diskkit's own verdict, stricter than Glance's)."""
        return not any(f.blocking for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/validate.md, ``upload``)."""
        d = self.detection
        return {
            "format": d.format if d else None,
            "virtual_size": d.virtual_size if d else None,
            "file_size": d.size if d else None,
            "declared_format": self.declared, "disk_format": self.disk_format,
            "safe": self.safe,
            "glance_accepts": self.glance.accepts if self.glance else None,
            "nova_accepts": self.glance.nova_accepts if self.glance else None,
            "glance": self.glance.to_dict() if self.glance else None,
            "differences": self.differences, "convert": self.convert,
            "qemu_info": self.qemu_info,
            "findings": [f.to_dict() for f in self.findings],
        }


def unreadable(exc: ImageError, reader: Reader) -> Finding:
    """The finding for a header detection cannot parse: the error, where, and the first
    bytes of the file (its magic)."""
    off = getattr(exc, "offset", None)
    length = getattr(exc, "length", None) or 16
    try:
        at = off if off is not None else 0
        data = reader.read(at, min(length, 64)) if reader.size else b""
    except (ImageError, OSError):
        at, data = 0, b""
    return Finding(
        "image-unreadable", Severity.ERROR,
        f"the image is damaged or truncated: {exc.message}",
        (Evidence(f"{exc.code}: {exc.message}", at, data),
         Evidence(f"file size {reader.size} bytes", None, None)),
        "refuse the image; get a complete copy from its source (compare its checksum)",
        {"error_code": exc.code, "file_size": reader.size})


def suggested_disk_format(det: Detection) -> str | None:
    """Glance's disk_format for what the bytes are (None for formats Glance has none for)."""
    info = registry.lookup(det.format)
    return info.glance if info else None


def _why(det: Detection, oslo: str | None) -> str | None:
    """Why diskkit's format and oslo's differ, or None when they agree."""
    fmt = det.format
    if oslo is None or fmt == oslo or (fmt == "raw" and oslo in _OSLO_RAW):
        return None
    if fmt == "vhd" and det.details.get("subformat") == "fixed" and oslo in _OSLO_RAW:
        return ("a fixed VHD keeps its only footer in its last 512 bytes; oslo.utils (like "
                "qemu's probe) reads the start only and calls it raw: declared vhd it is "
                "refused, declared raw the guest sees the footer as its last sector")
    info = registry.lookup(fmt)
    if info is not None and not info.is_disk:
        return (f"oslo.utils has no inspector for {fmt}: it calls the file {oslo}, and a "
                f"hypervisor would boot the {fmt} bytes")
    if fmt == "qcow" and oslo == "qcow2":
        return "qcow version 1 shares qcow2's magic: oslo.utils calls it qcow2, version 1"
    if info is not None and info.glance is None and oslo in _OSLO_RAW:
        return (f"oslo.utils does not know the {fmt} format and calls it {oslo}: a "
                f"hypervisor told raw would see the {fmt} metadata as the guest's disk")
    if oslo == "iso" or fmt == "iso":
        return "an ISO with a partition table is both; the two tools name a different one"
    return f"diskkit reads the bytes as {fmt}, oslo.utils as {oslo}"


def compare(up: Upload) -> list[dict[str, Any]]:
    """Where diskkit and oslo.utils disagree, each with the side and the reason."""
    out: list[dict[str, Any]] = []
    g, det = up.glance, up.detection
    if g is None:
        return out
    if det is not None and (why := _why(det, g.oslo_format)):
        out.append({"what": "format", "diskkit": det.format, "oslo": g.oslo_format,
                    "why": why})
    blockers = sorted({f.code for f in up.findings if f.blocking})
    if not g.refused and blockers:
        out.append({"what": "verdict", "diskkit": "blocked", "oslo": "accepted",
                    "why": "diskkit is stricter: " + ", ".join(blockers) + " (see findings)"})
    elif g.refused and not blockers:
        out.append({"what": "verdict", "diskkit": "safe", "oslo": "refused",
                    "why": "OpenStack refuses what diskkit passed: " + _reasons(g)})
    return out


def _reasons(g: GlanceVerdict) -> str:
    """Glance's and Nova's reasons, once each."""
    parts = []
    if not g.accepts:
        parts.append(f"Glance (upload): {g.reason}")
    if not g.nova_accepts and g.nova_reason != g.reason:
        parts.append(f"Nova (boot): {g.nova_reason}")
    elif not g.nova_accepts:
        parts[-1] = f"Glance and Nova: {g.reason}"
    return "; ".join(parts)


def glance_finding(g: GlanceVerdict) -> Finding:
    """The ERROR finding that carries OpenStack's refusal (Glance at upload, or Nova when it
    boots the image), so every verdict blocks what OpenStack blocks."""
    code = "glance-refuses" if not g.accepts else "nova-refuses"
    return Finding(code, Severity.ERROR,
                   f"OpenStack refuses this image as disk_format {g.disk_format}: "
                   f"{_reasons(g)}",
                   (Evidence(f"oslo.utils {g.oslo_version} detects "
                             f"{g.oslo_format or 'nothing'}", None, None),),
                   f"declare the disk_format oslo.utils detects ({g.oslo_format})"
                   if g.oslo_format and g.oslo_format not in ("raw", g.disk_format) else
                   "fix what the other findings name; if none does, see the reason above",
                   {"oslo_format": g.oslo_format, "safety_failures": g.failures,
                    "glance_accepts": g.accepts, "nova_accepts": g.nova_accepts})


def qemu_info(path: str, fmt: str) -> dict[str, Any]:
    """``qemu-img info -f DRIVER --output=json`` (the driver from the registry; qemu-img
    info never opens backing files) as {"driver", "virtual_size"}, or {"driver", "error"}."""
    import json

    from diskkit.errors import CommandError, HostError
    from diskkit.runner import run

    driver = registry.qemu_driver(fmt)
    try:
        out = run(["qemu-img", "info", "-f", driver, "--output=json", path], timeout=30).stdout
        return {"driver": driver, "virtual_size": json.loads(out).get("virtual-size")}
    except (CommandError, HostError, ValueError) as exc:
        return {"driver": driver, "error": str(exc)}


#: Formats ``qemu-img check`` can check (qemu-img(1): "Only the formats qcow2, qed,
#: parallels, vhdx, vmdk and vdi support consistency checks").
CHECKABLE = ("qcow2", "qed", "parallels", "vhdx", "vmdk", "vdi")


def qemu_check(path: str, fmt: str) -> Finding | None:
    """``qemu-img check -f DRIVER --output=json``: an ``image-corrupt`` finding when qemu
    counts corruptions or could not finish (a truncated qcow2 whose clusters lie past the
    end of the file passes every header check), None when clean. Run only on images whose
    safety checks passed (qemu-img check opens nothing but the file then)."""
    import json

    from diskkit.errors import HostError
    from diskkit.runner import run

    driver = registry.qemu_driver(fmt)
    try:
        res = run(["qemu-img", "check", "-f", driver, "--output=json", path], timeout=120,
                  check=False)
    except HostError:
        return None
    try:
        report = json.loads(res.stdout) if res.stdout.strip() else {}
    except ValueError:
        report = {}
    corrupt, errors = report.get("corruptions", 0), report.get("check-errors", 0)
    if res.returncode not in (1, 2) and not corrupt and not errors:
        return None  # 0 clean, 3 leaked clusters only (harmless), 63 not checkable
    detail = f"{corrupt} corruptions, {errors} check errors" if report else \
        (res.stderr.strip().splitlines() or ["no report"])[-1]
    return Finding(
        "image-corrupt", Severity.ERROR,
        f"qemu-img check -f {driver} finds the image damaged ({detail}): reads of the guest "
        "disk would fail or return wrong data", (Evidence(
            f"qemu-img check: image end offset {report.get('image-end-offset')}, "
            f"file size {os.path.getsize(path)}"),),
        "refuse the image; get a complete copy from its source (compare its checksum)",
        {"qemu_img_check": report, "exit_status": res.returncode})


def _convert(qemu: str, path: str | None) -> str:
    """The conversion to qcow2, paths shell-quoted; the output never overwrites the input."""
    if not path:
        return convert_command(qemu)
    stem = path.rsplit(".", 1)[0] if "." in os.path.basename(path) else path
    out = stem + ".qcow2"
    if out == path:
        out = stem + "-converted.qcow2"
    return convert_command(qemu, shlex.quote(path), shlex.quote(out))


def _declared(declared: str | None) -> str | None:
    """``declared`` as Glance spells it; :class:`UserError` when Glance has no such value."""
    from diskkit.errors import UserError
    from diskkit.validate.glance import GLANCE_DISK_FORMATS

    if declared is None:
        return None
    low = declared.strip().lower()
    if low not in GLANCE_DISK_FORMATS:
        raise UserError(f"{declared!r} is not a Glance disk_format", code="bad-format",
                        hint="use one of: " + ", ".join(GLANCE_DISK_FORMATS))
    return low


def _declared_findings(det: Detection, declared: str | None) -> list[Finding]:
    """The disk-format-mismatch check, with Glance's aliases (AMI formats hold raw bytes;
    ploop's files are Parallels images: same bytes, same qemu driver)."""
    if declared is None or (declared == "ploop" and det.format == "parallels"):
        return []
    if declared in ("ami", "ari", "aki"):
        return safety.check_declared(det, "raw") if det.format != "raw" else []
    return safety.check_declared(det, declared)


def _foreign(det: Detection, path: str | None,
             findings: list[Finding]) -> tuple[str | None, dict[str, Any] | None]:
    """For a disk format OpenStack does not take: the conversion, and qemu-img info's size
    (a ``qemu-size-mismatch`` finding when it is not the header's)."""
    info = registry.lookup(det.format)
    if info is None or not info.is_disk or info.glance is not None or not info.qemu \
            or info.read is registry.ReadVia.REFUSE:  # (LUKS needs its key first)
        return None, None
    if path is None:
        return _convert(info.qemu, path), None
    qinfo = qemu_info(path, info.name)
    size = qinfo.get("virtual_size")
    if size is not None and size != det.virtual_size:
        findings.append(Finding(
            "qemu-size-mismatch", Severity.WARNING,
            f"qemu-img info -f {qinfo['driver']} says {size} bytes, the {det.format} header "
            f"{det.virtual_size}", (), None, qinfo))
    return _convert(info.qemu, path), qinfo


def check_upload(reader: Reader, path: str | None, declared: str | None = None, *,
                 glance: bool = True) -> Upload:
    """The upload verdict for the container ``reader`` (the file as it would be uploaded;
    ``path`` is its local path, needed for oslo.utils' inspector, else None).

    ``declared`` is the disk_format the image will be created with (None: the one diskkit
    suggests). Raises :class:`~diskkit.errors.UserError` for a declared value that is not a
    Glance disk_format."""
    from diskkit.validate.glance import verdict

    declared = _declared(declared)
    findings: list[Finding] = []
    try:
        det: Detection | None = detect(reader)
    except ImageError as exc:
        det = None
        findings.append(unreadable(exc, reader))
    convert = qinfo = None
    if det is not None:
        findings += det.findings
        convert, qinfo = _foreign(det, path, findings)
        if path is not None and det.format in CHECKABLE and \
                not any(f.blocking for f in det.findings):
            findings += [f for f in (qemu_check(path, det.format),) if f is not None]
        findings += _declared_findings(det, declared)
    disk_format = suggested_disk_format(det) if det else None
    up = Upload(det, declared, disk_format, findings, convert=convert, qemu_info=qinfo)
    if glance and path is not None:
        # With nothing to declare (an archive, a format Glance lacks, a damaged header):
        # what Glance does with it declared raw.
        up.glance = verdict(path, declared or disk_format or "raw")
    up.differences = compare(up)
    if up.glance is not None and up.glance.refused:
        _refused(up, path)
    return up


def _refused(up: Upload, path: str | None) -> None:
    """Glance refuses ``up``: say so when nothing of ours blocks, and offer the qcow2
    conversion of a sound container image (a fixed VHD)."""
    assert up.glance is not None
    if up.safe:  # otherwise diskkit's own findings already say why (and block)
        up.findings.append(glance_finding(up.glance))
    det = up.detection
    if det is None or up.convert is not None or any(f.blocking for f in det.findings):
        return
    info = registry.lookup(det.format)
    if info is not None and info.is_container and info.qemu:
        up.convert = _convert(info.qemu, path)


def glance_for(target: str, declared: str | None, det: Detection | None) -> GlanceVerdict | None:
    """OpenStack's verdict for ``target`` when it is a local file (``check`` adds it to its
    report), None otherwise. ``declared`` defaults to the disk_format diskkit suggests."""
    from diskkit.target import parse_target
    from diskkit.validate.glance import verdict

    t = parse_target(target)
    if t.kind != "file" or not t.path:
        return None
    df = _glance_name(declared) or (suggested_disk_format(det) if det else None) or "raw"
    return verdict(t.path, df)


def _glance_name(declared: str | None) -> str | None:
    """A declared format as Glance names it (``vpc`` -> ``vhd``), None when it has none."""
    from diskkit.validate.glance import GLANCE_DISK_FORMATS

    if declared is None:
        return None
    low = declared.strip().lower()
    if low in GLANCE_DISK_FORMATS:
        return low
    info = registry.lookup(low)
    return info.glance if info else None


def check_damaged(target: str, declared: str | None) -> Upload:
    """The upload verdict of a target whose header detection cannot read (``check`` calls
    this when its report raises ImageError): findings, never an exception."""
    from diskkit.target import parse_target

    try:
        from diskkit.disk import open_container
    except ImportError:  # pragma: no cover - older tree
        from diskkit.target import open_container  # type: ignore[attr-defined,no-redef]
    t = parse_target(target)
    with open_container(t) as reader:
        return check_upload(reader, t.path if t.kind == "file" else None,
                            _glance_name(declared))
