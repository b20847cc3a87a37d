"""Checks that need more than the file: the declared disk_format (CVE-2024-40767), and
which findings stop :func:`diskkit.disk.open_disk` from handing an image to qemu."""

from __future__ import annotations

from diskkit.findings import Finding, Severity
from diskkit.formats import registry
from diskkit.formats.base import finding
from diskkit.formats.detect import Detection

#: Findings that only say "this image reads other files"; allow_backing accepts them.
BACKING_CODES = frozenset({"qcow2-backing-file", "vmdk-parent", "vhd-differencing",
                           "vhdx-parent", "qed-backing-file", "vdi-differencing"})


def normalise_format(name: str) -> str:
    """A declared format as detection names it (``vpc`` -> ``vhd``, Glance's ``ami`` ->
    ``raw``); :class:`UserError` for an unknown one."""
    return registry.normalise(name)


def check_declared(detection: Detection, declared: str) -> list[Finding]:
    """``disk-format-mismatch`` when the declared format is not what the file is."""
    want = normalise_format(declared)
    got = detection.format
    if want == got:
        return []
    if want == "raw" and got == "iso":
        return [finding(
            "disk-format-mismatch", Severity.WARNING,
            "declared raw but the file is an ISO: the bytes are the same, but Nova attaches "
            "disk_format=iso as a CD-ROM", "declare it as iso (glance image-update "
            "--disk-format iso)", [], declared=declared, detected=got)]
    info = registry.get(got)
    if not info.is_disk:
        # qemu-img cannot read archives or compressed files: unpacking is the only fix.
        fix = (f"unpack it first ({info.unpack or 'unpack it'}), then check the disk "
               f"inside and declare its real format")
        message = (f"declared {declared} but the file is {got}, not a disk image: a "
                   f"hypervisor would see the {got} bytes as the guest's disk")
    else:
        fix = (f"declare the real format (--disk-format {got}) or convert the image: qemu-img "
               f"convert -f {info.qemu or got} -O {want} IN OUT")
        message = (f"declared {declared} but the file is {got} (CVE-2024-40767: a hypervisor "
                   f"told the wrong format reads the {got} metadata as guest data, or follows "
                   f"it)")
    return [finding("disk-format-mismatch", Severity.ERROR, message, fix, [],
                    declared=declared, detected=got)]


#: Findings that block an UPLOAD (OpenStack refuses the image: check/validate exit 1) but
#: not opening it to look inside: nothing in them makes qemu or diskkit read another file or
#: misread this one (a hybrid MBR, extended L2, a LUKS container: it needs its key anyway).
UPLOAD_ONLY_CODES = frozenset({"mbr-bad-boot-flag", "protective-mbr-invalid", "hybrid-mbr",
                               "mbr-empty", "qcow2-extended-l2", "luks-image"})


def blocking(findings: list[Finding] | tuple[Finding, ...], *,
             allow_backing: bool = False) -> list[Finding]:
    """The findings that stop an image from being opened (upload-only ones do not)."""
    return [f for f in findings
            if f.blocking and f.code not in UPLOAD_ONLY_CODES
            and not (allow_backing and f.code in BACKING_CODES)]


#: A disk smaller than one sector holds nothing a firmware or a guest can use.
MIN_DISK = 512


def check_size(size: int, detection: Detection) -> list[Finding]:
    """``empty-image`` for a 0-byte file, ``image-too-small`` for a raw file shorter than one
    512-byte sector: both are accepted by qemu-img and Glance, and both are a failed upload or
    copy rather than a disk."""
    if size == 0:
        return [finding(
            "empty-image", Severity.ERROR,
            "the file is empty (0 bytes): an interrupted download or copy, not a disk image",
            "fetch or copy the image again and compare its checksum with the source's")]
    if size < MIN_DISK and detection.format == "raw":
        return [finding(
            "image-too-small", Severity.ERROR,
            f"the file is {size} bytes, less than one 512-byte sector: not a disk image "
            "(a truncated download, or a text file)",
            "fetch or copy the image again and compare its checksum with the source's",
            [("whole file", 0, None)], size=size)]
    return []
