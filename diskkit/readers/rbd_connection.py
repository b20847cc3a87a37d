"""Connecting to a Ceph cluster through librados, with bounded timeouts and errors by fault.

Everything that talks to a cluster goes through :func:`connect`: it reads the configuration
(``conf=`` of the target, else ``$CEPH_CONF``, else Ceph's default search path), sets
``client_mount_timeout``, ``rados_mon_op_timeout`` and ``rados_osd_op_timeout`` to
:func:`timeout_seconds` (``$DISKKIT_RBD_TIMEOUT``, default 20 s) so that a stopped cluster or
a stopped OSD gives an error within that time instead of a hang, and turns librados/librbd
exceptions into :class:`UserError`/:class:`HostError` with a hint (:func:`translate`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from diskkit.errors import DiskkitError, HostError, UserError

#: Seconds a connection, a monitor request or an OSD request may take by default.
DEFAULT_TIMEOUT = 20
_PACKAGES = "python3-rados python3-rbd"


def timeout_seconds() -> int:
    """The Ceph timeout in seconds: ``$DISKKIT_RBD_TIMEOUT`` or :data:`DEFAULT_TIMEOUT`."""
    raw = os.environ.get("DISKKIT_RBD_TIMEOUT", "")
    try:
        value = int(float(raw)) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise UserError(f"DISKKIT_RBD_TIMEOUT={raw!r} is not a number of seconds",
                        code="bad-input") from None
    return max(1, value)


def modules() -> tuple[Any, Any]:
    """The ``rados`` and ``rbd`` Python modules, or a :class:`HostError` naming the packages."""
    try:
        import rados
        import rbd
    except ImportError as exc:
        raise HostError(f"cannot load the Ceph Python bindings ({exc.name or exc})",
                        code="binding-missing",
                        hint=f"install them: apt-get install {_PACKAGES}") from None
    return rados, rbd


def translate(exc: BaseException, what: str) -> DiskkitError:
    """A librados/librbd exception about ``what`` (an image or pool spec) as a diskkit error."""
    rados, rbd = modules()
    if isinstance(exc, DiskkitError):
        return exc
    errno = getattr(exc, "errno", None)
    if isinstance(exc, rbd.ImageNotFound):
        return UserError(f"{what}: no such RBD image", code="rbd-image-not-found",
                         hint="list the pool's images: rbd ls POOL")
    if isinstance(exc, (rbd.PermissionError, rados.PermissionError,
                        rados.PermissionDeniedError)) or errno in (1, 13):
        return HostError(f"{what}: permission denied by the cluster", code="ceph-permission",
                         hint="give the Ceph user read caps on the pool, e.g. "
                         "'ceph auth caps client.USER mon \"profile rbd\" osd "
                         "\"profile rbd-read-only pool=POOL\"', or pass :id=/:keyring=")
    if isinstance(exc, (rados.TimedOut, rbd.Timeout)) or errno == 110:
        return HostError(f"{what}: the Ceph cluster did not answer within "
                         f"{timeout_seconds()} s", code="ceph-unreachable",
                         hint="check that the monitors and OSDs are up ('ceph -s') and that "
                         "mon host in ceph.conf is right; DISKKIT_RBD_TIMEOUT sets the wait")
    if isinstance(exc, (rbd.ConnectionShutdown,)) or errno == 108:
        return HostError(f"{what}: the connection to the cluster was shut down",
                         code="ceph-unreachable", hint="check the cluster: ceph -s")
    if isinstance(exc, (rados.ObjectNotFound, rbd.ObjectNotFound)) or errno == 2:
        return UserError(f"{what}: not found ({exc})", code="rbd-not-found",
                         hint="check the pool and namespace names: ceph osd lspools")
    return HostError(f"{what}: Ceph error: {exc}", code="ceph-error")


@dataclass
class Connection:
    """An open cluster handle (``rados.Rados``) and the pool contexts opened on it."""

    cluster: Any
    spec: str
    _ioctxs: list[Any] = field(default_factory=list)

    def ioctx(self, pool: str, namespace: str | None = None) -> Any:
        """An I/O context on ``pool`` (and ``namespace``); closed with the connection."""
        rados, _ = modules()
        what = f"pool {pool!r}"
        try:
            ioctx = self.cluster.open_ioctx(pool)
        except rados.ObjectNotFound:
            raise UserError(f"{self.spec}: no pool named {pool!r}", code="rbd-pool-not-found",
                            hint="list the pools: ceph osd lspools") from None
        except rados.Error as exc:
            raise translate(exc, what) from None
        if namespace:
            ioctx.set_namespace(namespace)
        self._ioctxs.append(ioctx)
        return ioctx

    def close(self) -> None:
        """Close every I/O context, then the cluster handle; idempotent."""
        while self._ioctxs:
            self._ioctxs.pop().close()
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def conf_file(conf: str | None) -> str:
    """The configuration file a client reads: ``conf``, else ``$CEPH_CONF``, else "" (Ceph's
    default search path)."""
    return conf or os.environ.get("CEPH_CONF") or ""


def client_options(keyring: str | None, seconds: int) -> dict[str, str]:
    """The settings every diskkit cluster handle gets: bounded timeouts, librados' own
    logging off, and the keyring when one is named."""
    options = {"client_mount_timeout": str(seconds), "rados_mon_op_timeout": str(seconds),
               "rados_osd_op_timeout": str(seconds),
               # librados logs to stderr by default: diskkit prints one line per error.
               "log_to_stderr": "false", "err_to_stderr": "false"}
    if keyring:
        options["keyring"] = keyring
    return options


def connect(conf: str | None = None, user: str | None = None, keyring: str | None = None,
            *, spec: str = "rbd") -> Connection:
    """Connect to the cluster ``conf`` describes (see the module docstring for defaults)."""
    rados, _ = modules()
    conffile = conf_file(conf)
    if conffile and not os.path.exists(conffile):
        raise UserError(f"{spec}: ceph configuration {conffile} does not exist",
                        code="ceph-conf-missing", hint="pass :conf=PATH or set CEPH_CONF")
    seconds = timeout_seconds()
    options = client_options(keyring, seconds)
    try:
        cluster = rados.Rados(conffile=conffile, rados_id=user or None, conf=options)
    except rados.ObjectNotFound:
        raise UserError(f"{spec}: no Ceph configuration found (/etc/ceph/ceph.conf)",
                        code="ceph-conf-missing", hint="pass :conf=PATH or set CEPH_CONF") from None
    except rados.Error as exc:
        raise UserError(f"{spec}: bad Ceph configuration: {exc}", code="ceph-conf-bad") from None
    try:
        cluster.connect(timeout=seconds)
    except rados.Error as exc:
        cluster.shutdown()
        err = translate(exc, spec)
        if err.code == "ceph-unreachable" and (user or keyring):
            # A monitor that refuses the key looks the same as one that does not answer.
            err.hint = (f"{err.hint}; or the monitors refused client.{user or 'admin'}'s "
                        "key: check :id= and :keyring=")
        raise err from None
    except BaseException:
        cluster.shutdown()
        raise
    return Connection(cluster, spec)
