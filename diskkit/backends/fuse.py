"""qemu-storage-daemon FUSE export: any format qemu reads, exposed as a read-only raw file.

Where the host has no nbd module, this is how a qcow2 (VMDK, VHDX, VDI...) becomes something a
loop device can attach: ``qemu-storage-daemon --blockdev file --blockdev FMT --export
type=fuse,writable=off`` (qemu docs/tools/qemu-storage-daemon.rst). Ceph RBD images and NBD
exports (:func:`export_remote`) go the same way through qemu's ``rbd``/``nbd`` drivers. The
daemon is started with ``--daemonize`` so it returns once the export is ready and can outlive a
CLI ``mount``; its pid is recorded, and teardown stops it and makes sure the export file is
unmounted.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import time
import urllib.parse
from typing import Any

from diskkit.backends.base import Teardown, undoer
from diskkit.backends.mounts import mounted_at
from diskkit.backends.state import pid_alive
from diskkit.errors import CommandError, HostError, UserError
from diskkit.formats import registry
from diskkit.runner import run, which
from diskkit.target import Target


def _opt(value: str) -> str:
    # QEMU's option syntax: a comma inside a value is written twice.
    return value.replace(",", ",,")


def export(td: Teardown, image: str, fmt: str) -> str:
    """Export ``image`` (format ``fmt``) as a read-only raw file in the run directory."""
    _check_host()
    info = registry.by_qemu(fmt)
    if info is None or not info.is_disk or info.read is registry.ReadVia.REFUSE:
        raise HostError(f"qemu cannot export the {fmt} format", code="unsupported-format")
    return _start(td, image, f"driver=file,node-name=file0,filename={_opt(image)},read-only=on",
                  fmt, f"{image} as {fmt}")


def export_remote(td: Teardown, target: Target) -> str:
    """Export a Ceph RBD image (or snapshot) or an NBD URI, whose bytes are a raw disk, as a
    read-only raw file in the run directory (qemu's ``rbd``/``nbd`` block drivers, then
    ``raw``; qapi/block-core.json BlockdevOptionsRbd/BlockdevOptionsNbd)."""
    _check_host()
    return _start(td, target.spec, remote_blockdev(target), "raw", target.spec)


def remote_blockdev(target: Target) -> str:
    """The ``--blockdev`` option string (node ``file0``) of an ``rbd:`` or NBD target."""
    if target.kind == "rbd":
        if target.keyring:
            raise UserError(f"{target.spec}: :keyring= cannot be passed to qemu's rbd driver",
                            code="unsupported-target",
                            hint="name the keyring in the ceph.conf given with :conf=")
        opts = ["driver=rbd", "node-name=file0", f"pool={_opt(target.pool or '')}",
                f"image={_opt(target.image or '')}"]
        if target.namespace:
            opts.append(f"namespace={_opt(target.namespace)}")
        if target.snap:
            opts.append(f"snapshot={_opt(target.snap)}")
        conf = target.conf or os.environ.get("CEPH_CONF")
        if conf:
            opts.append(f"conf={_opt(conf)}")
        if target.user:
            opts.append(f"user={_opt(target.user)}")
        return ",".join([*opts, "read-only=on"])
    if target.kind == "nbd":
        u = urllib.parse.urlparse(target.uri or target.spec)
        if u.scheme not in ("nbd", "nbd+tcp", "nbd+unix"):
            raise UserError(f"{target.spec}: {u.scheme} (TLS) cannot be mounted",
                            code="unsupported-target", hint="serve the export without TLS")
        export_name = urllib.parse.unquote(u.path.lstrip("/"))
        if u.scheme == "nbd+unix":
            sock = urllib.parse.parse_qs(u.query).get("socket", [""])[0]
            server = f"server.type=unix,server.path={_opt(sock)}"
        else:
            server = (f"server.type=inet,server.host={_opt(u.hostname or '')},"
                      f"server.port={u.port or 10809}")
        exp = f",export={_opt(export_name)}" if export_name else ""
        return f"driver=nbd,node-name=file0,{server}{exp},read-only=on"
    raise UserError(f"{target.spec}: not an RBD or NBD target", code="unsupported-target")


def _check_host() -> None:
    if which("qemu-storage-daemon") is None:
        raise HostError("qemu-storage-daemon is not installed", code="program-missing",
                        hint="install it: apt-get install qemu-system-common")
    if not os.path.exists("/dev/fuse"):
        raise HostError("this host has no FUSE (/dev/fuse is missing)", code="module-missing",
                        hint="modprobe fuse; apt-get install fuse3")


def _start(td: Teardown, image: str, blockdev: str, fmt: str, what: str) -> str:
    """Start a daemon exporting node ``file0`` read through ``fmt``; record it as a step."""
    n = sum(1 for s in td.run.steps if s["kind"] == "qsd")
    mountpoint = td.run.dir / f"export{n}.raw"
    pidfile = td.run.dir / f"qsd{n}.pid"
    mountpoint.touch()
    data = td.step("qsd", export=str(mountpoint), pidfile=str(pidfile), image=image)
    argv = [
        "qemu-storage-daemon", "--daemonize", "--pidfile", str(pidfile),
        "--blockdev", blockdev,
        "--blockdev", f"driver={fmt},node-name=fmt0,file=file0,read-only=on",
        "--export", f"type=fuse,id=exp0,node-name=fmt0,mountpoint={_opt(str(mountpoint))},"
                    "writable=off",
    ]
    try:
        run(argv, timeout=60)
    except CommandError as exc:
        raise HostError(f"qemu-storage-daemon could not export {what}: "
                        f"{exc.message}", code="export-failed") from None
    pid = _read_pid(pidfile)
    td.done(data, pid=pid)
    return str(mountpoint)


def _read_pid(pidfile: pathlib.Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_qsd(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"qemu-storage-daemon" in f.read()
    except OSError:
        return False


@undoer("qsd")
def _undo(data: dict[str, Any]) -> None:
    """Stop the daemon (SIGTERM, then SIGKILL), then make sure the export is unmounted."""
    pid = data.get("pid") or _read_pid(pathlib.Path(data.get("pidfile", "/nonexistent")))
    if pid and _is_qsd(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    path = data.get("export", "")
    if path and mounted_at(path):
        # A daemon killed hard leaves its FUSE mount behind ("Transport endpoint not connected").
        run(["umount", "-l", path], timeout=30, check=False)
    if path and mounted_at(path):
        raise HostError(f"cannot unmount the FUSE export {path}", code="teardown-failed")
    with contextlib.suppress(OSError):
        os.unlink(path)
