"""libguestfs: the guest's filesystems through a small appliance VM, for what the host kernel
cannot do (vfat/iso9660 without kernel modules, LVM without device-mapper, any qemu format).

Two ways in:
- :func:`open_appliance`: a launched, read-only ``guestfs.GuestFS`` handle (``cat``, ``ls``,
  inspection, LVM inside the appliance), for reading files without any host mount;
- :func:`guestmount`: the guest's filesystems at a host path, FUSE-mounted by libguestfs'
  ``mount_local`` through the ``guestmount`` program, which runs as its own process so a CLI
  mount can outlive the command and a crash of ours leaves nothing unrecorded.

The launch has a deadline: with KVM unusable (Linux guests hang under KVM on some hosts) it
would hang for minutes. TCG is used when ``LIBGUESTFS_BACKEND_SETTINGS`` asks for it,
``DISKKIT_GUESTFS_TCG=1`` is set, or the doctor's probe found KVM unusable.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from diskkit.backends.base import Location, Teardown, undoer
from diskkit.backends.mounts import mounted_at
from diskkit.backends.state import pid_alive
from diskkit.errors import CommandError, CommandTimeout, HostError, UserError
from diskkit.runner import run

#: Seconds a launch may take before it is declared hung (TCG takes 15-40 s on 2 cores).
LAUNCH_TIMEOUT = float(os.environ.get("DISKKIT_GUESTFS_TIMEOUT", "240"))


def use_tcg() -> bool:
    """True when the appliance must run under TCG (see the module docstring)."""
    if "force_tcg" in os.environ.get("LIBGUESTFS_BACKEND_SETTINGS", ""):
        return True
    if os.environ.get("DISKKIT_GUESTFS_TCG") == "1":
        return True
    from diskkit.backends.kvm import kvm_usable

    return kvm_usable() is not True


def _env() -> dict[str, str]:
    env = {"LIBGUESTFS_BACKEND": os.environ.get("LIBGUESTFS_BACKEND", "direct")}
    if use_tcg():
        settings = os.environ.get("LIBGUESTFS_BACKEND_SETTINGS", "")
        if "force_tcg" not in settings:
            settings = ":".join(s for s in (settings, "force_tcg") if s)
        env["LIBGUESTFS_BACKEND_SETTINGS"] = settings
    return env


def _module() -> Any:
    try:
        import guestfs
    except ImportError:
        raise HostError("the libguestfs Python binding is missing", code="binding-missing",
                        hint="install it: apt-get install python3-guestfs libguestfs-tools "
                             "(and use Debian's python3)") from None
    return guestfs


def _kill_our_qemu() -> None:
    """Kill the qemu children of this process (a launch that hung)."""
    me = str(os.getpid())
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if stat[1] == me and b"qemu-system" in cmd:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


@contextlib.contextmanager
def open_appliance(image: str, fmt: str, timeout: float = LAUNCH_TIMEOUT) -> Iterator[Any]:
    """A launched read-only libguestfs handle on ``image``; shut down on every exit path."""
    guestfs = _module()
    g = guestfs.GuestFS(python_return_dict=True)
    try:
        g.set_backend(_env()["LIBGUESTFS_BACKEND"])
        if use_tcg():
            g.set_backend_settings(["force_tcg"])
        g.add_drive_opts(image, format=fmt, readonly=True)
        errors: list[BaseException] = []
        thread = threading.Thread(target=_launch, args=(g, errors), daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            # Kill qemu until launch() gives up (it may not have started qemu yet).
            deadline = time.monotonic() + 120
            while thread.is_alive() and time.monotonic() < deadline:
                _kill_our_qemu()
                thread.join(0.2)
            raise HostError(f"the libguestfs appliance did not start within {timeout:g} s",
                            code="appliance-timeout",
                            hint="KVM may hang here: set LIBGUESTFS_BACKEND_SETTINGS=force_tcg "
                                 "(see diskkit doctor)")
        if errors:
            raise HostError(f"the libguestfs appliance failed to start: {errors[0]}",
                            code="appliance-failed", hint="run libguestfs-test-tool")
        yield g
    finally:
        with contextlib.suppress(Exception):
            g.shutdown()
        g.close()


def _launch(g: Any, errors: list[BaseException]) -> None:
    try:
        g.launch()
    except Exception as exc:  # reported by the caller, in the main thread
        errors.append(exc)


def appliance_device(location: str | Location) -> str:
    """The appliance's device for a location (partition 2 -> /dev/sda2, lv vg/root ->
    /dev/vg/root); the layout's spelling ("partition 2") is accepted too."""
    where = Location.parse(location) if isinstance(location, str) else location
    if where.kind == "partition":
        return f"/dev/sda{where.number}"
    if where.kind == "lv":
        return f"/dev/{where.vg}/{where.lv}"
    return "/dev/sda"


