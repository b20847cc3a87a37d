"""The few librbd/librados operations a conversion into Ceph needs: does the image exist, how
much room has the pool, create, rename and remove (the temporary image of an interrupted
conversion included: a killed qemu-img leaves a watch on it, which must be evicted).

All calls go through the python3-rbd/python3-rados bindings (no external program).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from diskkit.errors import HostError, UserError
from diskkit.target import Target


def _modules() -> tuple[Any, Any]:
    """The rados and rbd bindings; a :class:`HostError` naming the packages when missing."""
    try:
        import rados
        import rbd
    except ImportError:
        raise HostError("the Ceph Python bindings are not installed", code="binding-missing",
                        hint="install them: apt-get install python3-rbd python3-rados") from None
    return rados, rbd


#: Connected cluster handles, one per (conf, user, keyring), shared by every call of this
#: process (a conversion makes 3-4 calls; connecting costs ~0.1 s each). librados handles
#: are thread-safe, so a batch's threads share them too. Closed by :func:`disconnect`.
_CLUSTERS: dict[tuple[str | None, str | None, str | None], Any] = {}
_LOCK = threading.Lock()


def _cluster(t: Target) -> Any:
    """The cached cluster handle for ``t``'s (conf, user, keyring), connected by
    :func:`diskkit.readers.rbd_connection.connect` (its configuration checks, timeouts and
    errors)."""
    from diskkit.readers.rbd_connection import connect

    key = (t.conf, t.user, t.keyring)
    with _LOCK:
        if key in _CLUSTERS:
            return _CLUSTERS[key]
        cluster = connect(t.conf, t.user, t.keyring, spec=t.spec).cluster
        if not _CLUSTERS:
            atexit.register(disconnect)
        _CLUSTERS[key] = cluster
        return cluster


def disconnect() -> None:
    """Close every cached cluster connection."""
    with _LOCK:
        for cluster in _CLUSTERS.values():
            with contextlib.suppress(Exception):
                cluster.shutdown()
        _CLUSTERS.clear()


@contextlib.contextmanager
def ioctx(t: Target) -> Iterator[tuple[Any, Any]]:
    """A connected cluster handle and an I/O context on ``t``'s pool (and namespace)."""
    rados, _ = _modules()
    cluster = _cluster(t)
    try:
        io = cluster.open_ioctx(t.pool)
    except rados.ObjectNotFound:
        raise UserError(f"{t.spec}: no pool {t.pool!r}", code="not-found") from None
    try:
        if t.namespace:
            io.set_namespace(t.namespace)
        yield cluster, io
    finally:
        io.close()


def _pool_max_avail(cluster: Any, pool: str) -> int | None:
    """The pool's ``max_avail`` from ``ceph df`` (replication and quota accounted for), or
    None when the cluster keeps no statistics (no ceph-mgr: ``df`` then reports zeros)."""
    ret, out, _err = cluster.mon_command(json.dumps({"prefix": "df", "format": "json"}), b"",
                                         timeout=30)
    if ret != 0:
        return None
    try:
        doc = json.loads(out)
        if not int(doc["stats"]["total_bytes"]):
            return None
        for p in doc["pools"]:
            if p["name"] == pool:
                return int(p["stats"]["max_avail"])
    except (ValueError, KeyError, TypeError):
        return None
    return None


def _pool_quota(cluster: Any, pool: str) -> int | None:
    """The pool's ``quota_max_bytes`` from the OSD map (a monitor fact, no mgr needed)."""
    ret, out, _err = cluster.mon_command(json.dumps({"prefix": "osd dump", "format": "json"}),
                                         b"", timeout=30)
    if ret != 0:
        return None
    try:
        for p in json.loads(out)["pools"]:
            if p["pool_name"] == pool:
                quota = int(p.get("quota_max_bytes") or 0)
                return quota or None
    except (ValueError, KeyError, TypeError):
        return None
    return None


