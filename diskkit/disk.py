"""Opening a target: its stored bytes (:func:`open_container`) and its guest-visible disk
(:func:`open_disk`, :func:`disk_from`). The report built on them is :mod:`diskkit.pipeline`.

``open_disk`` never hands qemu an image it has not checked: it detects the format (or takes
the one given), runs every safety check, and refuses (``ImageError`` listing the finding
codes) unless the caller passes ``allow_unsafe``. qemu is always told the format (``-f``).
"""

from __future__ import annotations

from collections.abc import Callable

from diskkit.errors import ImageError, UserError
from diskkit.findings import Finding
from diskkit.formats import registry, safety
from diskkit.formats.detect import Detection, detect
from diskkit.formats.registry import ReadVia
from diskkit.readers.base import Reader, SliceReader
from diskkit.target import Target, load, parse_target

#: kind -> (dotted path of the container reader class, Debian package that provides it).
#: Readers are loaded lazily: a host without python3-rbd still inspects local files and gets
#: one clear line for ``rbd:``.
_CONTAINER_READERS: dict[str, tuple[str, str]] = {
    "file": ("diskkit.readers.raw:FileReader", "python3"),
    "nbd": ("diskkit.readers.nbd:NbdUriReader", "python3-libnbd"),
    "rbd": ("diskkit.readers.rbd:RbdReader", "python3-rbd python3-rados"),
}


def open_container(target: Target | str) -> Reader:
    """A reader over the target's stored bytes (no format interpretation)."""
    t = _target(target)
    if t.kind == "rbd" and not t.image:
        raise UserError(f"{t.spec}: names a pool, not an image", code="bad-uri",
                        hint="write rbd:POOL/IMAGE (a whole pool is for `diskkit scan`)")
    dotted, package = _CONTAINER_READERS[t.kind]
    cls = load(dotted, package)
    if t.kind == "file":
        return cls(t.path)
    return cls(t)


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
    if info.read in _OWN_READERS:
        own = _own_reader(container, target, info.read)
        if own is not None:
            return own
    if info.read in (ReadVia.QEMU_NBD, *_OWN_READERS) and info.qemu:
        if target.kind != "file":
            raise UserError(f"{target.display}: {fmt} is read through qemu-nbd, for local "
                            "files only", code="unsupported-target",
                            hint="copy the image to a local file, or convert it to raw/qcow2")
        container.close()
        cls = load("diskkit.readers.nbd:QemuNbdReader", "python3-libnbd qemu-utils")
        return cls(target.path, info.qemu, allow_backing=allow_backing)
    raise UserError(f"cannot open a {fmt} image", code="bad-format")


#: Formats diskkit reads itself for the kinds its reader knows (qemu-nbd for the others).
_OWN_READERS = {ReadVia.VMDK: "diskkit.readers.vmdk:VmdkReader",
                ReadVia.VHDX: "diskkit.readers.vhdx:VhdxReader"}


def _own_reader(container: Reader, target: Target, via: ReadVia) -> Reader | None:
    """diskkit's own reader of a VMDK (monolithicSparse, streamOptimized) or VHDX (dynamic,
    fixed), in process: no qemu-nbd server, and any target (a VMDK stored in an RBD image
    too). None when the reader refuses this file and qemu may read it (another VMDK
    createType, a VHDX log to replay: tried again through qemu-nbd, for local files; what
    qemu-nbd says then is the answer)."""
    cls = load(_OWN_READERS[via], "python3")
    try:
        reader: Reader = cls(container, name=f"{target.display} ({via.value})")
    except ImageError:
        if target.kind != "file":
            raise
        return None
    return reader


def open_in_process(path: str, fmt: str) -> Reader | None:
    """diskkit's own reader of the local file ``path`` in format ``fmt`` (a name or qemu
    driver name), as the registry reads it (raw in place, qcow2, the VMDK and VHDX kinds
    their readers know), or None where only qemu reads it: another format, a qcow2 naming a
    backing or data file (never followed here), a kind the VMDK/VHDX reader refuses. No
    detection: the caller knows the format."""
    info = registry.lookup(fmt)
    if info is None or info.read not in (ReadVia.IN_PLACE, ReadVia.QCOW2, *_OWN_READERS):
        return None
    container = open_container(path)
    try:
        if info.read is ReadVia.IN_PLACE:
            return container
        if info.read is ReadVia.QCOW2:
            cls = load("diskkit.readers.qcow2:Qcow2Reader", "python3")
            q: Reader = cls(container)
            if q.header.has_backing_file or q.header.has_data_file:  # type: ignore[attr-defined]
                q.close()
                return None
            return q
        own = _own_reader(container, _target(path), info.read)
    except BaseException:
        container.close()
        raise
    if own is None:
        container.close()
    return own


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
