"""What OpenStack will do with an upload: oslo.utils' format inspector, run in this process
as Glance and Nova run it, and the disk_format rules each applies around it. Two verdicts,
because the two services differ (read from their sources):

Glance, at upload (``glance/location.py``, ``ImageProxy.set_data``; only for container_format
``bare``): every inspector reads the stream; when exactly ``iso`` and ``gpt`` match, the file
is taken as ``iso`` (a bootable hybrid ISO legitimately carries an MBR/GPT in front); any other
double match is ``ImageFormatError``. Then: the detected format equals disk_format, or it is
``raw`` and disk_format has no inspector (``ami``...), or disk_format is ``raw`` (anything is
let through, with a warning); otherwise a mismatch. Then ``safety_check()``. With
``[image_format] require_image_format_match`` at its default (true) every error refuses the
upload; ``gpt_safety_checks_nonfatal`` (default empty) could relax the MBR checks.

Nova, when it boots the image (``nova/virt/images.py``, ``do_image_deep_inspection`` and
``get_image_format``): a disk_format oslo has no inspector for is refused (``ploop``) except the
AMI trio; the same iso+gpt rule; ``safety_check()``; then the detected format must equal
disk_format, except ``gpt`` registered as ``raw`` (a legacy whole-disk image) and the AMI trio.

diskkit blocks an image either refuses: an upload Glance takes but Nova will not boot is of no
use to the operator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

#: Glance's documented ``disk_format`` values (glance-api.conf ``[image_format]
#: disk_formats`` default, Glance "Disk and container formats" page).
GLANCE_DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi",
                       "iso", "ploop")
#: What each value means, from the same page (shown by ``--help`` and the docs).
DISK_FORMAT_MEANING = {
    "ami": "an Amazon machine image (raw disk bytes)",
    "ari": "an Amazon ramdisk image",
    "aki": "an Amazon kernel image",
    "vhd": "VHD, used by VMware, Xen, Microsoft, VirtualBox and others",
    "vhdx": "VHDX, the enhanced VHD of Hyper-V (larger disks, corruption protection)",
    "vmdk": "VMDK, common to many virtual machine monitors",
    "raw": "an unstructured disk image",
    "qcow2": "QEMU copy-on-write v2, which can grow and supports snapshots",
    "vdi": "VDI, VirtualBox's disk format",
    "iso": "an ISO 9660 optical disc image",
    "ploop": "ploop, Virtuozzo's format for OS containers",
}
#: Glance's documented ``container_format`` values.
GLANCE_CONTAINER_FORMATS = ("bare", "ovf", "ova", "aki", "ari", "ami", "docker",
                            "compressed")
AMI_FORMATS = ("ami", "ari", "aki")

# oslo logs each failed check at WARNING: keep it off our stderr (nothing below cli prints).
logging.getLogger("oslo_utils").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class GlanceVerdict:
    """oslo.utils' verdict on one file, and what Glance/Nova do with it for ``disk_format``."""

    #: The disk_format the verdict is for.
    disk_format: str
    #: True when Glance's upload inspection lets it in.
    accepts: bool
    #: oslo's name for the file (``raw``, ``gpt``, ``qcow2``...); None when detection failed.
    oslo_format: str | None
    #: oslo's virtual size (0 when it does not know).
    oslo_virtual_size: int | None
    #: Why it is refused, in oslo's/Glance's words ("" when accepted).
    reason: str
    #: oslo's failed safety checks by name -> message.
    failures: dict[str, str] = field(default_factory=dict)
    #: oslo.utils' version.
    oslo_version: str = ""
    #: True when Nova's deep inspection will boot it (``do_image_deep_inspection``).
    nova_accepts: bool = True
    #: Why Nova refuses it ("" when it accepts).
    nova_reason: str = ""

    @property
    def refused(self) -> bool:
        """Glance refuses the upload, or Nova refuses to boot it."""
        return not (self.accepts and self.nova_accepts)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"disk_format": self.disk_format, "glance_accepts": self.accepts,
                "oslo_format": self.oslo_format, "oslo_virtual_size": self.oslo_virtual_size,
                "reason": self.reason or None, "safety_failures": self.failures,
                "nova_accepts": self.nova_accepts, "nova_reason": self.nova_reason or None,
                "oslo_utils_version": self.oslo_version}


