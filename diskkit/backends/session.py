"""Carrying out a :class:`~diskkit.backends.select.Plan`: attach, mount, and the result.

:func:`mount_plan` does the steps into a :class:`~diskkit.backends.base.Teardown`; the public
entry points in :mod:`diskkit.backends` wrap it in a ``with`` block (Python API), keep it
(``diskkit mount``) or undo it (``umount``, ``cleanup``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from diskkit import guestpath
from diskkit.backends import guestfs, mounts
from diskkit.backends.base import Attachment, Location, MountSpec, Teardown
from diskkit.backends.kinds import GuestfsBackend, KernelBackend, get_backend
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

    def to_json(self) -> Any:
        """Exactly what the command prints with --json (:func:`diskkit.jsonable.jsonable`)."""
        from diskkit.jsonable import jsonable

        return jsonable(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, ``mount --json``)."""
        return {"root": self.root, "backend": self.backend, "run": self.run_id,
                "mounts": self.mounts, "skipped": self.skipped}


def backend_for(plan: Plan) -> KernelBackend | GuestfsBackend:
    """The :class:`~diskkit.backends.base.Backend` that carries out ``plan``: the plan's
    ``loop`` is ``fuse`` for anything but a local raw file."""
    if plan.backend == "loop" and (plan.remote is not None or plan.fmt != "raw"):
        return get_backend("fuse", plan.remote)
    return get_backend(plan.backend)


def mount_plan(td: Teardown, plan: Plan, root: str) -> Mounted:
    """Attach and mount ``plan`` at ``root`` (read-only); every step recorded in ``td``."""
    mounts.make_dir(td, root)
    if mounts.mounted_at(root) or (os.path.isdir(root) and os.listdir(root)):
        raise UserError(f"{root} is not an empty directory", code="mountpoint-busy")
    result = Mounted(os.path.abspath(root), plan.backend, td.run.id)
    td.run.info.update(mountpoint=result.root, backend=plan.backend, image=plan.image)
    td.run.save()
    be = backend_for(plan)
    if isinstance(be, GuestfsBackend):
        if plan.os_root:  # the OS tree is found inside the appliance, then mounted by device
            with guestfs.open_appliance(plan.image, plan.fmt) as g:
                pairs = guestfs.os_pairs(g, plan)
            where = {guestfs.appliance_device(c.location): c for c in plan.candidates}
            specs = [MountSpec(where[dev].where, where[dev].fstype, mp) for dev, mp in pairs]
        else:
            specs = [MountSpec(p.where, p.fstype, p.mountpoint) for p in plan.pieces]
        att = be.attach(td, plan.image, plan.fmt)
        result.mounts.extend(be.mount(att, specs, result.root))
        return result
    assert isinstance(be, KernelBackend)
    att = be.attach(td, plan.image, plan.fmt, partitions=plan.partitions,
                    pvs={vg: [Location.parse(x) for x in locs] for vg, locs in plan.pvs.items()})
    pieces = plan.pieces if not plan.os_root else _os_pieces(be, att, plan, root, result)
    for p in pieces:
        if plan.os_root and p.mountpoint == "/":
            continue  # mounted while looking for the root
        result.mounts.append(be.mount_one(att, MountSpec(p.where, p.fstype, p.mountpoint),
                                          root))
    return result


def _os_pieces(be: KernelBackend, att: Attachment, plan: Plan, root: str,
               result: Mounted) -> list[Piece]:
    """Find the OS root among the candidates (mounting each until one has /etc/fstab or
    /etc/os-release), then the fstab entries below it that are on this disk."""
    from diskkit.backends.fstab import entries

    for cand in sorted(plan.candidates, key=lambda c: (c.where.kind != "lv",
                                                        c.location)):
        if not mounts.kernel_supports(cand.fstype):
            continue
        try:
            result.mounts.append(be.mount_one(att, MountSpec(cand.where, cand.fstype), root))
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

        step = att.td.run.steps.pop()
        undo_step(step)
        att.td.run.save()
        result.mounts.pop()
    raise UserError("no operating system root found on this disk", code="no-os",
                    hint="mount a partition with --partition N, or try --backend guestfs")
