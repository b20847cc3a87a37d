"""init and fstab, then login: every /etc/fstab entry without ``nofail`` (or ``noauto``)
must resolve on this disk, or systemd waits 90 s for the device and starts emergency mode
(``local-fs.target`` fails). The ``/`` entry is exempt (the root is already mounted by the
initramfs; systemd only remounts it), as are swap (``swap.target`` failing does not stop the
boot), network and virtual filesystems."""

from __future__ import annotations

from typing import Any

from diskkit.diagnose import guestfixes
from diskkit.diagnose.rootdev import BUS_PREFIX
from diskkit.diagnose.stages import FAILS, OK, Stage, sources
from diskkit.findings import Finding, Severity

_NETWORK = ("_netdev", "x-systemd.automount")


def _blocks(e: Any, bus: str) -> str | None:
    """Why fstab entry ``e`` stops the boot on ``bus`` (None: it does not)."""
    if e.mountpoint == "/" or e.nofail or e.kind == "virtual" or e.fstype == "swap" or \
            e.mountpoint in ("none", "swap") or any(o in e.options for o in _NETWORK):
        return None
    if e.kind == "devname" and e.location is not None and e.spec.startswith("/dev/") and \
            e.spec[5:7] != BUS_PREFIX[bus] and not e.spec.startswith("/dev/nvme"):
        return f"{e.spec} does not exist on a {bus} disk (it is /dev/{BUS_PREFIX[bus]}a)"
    if e.location is None and e.kind in ("by-id", "by-path"):
        return None  # hypervisor-made names: not judged from the bytes
    if e.location is None:
        return e.note or f"{e.spec} does not resolve on this disk"
    return None


def init(root: Any, bus: str, image: str) -> Stage:
    """The ``init`` stage (systemd mounts fstab)."""
    bad = [(e, why) for e in root.fstab if (why := _blocks(e, bus))]
    ev = sources(*(e.source for e in root.fstab))
    if bad:
        e, why = bad[0]
        return Stage("init", FAILS, f"/etc/fstab mounts {e.mountpoint} from {e.spec} without "
                     f"nofail, and {why}: systemd times out on the device (90 s) and starts "
                     "emergency mode", ev, tuple(Finding(
                         "fstab-device-missing", Severity.CRITICAL,
                         f"fstab line {x.source.line}: {x.mountpoint} from {x.spec} ({w}) "
                         "has no nofail: 'Dependency failed for Local File Systems', "
                         "'You are in emergency mode'", (),
                         guestfixes.fstab_nofail(x, image),
                         {"line": x.source.line, "spec": x.spec,
                          "mountpoint": x.mountpoint}) for x, w in bad), "emergency-mode")
    return Stage("init", OK, f"every /etc/fstab entry that must mount resolves on this disk "
                 f"({len(root.fstab)} entries)", ev)


def login(root: Any) -> Stage:
    """Login: a getty on the VGA console always, on the serial console when console=ttyS*."""
    where = f"VGA and {root.serial_console}" if root.serial_console else \
        "VGA (no console=ttyS* on the command line: nothing on the serial console)"
    return Stage("login", OK, f"login prompt on {where}")
