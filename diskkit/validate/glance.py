"""What OpenStack will do with an upload: oslo.utils' format inspector, run in this process
exactly as Glance and Nova run it, and the disk_format rules they apply around it.

The code path (Nova ``nova/image/format_inspector`` use in ``do_image_deep_inspection``;
Glance's upload/import inspection since 2024.2 and its image conversion plugin do the same):

1. a ``disk_format`` oslo has no inspector for is refused (``ploop``), except the AMI trio
   (``ami``, ``ari``, ``aki``), which may hold anything;
2. ``detect_file_format(path)``: every inspector reads the file at once; two formats matching
   is ``ImageFormatError`` (refused);
3. ``inspector.safety_check()``: any failure is ``SafetyCheckFailed`` (refused; the reasons
   are the check names and messages);
4. the detected format must equal ``disk_format``; ``gpt`` declared as ``raw`` is allowed (a
   legacy whole-disk image), and so is anything declared as an AMI format.

Glance's ``[image_format] require_image_format_match`` (default true) enables step 4 at upload;
``gpt_safety_checks_nonfatal`` can make step 3's MBR checks non-fatal at upload, but Nova runs
them anyway when it boots the image, so we report them as refusals.
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
    #: True when the upload passes Glance's inspection (and Nova's, which is the same).
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

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"disk_format": self.disk_format, "glance_accepts": self.accepts,
                "oslo_format": self.oslo_format, "oslo_virtual_size": self.oslo_virtual_size,
                "reason": self.reason or None, "safety_failures": self.failures,
                "oslo_utils_version": self.oslo_version}


def oslo_version() -> str:
    """The installed oslo.utils version."""
    from importlib.metadata import version

    return version("oslo.utils")


def verdict(path: str, disk_format: str) -> GlanceVerdict:
    """Run oslo.utils' inspector on the local file ``path`` as Glance/Nova do for an image
    declared ``disk_format`` (one of :data:`GLANCE_DISK_FORMATS`)."""
    from oslo_utils.imageutils import format_inspector as fi

    ver = oslo_version()
    df = disk_format.lower()

    def no(reason: str, fmt: str | None = None, size: int | None = None,
           failures: dict[str, str] | None = None) -> GlanceVerdict:
        return GlanceVerdict(df, False, fmt, size, reason, failures or {}, ver)

    if df not in AMI_FORMATS and fi.get_inspector(df) is None:
        return no(f"oslo.utils has no inspector for disk_format {df}: Glance cannot convert "
                  f"it ('Unable to convert from format {df}') and Nova refuses it ('Image not "
                  "in a supported format')")
    try:
        insp = fi.detect_file_format(path)
    except fi.ImageFormatError as exc:
        return no(f"format detection failed: {exc}")
    if insp is None:  # pragma: no cover - oslo returns raw at worst
        return no("format detection gave no answer")
    fmt = str(insp)
    size = int(insp.virtual_size or 0)
    try:
        insp.safety_check()
    except fi.SafetyCheckFailed as exc:
        failures = {name: str(err) for name, err in exc.failures.items()}
        detail = "; ".join(f"{k}: {v}" for k, v in failures.items())
        return no(f"safety check failed ({detail}): 'Image has disallowed configuration'",
                  fmt, size, failures)
    except fi.ImageFormatError as exc:
        return no(f"safety check could not run: {exc}", fmt, size)
    if df in AMI_FORMATS or fmt == df or (df == "raw" and fmt == "gpt"):
        return GlanceVerdict(df, True, fmt, size, "", {}, ver)
    return no(f"oslo.utils detects {fmt}, not {df}: 'Image content does not match "
              "disk_format'", fmt, size)
