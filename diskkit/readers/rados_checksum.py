"""Digests of RADOS objects computed by the OSDs that hold them (librados' checksum read op).

Checking what a conversion wrote into Ceph by reading it back moves every byte over the
network again: 0.2-0.25 s for 320 MiB on the test cluster, as long as ``rbd export``. The OSD
can hash an object where it lies and return 8 bytes instead (``CEPH_OSD_OP_CHECKSUM``, in
librados since Luminous: ``rados_read_op_checksum``, types xxhash32, xxhash64 and crc32c).
The Python bindings (python3-rados) do not offer that op, so it is called here through
ctypes on ``librados.so.2``, on a cluster handle of this module's own (the bindings do not
expose theirs); the handle is configured as :func:`diskkit.readers.rbd_connection.connect`
configures its: same configuration file, user, keyring and bounded timeouts.

What the OSD does with the op (Ceph src/osd/PrimaryLogPG.cc ``do_checksum``, checked against
the 16.2 OSD in tests/convert/test_osd_verify.py): ``length`` 0 means "to the end of the
object"; a range reaching past the end is cut at the end; a range starting at or past it
gives no checksum at all; the reply is a little-endian u32 count followed by the checksums
(u64 little-endian for xxhash64, one per ``chunk_size`` piece, one in all when it is 0). An
absent object fails the whole op with -ENOENT.

:meth:`ObjectDigests.probe` puts a stat and one or two checksums into one read op: one round
trip per object, whatever its size.
"""

from __future__ import annotations

import ctypes
import errno
import struct
import threading
from dataclasses import dataclass

from diskkit.errors import HostError
from diskkit.readers.rbd_connection import client_options

#: librados.h ``rados_checksum_type_t``.
XXHASH64 = 1
#: xxhash64's seed (the "init value" the op takes: 8 bytes, little-endian).
SEED = 0

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()
_VP = ctypes.c_void_p


