"""What ``diskkit cat``, ``ls``, ``find`` and ``stat`` call: a guest file read with no root and
no mount when the filesystems are readable in-process, a mount otherwise.

This is a services-level module (it imports :mod:`diskkit.backends`, lazily): the readers
below it (:mod:`diskkit.guest.fs`) never do.

The selection is the mount planner's (:func:`diskkit.backends.select.plan`): ``partition``,
``lv``, ``os_root`` or a whole-disk filesystem. With ``backend="auto"``:

1. in-process (:func:`open_guest`): the chosen filesystem, or for ``os_root`` the first
   filesystem (LVs first, as the mount path does) holding /etc/fstab or /etc/os-release,
   plus the fstab entries found on this disk, composed into one tree;
2. when a filesystem needed is of a type no in-process reader handles (btrfs, pure UDF...):
   the mount path of :mod:`diskkit.backends` (kernel mounts or the libguestfs appliance, as
   the planner chooses), read through :class:`~diskkit.guest.fs.mounted.MountedFS` or
   :class:`~diskkit.guest.fs.appliance.ApplianceFS`, so symlinks are still resolved inside
   the guest.

Any other ``backend`` ("loop", "nbd", "guestfs") forces the mount path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from diskkit.errors import HostError, ImageError, UserError
from diskkit.guest.fs import location_reader, open_filesystem, readable_in_process
from diskkit.guest.fs.api import DEFAULT_WALK_DEPTH, FileStat
from diskkit.guest.fs.base import BaseFS
from diskkit.guest.fs.composite import CompositeFS

#: Largest file ``read_file`` returns in memory (``cat --json``); streaming has no cap.
MAX_IN_MEMORY = 256 << 20
#: Largest /etc/fstab read while looking for the OS root.
_FSTAB_LIMIT = 1 << 20


def _open_piece(disk: Any, layout: Any, piece: Any) -> BaseFS:
    if not readable_in_process(piece.fstype):
        raise HostError(f"{piece.location}: {piece.fstype} is not read in-process",
                        code="fs-unsupported")
    fs = open_filesystem(location_reader(disk, layout, piece.location), piece.fstype,
                         label=piece.label, uuid=piece.uuid)
    assert isinstance(fs, BaseFS)
    return fs


def _is_root(fs: BaseFS) -> bool:
    for path in ("/etc/fstab", "/etc/os-release"):
        with contextlib.suppress(OSError):
            if fs.stat(path).is_file:
                return True
    return False


def _os_tree(disk: Any, layout: Any, plan: Any, opened: list[BaseFS]) -> CompositeFS:
    from diskkit.backends.fstab import parse
    from diskkit.backends.select import find_piece

    unreadable = []
    for cand in sorted(plan.candidates, key=lambda c: (not c.location.startswith("lv "),
                                                        c.location)):
        if not readable_in_process(cand.fstype):
            unreadable.append(cand)
            continue
        try:
            fs = _open_piece(disk, layout, cand)
        except (HostError, ImageError, UserError, OSError):
            continue  # not readable as a root: try the next one
        opened.append(fs)
        if not _is_root(fs):
            continue
        mounts: list[tuple[str, BaseFS]] = [("/", fs)]
        blocked: dict[str, str] = {}
        try:
            text = fs.read("/etc/fstab", limit=_FSTAB_LIMIT).decode("utf-8", "replace")
        except OSError:
            text = ""
        for spec, mp, _type in parse(text):
            if mp == "/":
                continue
            match = find_piece(plan, spec)
            if match is None or match.location == cand.location:
                continue
            tree = CompositeFS(mounts, blocked)
            try:
                if not tree.stat(mp).is_dir:
                    continue
                canonical = tree.realpath(mp)
                if not readable_in_process(match.fstype):
                    blocked[canonical] = match.fstype
                    continue
                sub = _open_piece(disk, layout, match)
            except (OSError, HostError, ImageError):
                continue
            opened.append(sub)
            mounts.append((canonical, sub))
        return CompositeFS(mounts, blocked)
    if unreadable:
        raise HostError("the operating system root may be on a filesystem diskkit does not "
                        f"read in-process ({unreadable[0].fstype})", code="fs-unsupported")
    raise UserError("no operating system root found on this disk", code="no-os",
                    hint="choose a filesystem with --partition N or --lv VG/LV")


@contextlib.contextmanager
def open_guest(target: str, *, partition: int | None = None, lv: str | None = None,
               os_root: bool = False) -> Iterator[BaseFS]:
    """The selected filesystem (or the OS tree) read in-process; HostError
    ``fs-unsupported`` when that needs a filesystem no in-process reader handles."""
    from diskkit.backends.select import plan
    from diskkit.disk import open_disk
    from diskkit.layout import inspect_layout

    p = plan(target, partition=partition, lv=lv, os_root=os_root, backend="loop")
    if not p.os_root and not readable_in_process(p.pieces[0].fstype):
        raise HostError(f"{p.pieces[0].fstype} is not read in-process", code="fs-unsupported")
    opened: list[BaseFS] = []
    with open_disk(target) as disk:
        try:
            layout = inspect_layout(disk)
            if p.os_root:
                fs: BaseFS = _os_tree(disk, layout, p, opened)
            else:
                fs = _open_piece(disk, layout, p.pieces[0])
                opened.append(fs)
            yield fs
        finally:
            for x in opened:
                x.close()


@contextlib.contextmanager
def open_mounted(target: str, *, partition: int | None = None, lv: str | None = None,
                 os_root: bool = False, backend: str = "auto") -> Iterator[BaseFS]:
    """The selection through the mount path (kernel mount or the appliance)."""
    from diskkit import backends

    sel: dict[str, Any] = {"partition": partition, "lv": lv, "os_root": os_root,
                           "backend": backend}
    if backends._use_appliance(target, sel):
        from diskkit.guest.fs.appliance import ApplianceFS

        with backends._in_appliance(target, **sel) as g:
            yield ApplianceFS(g, name=target)
        return
    from diskkit.guest.fs.mounted import MountedFS

    with backends.mounted(target, **sel) as m:
        yield MountedFS(m.root)


@contextlib.contextmanager
def open_any(target: str, *, partition: int | None = None, lv: str | None = None,
             os_root: bool = False, backend: str = "auto") -> Iterator[BaseFS]:
    """In-process when ``backend`` is "auto" and the filesystems allow it, else mounted."""
    sel: dict[str, Any] = {"partition": partition, "lv": lv, "os_root": os_root}
    with contextlib.ExitStack() as stack:
        fs: BaseFS | None = None
        if backend == "auto":
            try:
                fs = stack.enter_context(open_guest(target, **sel))
            except HostError as exc:
                if exc.code != "fs-unsupported":
                    raise
        if fs is None:
            fs = stack.enter_context(open_mounted(target, backend=backend, **sel))
        yield fs


def _in_process(backend: str) -> bool:
    return backend == "auto"


def read_file(target: str, path: str, *, out: BinaryIO | None = None,
              partition: int | None = None, lv: str | None = None, os_root: bool = False,
              backend: str = "auto") -> bytes | None:
    """The bytes of guest file ``path`` (written to ``out`` in chunks if given). Same
    arguments and results as :func:`diskkit.backends.read_file`, which it falls back to."""
    sel: dict[str, Any] = {"partition": partition, "lv": lv, "os_root": os_root}
    if _in_process(backend):
        try:
            with open_guest(target, **sel) as fs:
                if out is None:
                    size = fs.stat(path).size
                    if size > MAX_IN_MEMORY:
                        raise UserError(f"{path}: {size} bytes is more than this reads into "
                                        f"memory ({MAX_IN_MEMORY})", code="too-big",
                                        hint="print it without --json")
                    return fs.read(path, limit=MAX_IN_MEMORY)
                for chunk in fs.iter_read(path):
                    out.write(chunk)
                return None
        except HostError as exc:
            if exc.code != "fs-unsupported":
                raise
    from diskkit import backends

    return backends.read_file(target, path, out=out, backend=backend, **sel)


def _kind_name(kind: str) -> str:
    return {"symlink": "link"}.get(kind, kind)


def list_dir(target: str, path: str, *, partition: int | None = None, lv: str | None = None,
             os_root: bool = False, backend: str = "auto") -> list[dict[str, Any]]:
    """Entries of guest directory ``path``: name, type ("file", "dir", "link", "other"),
    size; as :func:`diskkit.backends.list_dir`, which it falls back to."""
    sel: dict[str, Any] = {"partition": partition, "lv": lv, "os_root": os_root}
    if _in_process(backend):
        try:
            with open_guest(target, **sel) as fs:
                return [{"name": e.name, "type": _kind_name(e.kind), "size": e.size}
                        for e in fs.listdir(path)]
        except HostError as exc:
            if exc.code != "fs-unsupported":
                raise
    from diskkit import backends

    return backends.list_dir(target, path, backend=backend, **sel)


def _stat_dict(fs: BaseFS, path: str, s: FileStat) -> dict[str, Any]:
    return {"path": path, **s.to_dict(), "fstype": fs.fstype, "driver": fs.driver}


def _with_fs(target: str, sel: dict[str, Any], backend: str, fn: Any) -> Any:
    """``fn(fs)`` in-process when ``backend`` is "auto" and every filesystem it touches is
    readable that way, else through the mount path."""
    if backend == "auto":
        try:
            with open_guest(target, **sel) as fs:
                return fn(fs)
        except HostError as exc:
            if exc.code != "fs-unsupported":
                raise
    with open_mounted(target, backend=backend, **sel) as fs:
        return fn(fs)


def stat_path(target: str, path: str, *, follow: bool = True, partition: int | None = None,
              lv: str | None = None, os_root: bool = False,
              backend: str = "auto") -> dict[str, Any]:
    """Facts of guest ``path`` (``follow``: symlinks followed): kind, size, mode (octal
    text), uid, gid, mtime, link target, inode, the canonical path, the filesystem and
    driver."""
    def work(fs: BaseFS) -> dict[str, Any]:
        s = fs.stat(path) if follow else fs.lstat(path)
        out = _stat_dict(fs, path, s)
        out["realpath"] = fs.realpath(path) if follow else None
        if isinstance(fs, CompositeFS) and out["realpath"]:
            inner = fs.filesystem_at(out["realpath"])
            out["fstype"], out["driver"] = inner.fstype, inner.driver
        return out

    sel = {"partition": partition, "lv": lv, "os_root": os_root}
    result: dict[str, Any] = _with_fs(target, sel, backend, work)
    return result


def find_paths(target: str, top: str = "/", *, name: str | None = None,
               kind: str | None = None, max_depth: int = DEFAULT_WALK_DEPTH,
               max_results: int = 10_000, partition: int | None = None, lv: str | None = None,
               os_root: bool = False, backend: str = "auto") -> list[dict[str, Any]]:
    """Paths below ``top`` matching the glob ``name`` and ``kind`` ("file", "dir",
    "symlink", "other"), each with its lstat facts; at most ``max_results``."""
    def work(fs: BaseFS) -> list[dict[str, Any]]:
        return [_stat_dict(fs, p, s) for p, s in
                fs.find(top, name=name, kind=kind, max_depth=max_depth,
                        max_results=max_results)]

    sel = {"partition": partition, "lv": lv, "os_root": os_root}
    result: list[dict[str, Any]] = _with_fs(target, sel, backend, work)
    return result
