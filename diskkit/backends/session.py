"""Carrying out a :class:`~diskkit.backends.select.Plan`: attach, mount, and the result.

:func:`mount_plan` does the steps into a :class:`~diskkit.backends.base.Teardown`; the public
entry points in :mod:`diskkit.backends` wrap it in a ``with`` block (Python API), keep it
(``diskkit mount``) or undo it (``umount``, ``cleanup``).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from diskkit import guestpath
from diskkit.backends import fuse, guestfs, loop, lvm, mounts, nbd
from diskkit.backends.base import Teardown, pause_at
from diskkit.backends.select import Piece, Plan, find_piece
from diskkit.errors import HostError, UserError

log = logging.getLogger("diskkit.backends")


@dataclass
class Mounted:
    """What a mount made: the root path, the backend, and each filesystem mounted."""

    root: str
    backend: str
    run_id: str
    mounts: list[dict[str, Any]] = field(default_factory=list)
    #: fstab entries not mounted (--os), with the reason.
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, ``mount --json``)."""
        return {"root": self.root, "backend": self.backend, "run": self.run_id,
                "mounts": self.mounts, "skipped": self.skipped}


class _Kernel:
    """Block devices for the pieces of a plan, made on demand (loop/kpartx/nbd/dm)."""

    def __init__(self, td: Teardown, plan: Plan) -> None:
        self.td, self.plan = td, plan
        self.devices: dict[str, str] = {}
        self._kpartx: dict[int, str] | None = None
        pause_at("before-attach")
        if plan.remote is not None:
            self.source = fuse.export_remote(td, plan.remote)
        elif plan.backend == "nbd":
            self.source = nbd.connect(td, plan.image, plan.fmt)
        elif plan.fmt != "raw":
            self.source = fuse.export(td, plan.image, plan.fmt)
        else:
            self.source = plan.image
        self.is_block = stat.S_ISBLK(os.stat(self.source).st_mode)

    def _whole(self) -> str:
        if "disk" not in self.devices:
            self.devices["disk"] = self.source if self.is_block else \
                loop.attach(self.td, self.source)
        return self.devices["disk"]

    def device(self, location: str) -> str:
        """The block device of "disk", "partition N" or "lv VG/LV"."""
        if location in self.devices:
            return self.devices[location]
        if location == "disk":
            return self._whole()
        if location.startswith("partition "):
            number = int(location.split()[1])
            dev = self._partition(number)
        elif location.startswith("lv "):
            vg, name = location[3:].split("/", 1)
            pv_devs = [self.device(loc) for loc in self.plan.pvs.get(vg, [])]
            dev = lvm.activate(self.td, pv_devs, vg, name).device
        else:
            raise UserError(f"cannot attach {location}", code="bad-location")
        self.devices[location] = dev
        return dev

    def _partition(self, number: int) -> str:
        if self.plan.backend == "nbd" and _wait_node(f"{self.source}p{number}"):
            return f"{self.source}p{number}"  # nbd with max_part: the kernel's own node
        if nbd.kpartx_available():
            if self._kpartx is None:
                self._kpartx = nbd.kpartx_map(self.td, self._whole())
            if number in self._kpartx:
                return self._kpartx[number]
        if number not in self.plan.partitions:
            raise UserError(f"partition {number} does not exist", code="no-such-partition")
        start, size = self.plan.partitions[number]
        return loop.attach(self.td, self.source, start, size)


def _wait_node(path: str, timeout: float = 5.0) -> bool:
    """Wait for the kernel's partition scan of a fresh nbd device to make ``path``."""
    import time

    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def mount_plan(td: Teardown, plan: Plan, root: str) -> Mounted:
    """Attach and mount ``plan`` at ``root`` (read-only); every step recorded in ``td``."""
    mounts.make_dir(td, root)
    if mounts.mounted_at(root) or (os.path.isdir(root) and os.listdir(root)):
        raise UserError(f"{root} is not an empty directory", code="mountpoint-busy")
    result = Mounted(os.path.abspath(root), plan.backend, td.run.id)
    td.run.info.update(mountpoint=result.root, backend=plan.backend, image=plan.image)
    td.run.save()
    if plan.backend == "guestfs":
        if plan.os_root:
            with guestfs.open_appliance(plan.image, plan.fmt) as g:
                pairs = guestfs.os_pairs(g, plan)
        else:
            pairs = [(guestfs.appliance_device(p.location), p.mountpoint) for p in plan.pieces]
        guestfs.guestmount(td, plan.image, plan.fmt, root, pairs)
        where = {guestfs.appliance_device(c.location): c for c in plan.candidates}
        for dev, mp in pairs:
            c = where.get(dev)
            result.mounts.append({"location": c.location if c else dev,
                                  "fstype": c.fstype if c else None, "device": None,
                                  "path": os.path.join(result.root, mp.lstrip("/")).rstrip("/"),
                                  "mountpoint": mp})
        return result
    k = _Kernel(td, plan)
    pieces = plan.pieces if not plan.os_root else _os_pieces(k, plan, root, result)
    for p in pieces:
        if plan.os_root and p.mountpoint == "/":
            continue  # mounted while looking for the root
        _mount_piece(k, p, root, result)
    return result


def _mount_piece(k: _Kernel, p: Piece, root: str, result: Mounted) -> None:
    dev = k.device(p.location)
    path = root if p.mountpoint == "/" else mounts.resolve_in_root(root, p.mountpoint)
    mounts.mount(k.td, dev, path, p.fstype)
    result.mounts.append({"location": p.location, "fstype": p.fstype, "device": dev,
                          "path": path, "mountpoint": p.mountpoint})


def _os_pieces(k: _Kernel, plan: Plan, root: str, result: Mounted) -> list[Piece]:
    """Find the OS root among the candidates (mounting each until one has /etc/fstab or
    /etc/os-release), then the fstab entries below it that are on this disk."""
    from diskkit.backends.fstab import entries

    for cand in sorted(plan.candidates, key=lambda c: (not c.location.startswith("lv "),
                                                        c.location)):
        if not mounts.kernel_supports(cand.fstype):
            continue
        try:
            _mount_piece(k, cand, root, result)
        except HostError:
            continue
        # Guest paths resolved inside the guest root, never on the host (diskkit.guestpath).
        if guestpath.is_file(root, "/etc/fstab") or \
                guestpath.kind(root, "/etc/os-release") is not None:
            out = [cand]
            for spec, mp, _fstype in entries(root, "/etc/fstab"):
                if mp == "/":
                    continue
                match = find_piece(plan, spec)
                if match is None:
                    result.skipped.append({"spec": spec, "mountpoint": mp,
                                           "reason": "not on this disk"})
                elif not mounts.kernel_supports(match.fstype):
                    result.skipped.append({"spec": spec, "mountpoint": mp,
                                           "reason": f"this kernel cannot mount {match.fstype}"})
                elif not guestpath.is_dir(root, mp):
                    result.skipped.append({"spec": spec, "mountpoint": mp,
                                           "reason": "no such directory in the root"})
                else:
                    out.append(Piece(match.location, match.fstype, mp, match.offset,
                                     match.size, match.uuid, match.label))
            return out
        # Not a root: undo that mount and try the next candidate.
        from diskkit.backends.base import undo_step

        step = k.td.run.steps.pop()
        undo_step(step)
        k.td.run.save()
        result.mounts.pop()
    raise UserError("no operating system root found on this disk", code="no-os",
                    hint="mount a partition with --partition N, or try --backend guestfs")