def image_exists_and_room(t: Target) -> tuple[bool, int | None]:
    """Whether ``t``'s image exists, and the bytes its pool can still take: ``ceph df``'s
    ``max_avail``; on a cluster without statistics, the pool quota (an upper bound: usage
    is unknown there) or None (unknown)."""
    _, rbd = _modules()
    with ioctx(t) as (cluster, io):
        exists = t.image in rbd.RBD().list(io)
        avail = _pool_max_avail(cluster, t.pool or "")
        if avail is None:
            avail = _pool_quota(cluster, t.pool or "")
    return exists, avail


def exists(t: Target, name: str) -> bool:
    """Whether image ``name`` exists in ``t``'s pool/namespace."""
    _, rbd = _modules()
    with ioctx(t) as (_cluster, io):
        return name in rbd.RBD().list(io)


def image_size(t: Target) -> int | None:
    """Size of ``t``'s image, or None when it does not exist."""
    _, rbd = _modules()
    with ioctx(t) as (_cluster, io):
        try:
            with rbd.Image(io, t.image, read_only=True) as img:
                return int(img.size())
        except rbd.ImageNotFound:
            return None


@contextlib.contextmanager
def open_image(t: Target) -> Iterator[Any]:
    """``t``'s image (at its head) opened for writing, closed on leaving."""
    _, rbd = _modules()
    with ioctx(t) as (_cluster, io):
        img = rbd.Image(io, t.image)
        try:
            yield img
        finally:
            img.close()


def create(t: Target, name: str, size: int) -> None:
    """Create image ``name`` of ``size`` bytes with the cluster's default features."""
    _, rbd = _modules()
    with ioctx(t) as (_cluster, io):
        rbd.RBD().create(io, name, size, old_format=False)


def rename(t: Target, old: str, new: str, *, replace: bool = False) -> None:
    """Rename ``old`` to ``new``; with ``replace`` an existing ``new`` is removed first
    (refused while anything watches it: a running VM's disk is never pulled away)."""
    _, rbd = _modules()
    with ioctx(t) as (cluster, io):
        if replace and new in rbd.RBD().list(io):
            with rbd.Image(io, new, read_only=True) as img:
                if list(img.watchers_list()):
                    raise UserError(f"{t.spec}: is in use (it has watchers); not replaced",
                                    code="target-in-use", hint=f"rbd status {new}")
            _remove(cluster, io, new, rbd, evict=False)
        try:
            rbd.RBD().rename(io, old, new)
        except rbd.ImageExists:
            raise UserError(f"{t.spec}: exists (pass --force to replace it)",
                            code="target-exists") from None


def remove(t: Target, name: str) -> None:
    """Remove our temporary image ``name``, first evicting the watch (and with it the
    exclusive lock) a killed qemu-img left on it: otherwise librbd waits ~30 s for the dead
    owner before it breaks the lock."""
    _, rbd = _modules()
    with ioctx(t) as (cluster, io):
        _evict_watchers(cluster, io, name, rbd)
        _remove(cluster, io, name, rbd, evict=True)


def _remove(cluster: Any, io: Any, name: str, rbd: Any, *, evict: bool,
            wait: float = 60.0) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            rbd.RBD().remove(io, name)
            return
        except rbd.ImageNotFound:
            return
        except rbd.ImageBusy:
            if time.monotonic() > deadline or not evict:
                raise HostError(f"cannot remove RBD image {name}: it is still in use",
                                code="rbd-busy",
                                hint=f"rbd status {name}; rbd rm {name}") from None
            _evict_watchers(cluster, io, name, rbd)
            time.sleep(0.5)


def _evict_watchers(cluster: Any, io: Any, name: str, rbd: Any) -> None:
    """Blocklist the clients watching ``name``: only called for our own temporary image,
    whose only writer was the qemu-img we have just killed."""
    try:
        with rbd.Image(io, name, read_only=True) as img:
            watchers = [w["addr"] for w in img.watchers_list()]
    except rbd.ImageNotFound:
        return
    for addr in watchers:
        cmd = {"prefix": "osd blocklist", "blocklistop": "add", "addr": addr, "expire": 600.0}
        ret, _out, _err = cluster.mon_command(json.dumps(cmd), b"")
        if ret != 0:  # older clusters spell it "blacklist"
            cmd["prefix"] = "osd blacklist"
            cmd["blacklistop"] = cmd.pop("blocklistop")
            cluster.mon_command(json.dumps(cmd), b"")
