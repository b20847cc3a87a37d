"""What the formats qemu reads but OpenStack does not take have in common: the finding that
refuses them for upload, naming the conversion to run.

Each format has its own module (:mod:`~diskkit.formats.parallels`,
:mod:`~diskkit.formats.bochs`, :mod:`~diskkit.formats.cloop`, :mod:`~diskkit.formats.dmg`,
:mod:`~diskkit.formats.qcow1`) with a typed header and a probe; each gives the virtual size
qemu 7.2's driver gives (``qemu-img info -f FMT``).
"""

from __future__ import annotations

from diskkit.findings import Finding, Severity
from diskkit.formats.base import finding


def convert_command(qemu: str, src: str = "IN", dst: str = "OUT.qcow2") -> str:
    """The ``qemu-img convert`` line that turns a ``qemu``-format file into qcow2 (the
    arguments are used as given: quote real paths with :func:`shlex.quote` first)."""
    return f"qemu-img convert -f {qemu} -O qcow2 {src} {dst}"


def refused(code: str, qemu: str, what: str, why: str,
            evidence: list[tuple[str, int | None, bytes | None]]) -> Finding:
    """The ERROR finding ``code`` for a ``what`` image (qemu driver ``qemu``)."""
    return finding(
        code, Severity.ERROR,
        f"{what}: qemu reads it (driver {qemu}), but it is not an OpenStack disk_format: "
        f"Glance's inspector calls it raw and the guest would see the {qemu} metadata as its "
        f"disk ({why})", f"convert it to qcow2 before upload: {convert_command(qemu)}",
        evidence, qemu_format=qemu)
