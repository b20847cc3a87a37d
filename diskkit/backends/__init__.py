"""Attach and mount images read-only, with guaranteed teardown (the only kernel-touching code).

Python API::

    with mounted("disk.qcow2", partition=1) as m:       # or lv="vg/root", os_root=True
        # guest paths resolved inside the guest (never open(m.root + path): see guestpath)
        print(guestpath.read_file(m.root, "/etc/fstab"))  # backend="auto"|"loop"|"nbd"|...

    m = mount("disk.qcow2", "/mnt/x", os_root=True)      # outlives the process (run directory)
    umount("/mnt/x")
    cleanup()                                            # leftovers of crashed runs

    read_file("disk.img", "/etc/hostname", partition=1)  # bytes; symlinks resolved in the guest
    list_dir("disk.img", "/etc", partition=1)            # [{"name", "type", "size"}]

Backends: :mod:`.loop` (loop devices with offsets, kpartx), :mod:`.fuse` (qemu-storage-daemon
FUSE export), :mod:`.nbd` (qemu-nbd --connect), :mod:`.lvm` (private LVM config + dm maps),
:mod:`.guestfs` (libguestfs appliance); :mod:`.select` chooses, :mod:`.state` remembers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from typing import Any

from diskkit.backends.base import Teardown, undo_all
from diskkit.backends.select import plan
from diskkit.backends.session import Mounted, mount_plan
from diskkit.backends.state import RunState, all_runs, find_by_mountpoint
from diskkit.errors import DiskkitError, UserError

__all__ = ["Mounted", "cleanup", "list_dir", "mount", "mounted", "read_file", "umount"]


@contextlib.contextmanager
def mounted(target: str, root: str | None = None, *, partition: int | None = None,
            lv: str | None = None, os_root: bool = False,
            backend: str = "auto") -> Iterator[Mounted]:
    """Mount ``target`` read-only for the ``with`` block (at ``root``, or a private directory
    in the run directory); everything is torn down, in reverse, on every exit path."""
    p = plan(target, partition=partition, lv=lv, os_root=os_root, backend=backend)
    run = RunState.create(target=target, kind="api")
    with Teardown(run) as td:
        yield mount_plan(td, p, root or str(run.dir / "root"))


def mount(target: str, root: str, *, partition: int | None = None, lv: str | None = None,
          os_root: bool = False, backend: str = "auto") -> Mounted:
    """Mount ``target`` at ``root`` and leave it mounted (``umount(root)`` undoes it)."""
    if not os.path.isdir(root):
        raise UserError(f"{root}: no such directory", code="not-found")
    p = plan(target, partition=partition, lv=lv, os_root=os_root, backend=backend)
    run = RunState.create(target=target, kind="mount")
    with Teardown(run) as td:
        result = mount_plan(td, p, root)
        td.keep()
    return result


def umount(root: str) -> str:
    """Undo, in reverse, everything the mount at ``root`` made; returns the run id."""
    run = find_by_mountpoint(root)
    undo_all(run)
    return run.id


def cleanup(everything: bool = False) -> list[dict[str, Any]]:
    """Undo the runs left behind: those whose process died before finishing, and finished
    mounts whose filesystem is no longer mounted (``everything``: every run). Returns what was
    cleaned (id, mountpoint, steps undone; ``error`` for a run that could not be undone)."""
    from diskkit.backends.mounts import mounted_at

    cleaned: list[dict[str, Any]] = []
    for run in all_runs():
        complete = run.info.get("complete")
        mp = run.info.get("mountpoint")
        stale = (not complete and not run.owner_alive()) or \
                (complete and (not mp or not mounted_at(mp)))
        if not (everything or stale):
            continue
        steps = [s["kind"] for s in run.steps]
        try:
            undo_all(run)
        except DiskkitError as exc:  # go on with the other runs; say what failed
            cleaned.append({"run": run.id, "mountpoint": mp, "undone": [],
                            "error": f"{exc.code}: {exc.message}"})
            continue
        cleaned.append({"run": run.id, "mountpoint": mp, "undone": list(reversed(steps))})
    # Servers (qemu-nbd...) a crashed diskkit left, and their private directories.
    from diskkit.runner import reap_servers

    for srv in reap_servers():
        undone = ([f"killed {srv['program']} (pid {srv['pid']})"] if srv["killed"] else []) + \
            [f"removed {d}" for d in srv["removed"]]
        what = f"server {srv['pid']}" if srv["pid"] else "orphan directory"
        cleaned.append({"run": what, "mountpoint": None, "undone": undone})
    return cleaned


def list_runs() -> list[dict[str, Any]]:
    """Every run directory: id, mountpoint, target, complete, owner alive, steps."""
    return [{"run": r.id, "mountpoint": r.info.get("mountpoint"), "target": r.info.get("target"),
             "complete": bool(r.info.get("complete")), "owner_alive": r.owner_alive(),
             "steps": [s["kind"] for s in r.steps]} for r in all_runs()]


@contextlib.contextmanager
def _in_appliance(target: str, **sel: Any) -> Iterator[Any]:
    from diskkit.backends import guestfs

    p = plan(target, **sel)
    with guestfs.open_appliance(p.image, p.fmt) as g:
        if p.os_root:
            pairs = guestfs.os_pairs(g, p)
        else:
            pairs = [(guestfs.appliance_device(x.location), x.mountpoint) for x in p.pieces]
        guestfs.mount_in_appliance(g, pairs)
        yield g


def _use_appliance(target: str, sel: dict[str, Any]) -> bool:
    """True when ``cat``/``ls`` go through the libguestfs appliance: asked for, or chosen by
    the automatic plan (``sel["backend"]`` is then set to "guestfs")."""
    if sel.get("backend", "auto") == "auto" and plan(target, **sel).backend == "guestfs":
        sel["backend"] = "guestfs"
    return sel.get("backend") == "guestfs"


def read_file(target: str, path: str, *, out: Any = None, **sel: Any) -> bytes | None:
    """The bytes of guest file ``path`` (written to the binary stream ``out`` if given)."""
    if _use_appliance(target, sel):
        with _in_appliance(target, **sel) as g:
            if not g.is_file(path, followsymlinks=True):
                raise UserError(f"{path}: no such file in the image", code="not-found")
            run = RunState.create(target=target, kind="cat")
            try:
                tmp = str(run.dir / "file")
                g.download(path, tmp)
                return _emit(tmp, out)
            finally:
                run.remove_dir()
    with mounted(target, **sel) as m:
        from diskkit import guestpath

        # Resolved inside the guest root; a regular file only (never a FIFO or a device).
        try:
            fd = guestpath.open_file(m.root, path)
        except UserError as exc:
            if exc.code == "not-a-regular-file":
                raise UserError(f"{path}: no such file in the image", code="not-found") \
                    from None
            raise
        return _emit(fd, out)


def _emit(host: str | int, out: Any) -> bytes | None:
    with open(host, "rb") as f:
        if out is None:
            return f.read()
        shutil.copyfileobj(f, out)
    return None


def list_dir(target: str, path: str, **sel: Any) -> list[dict[str, Any]]:
    """Entries of guest directory ``path``: name, type ("file", "dir", "link"...), size."""
    if _use_appliance(target, sel):
        with _in_appliance(target, **sel) as g:
            if not g.is_dir(path, followsymlinks=True):
                raise UserError(f"{path}: no such directory in the image", code="not-found")
            names = sorted(g.ls(path))
            stats = g.lstatnslist(path, names) if names else []
            return [{"name": n, "type": _kind(s["st_mode"]), "size": s["st_size"]}
                    for n, s in zip(names, stats, strict=True)]
    with mounted(target, **sel) as m:
        from diskkit.backends.mounts import resolve_in_root

        host = resolve_in_root(m.root, path)
        if not os.path.isdir(host):
            raise UserError(f"{path}: no such directory in the image", code="not-found")
        out = []
        for name in sorted(os.listdir(host)):
            st = os.lstat(os.path.join(host, name))
            out.append({"name": name, "type": _kind(st.st_mode), "size": st.st_size})
        return out


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "link"),
                       (stat.S_ISBLK, "block"), (stat.S_ISCHR, "char"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "other"