def oslo_version() -> str:
    """The installed oslo.utils version."""
    from importlib.metadata import version

    return version("oslo.utils")


def _detect(path: str) -> Any:
    """oslo's inspector for ``path`` as Nova's ``get_image_format`` and Glance's upload pick
    it: read until the inspectors decide; iso+gpt is the iso; any other double match raises
    ``ImageFormatError``."""
    from oslo_utils.imageutils import format_inspector as fi

    with open(path, "rb") as f:
        wrapper = fi.InspectWrapper(f)
        try:
            while f.peek():
                wrapper.read(4096)
                if wrapper.formats:
                    break
        finally:
            wrapper.close()
    try:
        return wrapper.format
    except fi.ImageFormatError:
        matches = wrapper.formats or []
        if {str(x) for x in matches} == {"iso", "gpt"}:
            return next(x for x in matches if str(x) == "iso")
        raise


def _sorted_formats(message: str) -> str:
    """oslo lists the formats of a multiple match in set order (different from run to run):
    sort them so the same file always gives the same text."""
    head, sep, names = message.partition("Multiple formats detected: ")
    if not sep:
        return message
    return head + sep + ",".join(sorted(n.strip() for n in names.split(",")))


def verdict(path: str, disk_format: str) -> GlanceVerdict:
    """Run oslo.utils' inspector on the local file ``path`` as Glance (upload) and Nova (boot)
    do for an image declared ``disk_format`` (one of :data:`GLANCE_DISK_FORMATS`)."""
    from oslo_utils.imageutils import format_inspector as fi

    ver = oslo_version()
    df = disk_format.lower()
    no_inspector = df not in AMI_FORMATS and fi.get_inspector(df) is None
    nova_no = (f"oslo.utils has no inspector for disk_format {df}: Nova refuses it ('Image "
               "not in a supported format')") if no_inspector else ""
    try:
        insp = _detect(path)
    except fi.ImageFormatError as exc:
        reason = f"format detection failed: {_sorted_formats(str(exc))}"
        return GlanceVerdict(df, False, None, None, reason, {}, ver, False, nova_no or reason)
    fmt = str(insp)
    size = int(insp.virtual_size or 0)
    failures: dict[str, str] = {}
    safety = ""
    try:
        insp.safety_check()
    except fi.SafetyCheckFailed as exc:
        failures = {name: str(err) for name, err in exc.failures.items()}
        detail = "; ".join(f"{k}: {v}" for k, v in failures.items())
        safety = f"safety check failed ({detail}): 'Image failed safety checks'"
    except fi.ImageFormatError as exc:
        safety = f"safety check could not run: {exc}"
    # Glance's upload rules (location.py): a match, an uninspectable disk_format holding
    # unrecognised bytes, or anything declared raw; then the safety check.
    if fmt == df or (fmt == "raw" and df not in fi.ALL_FORMATS) or df == "raw":
        glance_reason = safety
    else:
        glance_reason = (f"oslo.utils detects {fmt}, not {df}: 'Image disk_format {df} does "
                         f"not match stream data {fmt}'")
    # Nova's boot rules (images.py).
    if nova_no:
        nova_reason = nova_no
    elif safety:
        nova_reason = safety.replace("'Image failed safety checks'",
                                     "'Image does not pass safety check'")
    elif df in AMI_FORMATS or fmt == df or (df == "raw" and fmt == "gpt"):
        nova_reason = ""
    else:
        nova_reason = (f"oslo.utils detects {fmt}, not {df}: Nova refuses to boot it ('Image "
                       "content does not match disk_format')")
    return GlanceVerdict(df, not glance_reason, fmt, size, glance_reason, failures, ver,
                         not nova_reason, nova_reason)
