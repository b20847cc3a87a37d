"""Run INSIDE the throwaway VM (tests/fixtures/vm.py) as root, with a real kernel that has nbd
and device-mapper: exercise every privileged path of the backends through diskkit's own API,
then check that nothing is left, and write ``result.json`` to the shared directory.

Usage: python vm_script.py SHARED_DIR  (SHARED_DIR holds disk.raw, disk.qcow2, lvm-root.img)

Cases: qemu-nbd --connect of a qcow2 (partition node /dev/nbdNp1), loop + kpartx of a raw
disk, LVM activation of an image whose VG ("ubuntu-vg") clashes with a VG already active in
the VM (by loop + kpartx, and by nbd with --os), and a lasting mount + umount over nbd.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from diskkit.backends import mount, mounted, umount
from diskkit.runner import run

SHARED = sys.argv[1]
RESULT: dict = {"cases": {}, "setup": {}, "after": {}}
STARTED = time.monotonic()
CLASH_CONF = ('devices { filter=["a|^/dev/loop|","r|.*|"] use_devicesfile=0 '
              "obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 } "
              "backup { backup=0 archive=0 }")


def read(root: str, path: str) -> str:
    with open(os.path.join(root, path.lstrip("/")), errors="replace") as f:
        return f.read()


def options(root: str) -> dict:
    """Mount options (mountinfo field 6) of every mount at or under ``root``."""
    with open("/proc/self/mountinfo") as f:
        rows = [ln.split() for ln in f]
    return {r[4]: r[5] for r in rows if r[4] == root or r[4].startswith(root.rstrip("/") + "/")}


def case(name: str):
    def wrap(fn):
        entry: dict = {"ok": False}
        RESULT["cases"][name] = entry
        started = time.monotonic()
        try:
            entry.update(fn() or {})
            entry["ok"] = True
            entry["seconds"] = round(time.monotonic() - started, 1)
        except BaseException as exc:  # recorded for the test to report
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc()[-3000:]
        return fn
    return wrap


def state() -> dict:
    """What is attached now: nbd connections, dm nodes, loop devices, mounts of SHARED."""
    nbd = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob("/sys/block/nbd*/pid"))
    dm = run(["dmsetup", "ls"], check=False).stdout.split()
    loops = run(["losetup", "-a"], check=False).stdout.strip().splitlines()
    with open("/proc/self/mountinfo") as f:
        mounts = [ln.split()[4] for ln in f if "/diskkit" in ln.split()[4]
                  or ln.split()[4].startswith(SHARED + "/")]
    return {"nbd": nbd, "dm": sorted(x for x in dm[::2] if x != "No"), "loops": loops,
            "mounts": mounts}


raw = os.path.join(SHARED, "disk.raw")
qcow2 = os.path.join(SHARED, "disk.qcow2")
lvm_img = os.path.join(SHARED, "lvm-root.img")
RESULT["setup"]["modprobe_loop"] = run(["modprobe", "loop"], check=False).returncode
RESULT["setup"]["modprobe_nbd"] = run(["modprobe", "nbd", "max_part=16"], check=False).returncode
RESULT["setup"]["modprobe_dm"] = run(["modprobe", "dm-mod"], check=False).returncode

# A VG named like the image's, active in the VM before diskkit runs ("the host's" VG).
clash = os.path.join(SHARED, "clash.img")
run(["truncate", "-s", "64M", clash])
clash_loop = run(["losetup", "-f", "--show", clash]).stdout.strip()
for argv in (["pvcreate", "-q", clash_loop], ["vgcreate", "-q", "ubuntu-vg", clash_loop],
             ["lvcreate", "-q", "-L", "8M", "-n", "root", "-Zn", "ubuntu-vg"]):
    run(["lvm", argv[0], "--config", CLASH_CONF, *argv[1:]], timeout=120)
run(["dmsetup", "mknodes"], check=False)
RESULT["setup"]["clash_active"] = os.path.exists("/dev/mapper/ubuntu--vg-root")
RESULT["setup"]["state"] = state()
RESULT["setup"]["seconds"] = round(time.monotonic() - STARTED, 1)


@case("nbd-qcow2")
def _nbd() -> dict:
    with mounted(qcow2, partition=1, backend="nbd") as m:
        dev = m.mounts[0]["device"]
        pid_file = f"/sys/block/{os.path.basename(dev)[:-2]}/pid"
        return {"device": dev, "backend": m.backend, "connected": os.path.exists(pid_file),
                "hostname": read(m.root, "/etc/hostname"), "state": state(),
                "options": options(m.root)}


@case("kpartx-raw")
def _kpartx() -> dict:
    with mounted(raw, partition=2, backend="loop") as m:
        return {"device": m.mounts[0]["device"], "hello": read(m.root, "/hello.txt"),
                "kpartx": run(["dmsetup", "ls"]).stdout, "state": state(),
                "options": options(m.root)}


@case("lvm-clash-kpartx")
def _lvm_loop() -> dict:
    with mounted(lvm_img, lv="ubuntu-vg/root", backend="loop") as m:
        return {"device": m.mounts[0]["device"], "fstab": read(m.root, "/etc/fstab"),
                "clash_still_active": os.path.exists("/dev/mapper/ubuntu--vg-root"),
                "state": state(), "options": options(m.root)}


@case("lvm-clash-nbd-os")
def _lvm_nbd() -> dict:
    with mounted(lvm_img, os_root=True, backend="nbd") as m:
        return {"mounts": m.mounts, "fstab": read(m.root, "/etc/fstab"),
                "boot": sorted(os.listdir(os.path.join(m.root, "boot"))), "state": state(),
                "options": options(m.root)}


@case("mount-umount")
def _mount_umount() -> dict:
    """The persistent mount of `diskkit mount` and the state-file undo of `diskkit umount`
    (their Python API: the CLI's own imports take minutes under TCG)."""
    mnt = os.path.join(SHARED, "mnt")
    os.makedirs(mnt, exist_ok=True)
    out = mount(qcow2, mnt, partition=1, backend="nbd").to_dict()
    hostname = read(mnt, "/etc/hostname")
    during = state()
    umount(mnt)
    return {"mount": out, "hostname": hostname, "state": state(), "during": during}


@case("backend-contract-nbd")
def _contract_nbd() -> dict:
    """The Backend protocol's contract (tests/contract/test_backends.py) for NbdBackend."""
    from diskkit.backends.base import Location, MountSpec, Teardown
    from diskkit.backends.kinds import get_backend
    from diskkit.backends.state import RunState

    root = os.path.join(SHARED, "contract-root")
    os.makedirs(root, exist_ok=True)
    backend = get_backend("nbd")
    missing = [r.name for r in backend.requirements() if not r.ok]
    out: dict = {"missing": missing}
    with Teardown(RunState.create(target=qcow2, kind="api")) as td:
        att = backend.attach(td, qcow2, "qcow2")
        made = backend.mount(att, [MountSpec(Location.partition(1), "ext4", "/"),
                                   MountSpec(Location.partition(2), "ext4", "/srv")], root)
        out["locations"] = [m["location"] for m in made]
        out["hostname"] = read(root, "/etc/hostname")
        out["hello"] = read(root, "/srv/hello.txt")
        try:
            with open(os.path.join(root, "srv", "new.txt"), "w") as f:
                f.write("x")
            out["write_errno"] = None
        except OSError as exc:
            out["write_errno"] = exc.errno
        out["during"] = state()
        backend.detach(att)
        out["steps_left"] = len(td.run.steps) - att.first_step
        out["root_entries"] = os.listdir(root)
    out["after"] = state()
    return out


RESULT["after"]["state"] = state()
RESULT["after"]["clash_active"] = os.path.exists("/dev/mapper/ubuntu--vg-root")
run(["lvm", "vgchange", "--config", CLASH_CONF, "-an", "ubuntu-vg"], check=False)
run(["losetup", "-d", clash_loop], check=False)
os.unlink(clash)
with open(os.path.join(SHARED, "result.json"), "w") as f:
    json.dump(RESULT, f, indent=1)
subprocess.run(["sync"], check=False, timeout=60)