def _library() -> ctypes.CDLL:
    """librados with the prototypes used here; a :class:`HostError` when it is missing."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        try:
            # By soname (librados' ABI has been 2 since 2013): ctypes.util.find_library runs
            # ldconfig in a subprocess, 18 ms here. The python3-rados module already mapped
            # the library, so this is a lookup.
            lib = ctypes.CDLL("librados.so.2")
            lib.rados_create.argtypes = [ctypes.POINTER(_VP), ctypes.c_char_p]
            lib.rados_conf_read_file.argtypes = [_VP, ctypes.c_char_p]
            lib.rados_conf_set.argtypes = [_VP, ctypes.c_char_p, ctypes.c_char_p]
            lib.rados_connect.argtypes = [_VP]
            lib.rados_shutdown.argtypes = [_VP]
            lib.rados_shutdown.restype = None
            lib.rados_ioctx_create2.argtypes = [_VP, ctypes.c_int64, ctypes.POINTER(_VP)]
            lib.rados_ioctx_set_namespace.argtypes = [_VP, ctypes.c_char_p]
            lib.rados_ioctx_set_namespace.restype = None
            lib.rados_ioctx_destroy.argtypes = [_VP]
            lib.rados_ioctx_destroy.restype = None
            lib.rados_create_read_op.argtypes = []
            lib.rados_create_read_op.restype = _VP
            lib.rados_release_read_op.argtypes = [_VP]
            lib.rados_release_read_op.restype = None
            lib.rados_read_op_stat.argtypes = [_VP, ctypes.POINTER(ctypes.c_uint64),
                                               ctypes.POINTER(ctypes.c_long),
                                               ctypes.POINTER(ctypes.c_int)]
            lib.rados_read_op_stat.restype = None
            lib.rados_read_op_checksum.argtypes = [
                _VP, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64,
                ctypes.c_size_t, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                ctypes.POINTER(ctypes.c_int)]
            lib.rados_read_op_checksum.restype = None
            lib.rados_read_op_operate.argtypes = [_VP, _VP, ctypes.c_char_p, ctypes.c_int]
        except (OSError, AttributeError) as exc:
            raise HostError(f"librados has no checksum op here ({exc})", code="binding-missing",
                            hint="install librados2 (Ceph 12 or later)") from None
        _lib = lib
        return lib


@dataclass(frozen=True)
class Probe:
    """One object as its OSD reports it: ``size`` (None: the object does not exist),
    ``head`` the xxhash64 of its bytes [0, split) and ``tail`` of [split, size) (None where
    that range is empty)."""

    size: int | None
    head: int | None
    tail: int | None


class ObjectDigests:
    """A cluster handle (connected on creation) and, after :meth:`use_pool`, an I/O context
    on one pool and namespace, asking OSDs for object digests. :meth:`probe` is thread-safe
    (librados' handles are); close it when done."""

    def __init__(self, conf: str | None, user: str | None, keyring: str | None, *,
                 timeout: int, spec: str) -> None:
        lib = _library()
        self._lib, self.spec = lib, spec
        self._cluster, self._io = _VP(), _VP()
        if lib.rados_create(ctypes.byref(self._cluster), user.encode() if user else None):
            raise HostError(f"{spec}: librados could not make a cluster handle",
                            code="ceph-error")
        try:
            if lib.rados_conf_read_file(self._cluster, conf.encode() if conf else None):
                raise HostError(f"{spec}: librados could not read the configuration "
                                f"{conf or '(default search path)'}", code="ceph-conf-bad")
            for key, value in client_options(keyring, timeout).items():
                lib.rados_conf_set(self._cluster, key.encode(), value.encode())
            rc = lib.rados_connect(self._cluster)
            if rc:
                raise HostError(f"{spec}: cannot connect to the Ceph cluster "
                                f"({strerror(rc)})", code="ceph-unreachable")
        except BaseException:
            self.close()
            raise

    def use_pool(self, pool_id: int, namespace: str | None) -> None:
        """Address the objects of pool ``pool_id`` (by id: an RBD image's data pool is known
        by id) and ``namespace`` from now on."""
        io = _VP()
        rc = self._lib.rados_ioctx_create2(self._cluster, pool_id, ctypes.byref(io))
        if rc:
            raise HostError(f"{self.spec}: cannot open pool id {pool_id} ({strerror(rc)})",
                            code="ceph-error")
        if namespace:
            self._lib.rados_ioctx_set_namespace(io, namespace.encode())
        if self._io:
            self._lib.rados_ioctx_destroy(self._io)
        self._io = io

    def probe(self, oid: str, split: int, length: int) -> Probe:
        """Stat object ``oid`` and hash its bytes [0, split) and [split, length), both cut
        at the object's end, in one round trip. A :class:`HostError` for any failure but
        the object's absence."""
        lib = self._lib
        if not self._io:
            raise HostError(f"{self.spec}: no pool chosen for the object digests",
                            code="ceph-error")
        op = lib.rados_create_read_op()
        if not op:
            raise HostError(f"{self.spec}: librados could not make a read op", code="ceph-error")
        try:
            size, mtime = ctypes.c_uint64(), ctypes.c_long()
            rv_stat, rv_head, rv_tail = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
            seed = struct.pack("<Q", SEED)
            head = ctypes.create_string_buffer(12)
            tail = ctypes.create_string_buffer(12)
            lib.rados_read_op_stat(op, ctypes.byref(size), ctypes.byref(mtime),
                                   ctypes.byref(rv_stat))
            if split > 0:
                lib.rados_read_op_checksum(op, XXHASH64, seed, len(seed), 0, split, 0,
                                           head, len(head), ctypes.byref(rv_head))
            if split < length:
                lib.rados_read_op_checksum(op, XXHASH64, seed, len(seed), split,
                                           length - split, 0, tail, len(tail),
                                           ctypes.byref(rv_tail))
            rc = lib.rados_read_op_operate(op, self._io, oid.encode(), 0)
        finally:
            lib.rados_release_read_op(op)
        if rc == -errno.ENOENT:
            return Probe(None, None, None)
        for value in (rc, rv_stat.value, rv_head.value, rv_tail.value):
            if value < 0:
                raise HostError(f"{self.spec}: the OSD could not checksum {oid} "
                                f"({strerror(value)})", code="ceph-error")
        return Probe(int(size.value), _value(head.raw) if split > 0 else None,
                     _value(tail.raw) if split < length else None)

    def close(self) -> None:
        """Release the I/O context and the cluster handle; idempotent."""
        if self._io:
            self._lib.rados_ioctx_destroy(self._io)
            self._io = _VP()
        if self._cluster:
            self._lib.rados_shutdown(self._cluster)
            self._cluster = _VP()

    def __enter__(self) -> ObjectDigests:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _value(raw: bytes) -> int | None:
    """The one xxhash64 of a checksum reply (u32 count, then u64s), None when it holds
    none (the range started at or past the object's end)."""
    (count,) = struct.unpack_from("<I", raw)
    if count == 0:
        return None
    if count != 1:
        raise HostError(f"the OSD returned {count} checksums where 1 was asked for",
                        code="ceph-error")
    return int(struct.unpack_from("<Q", raw, 4)[0])


def strerror(rc: int) -> str:
    """A librados return code (-errno) as words."""
    import os

    return os.strerror(-rc) if rc < 0 else f"error {rc}"


def xxh64(data: bytes | memoryview) -> int:
    """xxhash64 with :data:`SEED`, as the OSD computes it (python-xxhash)."""
    from xxhash import xxh64_intdigest

    return int(xxh64_intdigest(data, SEED))
