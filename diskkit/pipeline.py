"""One inspection pipeline: a target is opened once, and each stage is computed lazily, once.

:class:`Inspection` holds the container reader (the stored bytes), and computes on first use:

- ``detection``: what the bytes are (:func:`diskkit.formats.detect.detect`);
- ``findings``/``blocking``/``safe``: the safety findings (detection's, the RBD clone chain's,
  a declared format's ``disk-format-mismatch``);
- ``format``: the format the disk is read as (the one given, the hypervisor's, or detected);
- ``disk``: the guest-visible disk (:func:`diskkit.disk.disk_from`), refused when unsafe;
- ``extents``: one bounded pass over the disk's extents, shared by every later stage;
- ``layout``, ``boot``, ``guest``: partitions/filesystems/LVM, boot code, the operating system.

A stage that cannot be computed is None, and :meth:`Inspection.error` says why. ``info``,
``check``, ``diagnose``, mount planning, ``scan`` and convert planning all read it; the
report ``diskkit info`` prints is :meth:`Inspection.report`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any

from diskkit.disk import disk_from, open_container
from diskkit.errors import DiskkitError, HostError, ImageError, UserError
from diskkit.findings import Finding
from diskkit.formats import registry, safety
from diskkit.formats.detect import Detection, detect
from diskkit.formats.registry import ReadVia
from diskkit.readers.base import Extent, Reader, merge_extents
from diskkit.target import Target, parse_target

if TYPE_CHECKING:
    from diskkit.boot import BootInfo
    from diskkit.guest import GuestInfo
    from diskkit.layout.inspect import Layout

#: Most extents the one pass keeps (merged); past it ``Extents.complete`` is False.
MAX_EXTENTS = 1 << 16
#: The pass asks the disk for its extents this many bytes at a time.
EXTENT_WINDOW = 4 << 30


@dataclass(frozen=True)
class Extents:
    """The disk's extents from one bounded pass (adjacent ones of a kind merged)."""

    items: tuple[Extent, ...]
    #: False when the pass stopped at :data:`MAX_EXTENTS` (``items`` is then a prefix).
    complete: bool

    @property
    def allocated(self) -> int:
        """Bytes of the listed extents that may hold data."""
        return sum(e.length for e in self.items if e.data)

    @property
    def data(self) -> tuple[Extent, ...]:
        """Only the extents that may hold data."""
        return tuple(e for e in self.items if e.data and e.length)


