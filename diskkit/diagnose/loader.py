"""The boot loader past its first stage, and the kernel: GRUB reads its filesystem (features
its version knows), grub.cfg's ``search`` commands resolve on this disk, the default entry
(``default``, ``saved_entry`` in grubenv, BLS) names a kernel and initrd present on the
filesystem GRUB reads. Facts come from the pipeline's ``layout``, ``boot`` and ``guest``."""

from __future__ import annotations

import re
from typing import Any

from diskkit.diagnose import grubfs, guestfixes
from diskkit.diagnose.stages import CANNOT_TELL, FAILS, OK, Stage, sources
from diskkit.findings import Finding, Severity


def _finding(code: str, message: str, fix: str, severity: Severity = Severity.CRITICAL,
             **details: Any) -> Finding:
    return Finding(code, severity, message, (), fix, dict(details))


def grub_location(boot: Any, root: Any) -> str:
    """Where GRUB reads grub.cfg and the kernel: core.img's prefix device when the boot code
    says it, else the OS root's /boot (or the root itself)."""
    for g in getattr(boot, "grub", ()) or ():
        t = g.target
        if t is None or not t.exists:
            continue
        if t.kind == "partition" and t.partition_number:
            return f"partition {t.partition_number}"
        if t.kind == "lvm" and t.lv:
            return f"lv {t.lv}"
    return str(root.mountpoints.get("/boot") or root.location)


def _fs_at(layout: Any, location: str) -> Any:
    return next((f for f in getattr(layout, "filesystems", ()) if f.location == location), None)


def _searches(root: Any, layout: Any) -> tuple[list[str], list[str]]:
    """(lines of searches that find nothing on this disk, lines of those that do)."""
    bad, good = [], []
    fss = getattr(layout, "filesystems", ())
    grub = root.boot.grub if root.boot else None
    seen: set[tuple[str, str]] = set()
    for kind, value, src in (grub.searches if grub else ()):
        if (kind, value) in seen:
            continue
        seen.add((kind, value))
        if kind == "fs-uuid":
            hit = next((f for f in fss if f.uuid and f.uuid.lower() == value.lower()), None)
        elif kind == "label":
            hit = next((f for f in fss if f.label == value), None)
        else:
            continue  # --file: looked up on every filesystem; not judged here
        line = sources(src)[0]
        if hit is None:
            bad.append(f"{line} -> no filesystem with {kind} {value} on this disk: GRUB says "
                       f"'error: no such device: {value}.'")
        else:
            good.append(f"{line} -> {hit.location} ({hit.type})")
    return bad, good


def _strip_device(path: str) -> str:
    """``(hd0,msdos1)/vmlinuz`` -> ``/vmlinuz``; ``$root``-relative paths stay."""
    return re.sub(r"^\([^)]*\)", "", path)


def _present(root: Any, path: str) -> bool:
    """Is ``path`` (a kernel or initrd, guest path) one of the files the guest layer found?"""
    known = set()
    for k in root.kernels:
        if k.path:
            known.add(k.path)
        if k.initramfs is not None:
            known.add(k.initramfs.path)
    return path in known


def boot_loader(facts: Any, root: Any, bus: str, image: str) -> tuple[Stage, Any]:
    """The GRUB stage past core.img (None entry when GRUB is not the loader, with a reason)
    -> (stage, the default boot entry or None)."""
    cfg = root.boot
    location = grub_location(facts.boot, root)
    ev: list[str] = [f"GRUB reads {location}"]
    fs = _fs_at(facts.layout, location)
    if fs is not None and fs.offset is not None and facts.disk is not None:
        r = grubfs.readability(facts.disk, fs.offset, fs.type, root.packages.notable)
        if r is not None:
            ev.append(r.evidence + (f"; the image's GRUB: {r.version}" if r.version else ""))
            if r.unreadable:
                return Stage("boot-loader", FAILS, f"GRUB ({r.version or 'this version'}) "
                             f"cannot read the {fs.type} filesystem in {location}: it sets "
                             f"{', '.join(r.unreadable)}, which GRUB's {fs.type} driver does "
                             "not know ('error: unknown filesystem.')", tuple(ev), (_finding(
                                 "grub-unknown-filesystem", f"the {fs.type} filesystem GRUB "
                                 f"loads grub.cfg and the kernel from ({location}) has "
                                 f"incompatible features {', '.join(r.unreadable)} that "
                                 f"{r.version or 'the image GRUB'} cannot read: GRUB stops "
                                 "at 'error: unknown filesystem.' and 'grub rescue>'",
                                 guestfixes.grub_unreadable(fs.type, r.unreadable, image),
                                 location=location, features=list(r.unreadable)),),
                             "grub-error"), None
    if cfg is None or (cfg.grub is None and not cfg.bls):
        return Stage("boot-loader", CANNOT_TELL, "no grub.cfg or BLS entries found in the "
                     "guest", tuple(ev)), None
    bad, good = _searches(root, facts.layout)
    ev += good + bad
    entry = cfg.default_entry
    if entry is None:
        return Stage("boot-loader", CANNOT_TELL, "GRUB's default menu entry could not be "
                     "determined", tuple(ev)), None
    ev += sources(entry.source)
    if cfg.grub is not None and cfg.grub.default_source is not None:
        ev += sources(cfg.grub.default_source)
    if not entry.kernel:
        return Stage("boot-loader", CANNOT_TELL, f"the default entry {entry.title!r} loads "
                     "no Linux kernel", tuple(ev)), entry
    missing = []
    for path in (entry.kernel, *entry.initrd):
        full = cfg.boot_prefix + _strip_device(path)
        if not _present(root, full):
            missing.append(full)
    if missing:
        return Stage("boot-loader", FAILS, f"the default entry {entry.title!r} loads "
                     f"{', '.join(missing)}, which is not on the filesystem GRUB reads "
                     "('error: file ... not found.')", tuple(ev), (_finding(
                         "grub-kernel-missing", f"GRUB's default entry names "
                         f"{', '.join(missing)}, absent from {location}",
                         guestfixes.update_grub(image), files=missing),), "grub-error"), entry
    note = "; searches by UUID/label that find nothing only print 'error: no such device' " \
        "(the menu entry's preset root= is used)" if bad else ""
    return Stage("boot-loader", OK, f"GRUB loads grub.cfg from {location}, default entry "
                 f"{entry.title!r}: {entry.kernel} and {len(entry.initrd)} initrd present"
                 + note, tuple(ev)), entry


def kernel(root: Any, entry: Any) -> Stage:
    """The kernel the entry names starts (its file is present: checked by the loader)."""
    k = next((k for k in root.kernels if k.path and entry.kernel
              and k.path.endswith(_strip_device(entry.kernel))), None)
    ev = tuple(sources(entry.cmdline_source)) if entry.cmdline_source else ()
    if k is None:
        return Stage("kernel", OK, f"{entry.kernel} starts", ev)
    return Stage("kernel", OK, f"Linux {k.version} starts ({k.path}"
                 + (f", initrd {k.initramfs.path}" if k.initramfs else ", no initrd") + ")",
                 ev)
