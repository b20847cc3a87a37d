"""LVM volumes on our own devices, activated without touching the host's volume groups.

The LVM tools read the metadata with a *private* configuration (``LVM_SYSTEM_DIR`` pointing at a
generated ``lvm.conf`` in the run directory, whose device filter accepts only our devices, plus
``--devices`` and ``--readonly``), so host VGs are neither scanned nor locked and nothing is
written to the image. The logical volumes are then mapped with ``dmsetup create --readonly`` under
names of our own (``dk<run>-<vg>-<lv>``): a guest VG called like one the host has active (both
"ubuntu-vg") cannot clash with it, and two such images can be mounted at once. A plain
``vgchange -ay`` would create ``/dev/mapper/<vg>-<lv>`` and collide (and ``vgimportclone`` would
write to the image). Linear LVs are supported (what installers create); others -> guestfs.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from diskkit.backends.base import Teardown, undoer
from diskkit.errors import CommandError, HostError, ImageError, UserError
from diskkit.runner import run, which

SECTOR = 512


_DM_OK: list[bool] = []


def dm_available() -> bool:
    """True when the kernel has device-mapper (loading dm-mod if needed; a yes is cached)."""
    if _DM_OK:
        return True
    if os.path.exists("/dev/mapper/control") and _dm_version_ok():
        _DM_OK.append(True)
        return True
    if which("modprobe"):
        run(["modprobe", "-q", "dm-mod"], timeout=30, check=False)
    return os.path.exists("/dev/mapper/control") and _dm_version_ok()


def _dm_version_ok() -> bool:
    if not which("dmsetup"):
        return False
    return run(["dmsetup", "version"], timeout=30, check=False).returncode == 0


def _private_conf(td: Teardown, devices: list[str]) -> dict[str, str]:
    """Write the run's lvm.conf (filter: our devices only) and return the env that uses it."""
    conf_dir = td.run.dir / "lvm"
    conf_dir.mkdir(exist_ok=True)
    accept = ", ".join(f'"a|^{re.escape(d)}$|"' for d in devices)
    (conf_dir / "lvm.conf").write_text(
        "devices {\n"
        f"  filter = [ {accept}, \"r|.*|\" ]\n"
        f"  global_filter = [ {accept}, \"r|.*|\" ]\n"
        "  use_devicesfile = 0\n"
        "  obtain_device_list_from_udev = 0\n"
        "}\n"
        "global { use_lvmpolld = 0 }\n"
        "activation { udev_sync = 0\n udev_rules = 0\n monitoring = 0 }\n"
        "backup { backup = 0\n archive = 0 }\n"
    )
    return {"LVM_SYSTEM_DIR": str(conf_dir), "LVM_SUPPRESS_FD_WARNINGS": "1"}


def _report(td: Teardown, devices: list[str], command: str, fields: str,
            extra: tuple[str, ...] = ()) -> list[dict[str, str]]:
    env = _private_conf(td, devices)
    argv = [command, "--readonly", "--devices", ",".join(devices), "--reportformat", "json",
            "--units", "b", "--nosuffix", "-o", fields, *extra]
    try:
        out = run(argv, timeout=60, env=env).stdout
    except CommandError as exc:
        raise ImageError(f"LVM cannot read the metadata: {exc.message}",
                         code="lvm-unreadable") from None
    try:
        report = json.loads(out)["report"][0]
    except (ValueError, KeyError, IndexError):
        raise ImageError("LVM gave a report diskkit cannot read", code="lvm-unreadable") from None
    key = "pv" if command == "pvs" else "seg"
    return list(report.get(key, []))


@dataclass(frozen=True)
class LogicalVolume:
    """An LV mapped by us: ``device`` is its /dev/mapper node."""

    vg: str
    name: str
    device: str


def list_lvs(td: Teardown, devices: list[str]) -> list[tuple[str, str]]:
    """(vg, lv) of every logical volume on ``devices``."""
    segs = _report(td, devices, "lvs", "vg_name,lv_name", ("--segments",))
    return sorted({(s["vg_name"], s["lv_name"]) for s in segs})


def activate(td: Teardown, devices: list[str], vg: str, lv: str) -> LogicalVolume:
    """Map LV ``vg/lv`` found on ``devices`` read-only under a name of our own."""
    if not dm_available():
        raise HostError("this host's kernel has no device-mapper: LVM volumes cannot be mapped",
                        code="module-missing",
                        hint="modprobe dm-mod, or use --backend guestfs (LVM in the appliance)")
    pvs = {p["pv_name"]: p for p in _report(td, devices, "pvs",
                                            "pv_name,vg_name,pe_start,vg_extent_size")}
    segs = [s for s in _report(td, devices, "lvs",
                               "vg_name,lv_name,segtype,seg_start,seg_size,seg_pe_ranges",
                               ("--segments",))
            if s["vg_name"] == vg and s["lv_name"] == lv]
    if not segs:
        raise UserError(f"no logical volume {vg}/{lv} in this image", code="no-such-lv",
                        hint="list them with: diskkit ls TARGET / --os, or diskkit inspect")
    table = []
    for s in sorted(segs, key=lambda s: int(s["seg_start"])):
        ranges = s["seg_pe_ranges"].split()
        if s["segtype"] != "linear" or len(ranges) != 1:
            raise HostError(f"{vg}/{lv} is a {s['segtype']} volume; diskkit maps linear ones",
                            code="lvm-unsupported", hint="use --backend guestfs")
        pv, _, pe = ranges[0].rpartition(":")
        first_pe = int(pe.split("-")[0])
        info = pvs.get(pv)
        if info is None:
            raise ImageError(f"{vg}/{lv} uses a PV that is not in this image",
                             code="lvm-missing-pv")
        offset = int(info["pe_start"]) + first_pe * int(info["vg_extent_size"])
        table.append(f"{int(s['seg_start']) // SECTOR} {int(s['seg_size']) // SECTOR} "
                     f"linear {pv} {offset // SECTOR}")
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"dk{td.run.id[-6:]}-{vg}-{lv}")
    data = td.step("dm", name=name)
    try:
        run(["dmsetup", "create", name, "--readonly", "--noudevsync"],
            input="\n".join(table) + "\n", timeout=60)
        run(["dmsetup", "mknodes", name], timeout=30, check=False)
    except CommandError as exc:
        raise HostError(f"cannot map {vg}/{lv}: {exc.message}", code="dm-failed") from None
    td.done(data, vg=vg, lv=lv)
    return LogicalVolume(vg, lv, f"/dev/mapper/{name}")


@undoer("dm")
def _undo(data: dict[str, Any]) -> None:
    name = data["name"]
    if not which("dmsetup"):
        return
    if run(["dmsetup", "info", name], timeout=30, check=False).returncode != 0:
        return  # not there (never made, or already removed)
    res = run(["dmsetup", "remove", "--retry", "--noudevsync", name], timeout=60, check=False)
    if res.returncode != 0:
        raise HostError(f"cannot remove the device-mapper node {name}: {res.stderr.strip()}",
                        code="teardown-failed", hint="is it still mounted?")