def os_pairs(g: Any, plan: Any) -> list[tuple[str, str]]:
    """(device, mountpoint) of the OS root and its fstab tree, found inside the appliance the
    same way the kernel backends do: the first filesystem with /etc/fstab or /etc/os-release."""
    from diskkit.backends.fstab import parse
    from diskkit.backends.select import find_piece

    for cand in sorted(plan.candidates, key=lambda c: (c.where.kind != "lv",
                                                        c.location)):
        dev = appliance_device(cand.location)
        try:
            g.mount_ro(dev, "/")
        except RuntimeError:
            continue
        try:
            if not (g.is_file("/etc/fstab") or g.exists("/etc/os-release")):
                continue
            pairs = [(dev, "/")]
            text = g.pread("/etc/fstab", 1 << 16, 0) if g.is_file("/etc/fstab") else b""
            for spec, mp, _type in parse(text.decode("utf-8", errors="replace")):
                match = find_piece(plan, spec)
                if mp != "/" and match is not None and g.is_dir(mp):
                    pairs.append((appliance_device(match.location), mp))
            return pairs
        finally:
            g.umount_all()
    raise UserError("no operating system root found on this disk", code="no-os",
                    hint="mount a partition with --partition N")


def mount_in_appliance(g: Any, pairs: list[tuple[str, str]]) -> None:
    """Mount the pairs read-only inside the appliance (an encrypted one -> UserError)."""
    for dev, mp in pairs:
        fstype = g.vfs_type(dev)
        if fstype == "crypto_LUKS":
            raise UserError(f"{dev} is encrypted (crypto_LUKS); diskkit does not unlock volumes",
                            code="encrypted")
        try:
            g.mount_ro(dev, mp)
        except RuntimeError as exc:
            raise UserError(f"cannot mount {dev} ({fstype or 'unknown'}): {exc}",
                            code="no-filesystem") from None


def guestmount(td: Teardown, image: str, fmt: str, path: str,
               pairs: list[tuple[str, str]] | None, timeout: float = LAUNCH_TIMEOUT) -> None:
    """FUSE-mount the guest's filesystems at ``path`` (``pairs`` of appliance device and
    mountpoint, shallowest first; None: the OS root found by inspection) read-only, through
    ``guestmount``."""
    pidfile = td.run.dir / f"guestmount{len(td.run.steps)}.pid"
    data = td.step("guestmount", path=os.path.abspath(path), pidfile=str(pidfile))
    argv = ["guestmount", "--ro", f"--format={fmt}", "-a", image, "--pid-file", str(pidfile),
            # FUSE options (libfuse): no setuid, device node or program of the image works.
            "-o", "nosuid", "-o", "nodev", "-o", "noexec"]
    if pairs is None:
        argv.append("-i")
    else:
        for dev, mp in pairs:
            argv += ["-m", f"{dev}:{mp}"]
    argv.append(path)
    try:
        run(argv, timeout=timeout, env=_env())
    except CommandTimeout:
        raise HostError(f"the libguestfs appliance did not start within {timeout:g} s",
                        code="appliance-timeout",
                        hint="KVM may hang here: set LIBGUESTFS_BACKEND_SETTINGS=force_tcg") \
            from None
    except CommandError as exc:
        raise HostError(f"guestmount failed: {exc.message}", code="guestmount-failed") from None
    td.done(data, pid=_read_pid(pidfile))


def _read_pid(p: pathlib.Path) -> int | None:
    try:
        return int(p.read_text().strip())
    except (OSError, ValueError):
        return None


@undoer("guestmount")
def _undo(data: dict[str, Any]) -> None:
    """Unmount (guestmount then shuts its appliance down and exits); kill it if it lingers."""
    path = data["path"]
    pid = data.get("pid") or _read_pid(pathlib.Path(data.get("pidfile", "/nonexistent")))
    for _ in range(20):
        if not mounted_at(path):
            break
        if run(["fusermount3", "-u", path], timeout=30, check=False).returncode == 0:
            break
        time.sleep(0.25)
    if mounted_at(path):
        raise HostError(f"cannot unmount {path}: it is busy", code="busy",
                        hint=f"see who uses it: fuser -vm {path}; then diskkit cleanup")
    deadline = time.monotonic() + 30
    while pid and pid_alive(pid) and _is_guestmount(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid and pid_alive(pid) and _is_guestmount(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _is_guestmount(pid: int) -> bool:
    try:
        return b"guestmount" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