class _Borrowed(Reader):
    """A view of a reader that someone else closes."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.size = inner.size
        self.name = inner.name

    def _read(self, offset: int, length: int) -> bytes:
        return self.inner.read(offset, length)

    def readinto(self, offset: int, buf: memoryview) -> int:
        return self.inner.readinto(offset, buf)

    def extents(self, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        return self.inner.extents(offset, length)


def hypervisor_format(target: Target, detection: Detection, fmt: str | None) -> str:
    """The format a hypervisor opens the target with: ``fmt`` when given; an RBD volume is
    always raw; otherwise the detected format when it is a container qemu reads (a fixed VHD
    is raw bytes followed by a footer), else raw (what a volume made of those bytes is)."""
    if fmt:
        return safety.normalise_format(fmt)
    if target.kind == "rbd":
        return "raw"
    info = registry.lookup(detection.format)
    if info is not None and info.is_container and info.qemu_can_read and \
            detection.details.get("subformat") != "fixed":
        return detection.format
    return "raw"


class Inspection:
    """Everything diskkit knows about one target, computed lazily and once.

    ``fmt`` forces the format the disk is read as; ``declared_format`` adds the
    ``disk-format-mismatch`` check without forcing; ``hypervisor=True`` reads the disk as a
    hypervisor would (:func:`hypervisor_format`) and, for formats read as raw bytes, never
    refuses (nothing but diskkit's own parsers reads them). A context manager: closing it
    closes every reader it opened.
    """

    def __init__(self, target: str | Target, fmt: str | None = None, *,
                 declared_format: str | None = None, allow_backing: bool = False,
                 allow_unsafe: bool = False, hypervisor: bool = False,
                 container: Reader | None = None) -> None:
        self.target = parse_target(target) if isinstance(target, str) else target
        self.fmt = fmt
        self.declared_format = declared_format
        self.allow_backing = allow_backing
        self.allow_unsafe = allow_unsafe
        self.hypervisor = hypervisor
        self._errors: dict[str, DiskkitError] = {}
        self._disk: Reader | None = None
        self._handed_over = False
        self._closed = False
        #: A ``container`` given by the caller stays the caller's (it is not closed here).
        self._owns_container = container is None
        #: The stored bytes (opened now: a missing file is an error of the constructor).
        self.container: Reader = container if container is not None else \
            open_container(self.target)

    # -- stages ------------------------------------------------------------------------------

    @cached_property
    def detection(self) -> Detection:
        """What the stored bytes are."""
        return detect(self.container)

    @cached_property
    def actual_size(self) -> int | None:
        """Bytes the target occupies where it is stored (None when unknown)."""
        return getattr(self.container, "allocated", None)

    @cached_property
    def rbd(self) -> tuple[dict[str, Any] | None, list[Finding]]:
        """The ``rbd`` section (image facts and clone chain) and its findings, for RBD."""
        if self.target.kind != "rbd":
            return None, []
        from diskkit.rbd.chain import rbd_facts

        return rbd_facts(self.container, self.detection)  # type: ignore[arg-type]

    @cached_property
    def findings(self) -> list[Finding]:
        """Safety findings: detection's, the RBD chain's and ``declared_format``'s (a forced
        ``fmt`` that does not match is refused when the disk is opened)."""
        out = list(self.detection.findings) + self.rbd[1]
        out += safety.check_size(self.container.size, self.detection)
        if self.declared_format is not None:
            out += safety.check_declared(self.detection, self.declared_format)
        return out

    @property
    def blocking(self) -> list[Finding]:
        """The findings that stop the image from being opened."""
        return safety.blocking(self.findings, allow_backing=self.allow_backing)

    @property
    def safe(self) -> bool:
        """Safe to upload and open: no finding blocks."""
        return not any(f.blocking for f in self.findings)

    @cached_property
    def format(self) -> str:
        """The format the disk is read as (diskkit's name: ``vhd``, not ``vpc``)."""
        if self.hypervisor:
            return hypervisor_format(self.target, self.detection, self.fmt)
        return safety.normalise_format(self.fmt) if self.fmt else self.detection.format

    @property
    def format_info(self) -> registry.FormatInfo:
        """The registry's entry of :attr:`format`."""
        return registry.get(self.format)

    @cached_property
    def disk(self) -> Reader | None:
        """The guest-visible disk, or None (see :meth:`error`): not a disk, encrypted, unsafe,
        or a format the hypervisor would not open these bytes as."""
        try:
            return self._open_disk()
        except (ImageError, HostError, UserError) as exc:
            self._errors["disk"] = exc
            return None

    def _open_disk(self) -> Reader:
        self.actual_size  # noqa: B018 - read it before the container may be handed over
        self.findings  # noqa: B018
        info = self.format_info
        if self.hypervisor and info.raw_bytes:
            return self.container
        if self.blocking and not self.allow_unsafe:
            codes = ", ".join(dict.fromkeys(f.code for f in self.blocking))
            raise ImageError(f"{self.target.display}: unsafe to open ({codes})",
                             code="unsafe-image", hint=f"run: diskkit check {self.target.display}")
        if info.read is ReadVia.UNPACK:
            raise ImageError(f"{self.target.display} is a {info.name} file, not a disk image",
                             code="not-a-disk", hint=f"unpack it first ({info.unpack})")
        if self.hypervisor and self.format != self.detection.format:
            raise ImageError(f"the hypervisor is told {self.format} but the bytes are "
                             f"{self.detection.format}: qemu refuses to open it",
                             code="disk-format-mismatch")
        fmt = self.format if (self.fmt or self.hypervisor) else None
        # A caller's container is lent through a view whose close() leaves it open.
        source = self.container if self._owns_container else _Borrowed(self.container)
        disk = disk_from(source, self.target, self.detection, fmt,
                         allow_backing=self.allow_backing, allow_unsafe=self.allow_unsafe)
        if disk is not self.container and disk is not source:
            self._handed_over = True
        self._disk = disk
        return disk

    @cached_property
    def extents(self) -> Extents | None:
        """One bounded pass over the disk's extents (None when there is no disk)."""
        disk = self.disk
        if disk is None:
            return None
        items: list[Extent] = []
        complete = True
        try:
            # Window by window: no reader is asked to map the whole disk at once (a crafted
            # 1 TiB qcow2 of alternating clusters), and the walk stops at MAX_EXTENTS.
            for start in range(0, disk.size, EXTENT_WINDOW):
                for ext in merge_extents(disk.extents(start, EXTENT_WINDOW)):
                    if items and items[-1].data == ext.data and items[-1].end == ext.offset:
                        items[-1] = Extent(items[-1].offset, items[-1].length + ext.length,
                                           ext.data)
                        continue
                    if len(items) >= MAX_EXTENTS:
                        complete = False
                        break
                    items.append(ext)
                if not complete:
                    break
        except (ImageError, HostError) as exc:
            self._errors["extents"] = exc
            return None
        return Extents(tuple(items), complete)

    @cached_property
    def layout(self) -> Layout | None:
        """Partitions, filesystems and LVM of the disk (None: see ``error("layout")``)."""
        disk = self.disk
        if disk is None:
            return None
        from diskkit.layout.inspect import inspect_layout

        try:
            return inspect_layout(disk)
        except (ImageError, HostError) as exc:
            self._errors["layout"] = exc
            return None

    @cached_property
    def boot(self) -> BootInfo | None:
        """What boots from the disk (None: see ``error("boot")``)."""
        layout = self.layout
        if layout is None or self.disk is None:
            return None
        from diskkit.boot import inspect_boot

        try:
            return inspect_boot(self.disk, layout)
        except (ImageError, HostError) as exc:
            self._errors["boot"] = exc
            return None

    @cached_property
    def guest(self) -> GuestInfo | None:
        """The guest operating systems (None without a layout or without diskkit.guest)."""
        layout = self.layout
        if layout is None or self.disk is None:
            return None
        try:
            from diskkit.guest import inspect_guest
        except ImportError:  # pragma: no cover - until diskkit.guest lands everywhere
            return None
        try:
            return inspect_guest(self.disk, layout)
        except (ImageError, HostError) as exc:
            self._errors["guest"] = exc
            return None

    def error(self, stage: str) -> DiskkitError | None:
        """Why ``stage`` ("disk", "extents", "layout", "boot", "guest") is None."""
        if stage in ("layout", "boot", "guest", "extents") and "disk" in self._errors:
            return self._errors["disk"]
        if stage in ("boot", "guest") and "layout" in self._errors:
            return self._errors["layout"]
        return self._errors.get(stage)

    # -- reports -----------------------------------------------------------------------------

    def describable(self) -> bool:
        """info describes the disk only when it is safe and a disk."""
        return not self.blocking and self.detection.format in registry.names(disk=True) and \
            registry.get(self.detection.format).read is not ReadVia.REFUSE

    def report(self, *, sections: bool = True) -> ImageReport:
        """The report ``diskkit info`` (``sections=False``: ``check``) prints."""
        rep = ImageReport(self.target.display, self.detection, self.actual_size,
                          list(self.findings))
        if self.rbd[0] is not None:
            rep.sections["rbd"] = self.rbd[0]
        if not sections or not self.describable():
            return rep
        if self.layout is None:
            exc = self.error("layout")
            if exc is not None:
                rep.sections["layout_error"] = {"error": str(exc), "code": exc.code}
            return rep
        rep.layout = self.layout
        rep.sections.update(self.layout.to_dict())
        rep.findings.extend(self.layout.findings)
        rep.disk_findings.extend(self.layout.findings)
        if self.boot is None:
            exc = self.error("boot")
            rep.sections["boot"] = {"error": str(exc), "code": exc.code if exc else None}
        else:
            rep.boot = self.boot
            rep.sections["boot"] = self.boot.to_dict()
            rep.findings.extend(self.boot.findings)
            rep.disk_findings.extend(self.boot.findings)
        rep.guest = self.guest  # the operating systems (docs/guest.md)
        if rep.guest is not None:
            rep.sections["os"] = rep.guest.to_dict()
        elif (gexc := self.error("guest")) is not None:
            rep.sections["os"] = {"error": str(gexc), "code": gexc.code}
        return rep

    # -- life cycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the disk and the container (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._disk is not None and self._disk is not self.container:
                self._disk.close()
        finally:
            if not self._handed_over and self._owns_container:
                self.container.close()

    def __enter__(self) -> Inspection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


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
    #: The GuestInfo behind the ``os`` section.
    guest: Any = None
    #: The layout and boot findings among ``findings``: facts about the disk's contents, not
    #: about upload safety (docs/json.md: ``safe`` means the same in info and check).
    disk_findings: list[Finding] = field(default_factory=list)

    @property
    def format(self) -> str:
        """The detected (primary) format."""
        return self.detection.format

    @property
    def safe(self) -> bool:
        """Safe to upload and open: no upload-safety finding blocks (layout and boot
        findings, such as a disk without boot code, are reported but do not count)."""
        disk = {id(f) for f in self.disk_findings}
        return not any(f.blocking for f in self.findings if id(f) not in disk)

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

    def to_json(self) -> dict[str, Any]:
        """What ``diskkit info --json`` prints."""
        return self.to_dict()


def inspect_target(target: str | Target, fmt: str | None = None, *,
                   declared_format: str | None = None, allow_backing: bool = False,
                   sections: bool = True) -> ImageReport:
    """Detect, check and describe ``target``: the report ``diskkit info``/``check`` print.

    The target is opened and detected once. ``fmt`` forces the format the disk is read as;
    ``declared_format`` adds the ``disk-format-mismatch`` check; ``sections=False`` skips
    what is on the disk (``check``). The disk is described only when it is safe to open.
    """
    with Inspection(target, fmt, declared_format=declared_format,
                    allow_backing=allow_backing) as insp:
        return insp.report(sections=sections)
