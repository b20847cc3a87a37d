"""ISO 9660 (with Rock Ridge or Joliet names) and UDF bridge images through pycdlib.

The richest namespace an image has is used: Rock Ridge (POSIX names, modes, owners,
symlinks), else UDF (a UDF bridge image), else Joliet (Unicode names), else plain ISO 9660
names (";1" and a trailing dot dropped, compared case-insensitively).
pycdlib needs a primary volume descriptor, so a pure UDF volume (mkudffs) is not read here
(the service layer sends it to the appliance). Every pycdlib exception is an ImageError.
"""

from __future__ import annotations

import calendar
import contextlib
from collections.abc import Iterator
from typing import Any

from diskkit.errors import ImageError
from diskkit.guest.fs.api import MAX_LINK_TARGET, FileStat
from diskkit.guest.fs.base import BaseFS, default_mode, kind_of_mode
from diskkit.guest.fs.libyal import ReaderFile
from diskkit.readers.base import Reader

#: Every exception pycdlib is known to let out on hostile bytes.
_PYCDLIB_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, KeyError, IndexError, AttributeError, TypeError, OverflowError, MemoryError,
    RecursionError, UnicodeDecodeError, OSError, AssertionError, ZeroDivisionError)


def _errors() -> tuple[type[BaseException], ...]:
    import struct

    from pycdlib import pycdlibexception

    return (pycdlibexception.PyCdlibException, struct.error, *_PYCDLIB_ERRORS)


class _Node:
    __slots__ = ("rec",)

    def __init__(self, rec: Any) -> None:
        self.rec = rec


class IsoFS(BaseFS):
    """An ISO 9660 / UDF bridge image read with pycdlib."""

    def __init__(self, reader: Reader, fstype: str = "iso9660", *, label: str | None = None,
                 uuid: str | None = None) -> None:
        import pycdlib

        self.fstype, self.label, self.uuid = fstype, label, uuid
        self.name = reader.name
        self._errs = _errors()
        self.iso = pycdlib.PyCdlib()
        try:
            self.iso.open_fp(ReaderFile(reader))  # type: ignore[arg-type]
            if self.iso.has_rock_ridge():
                self.ns = "rr"
                root = self.iso.get_record(rr_path="/")
            elif self.iso.has_udf():
                self.ns = "udf"
                root = self.iso.get_record(udf_path="/")
            elif self.iso.has_joliet():
                self.ns = "joliet"
                root = self.iso.get_record(joliet_path="/")
            else:
                self.ns = "iso"
                root = self.iso.get_record(iso_path="/")
        except self._errs as exc:
            raise ImageError(f"{reader.name}: cannot read the {fstype} filesystem: "
                             f"{str(exc)[:200] or type(exc).__name__}",
                             code="bad-filesystem") from None
        self.case_insensitive = self.ns == "iso"
        names = {"rr": "Rock Ridge", "joliet": "Joliet", "iso": "ISO 9660", "udf": "UDF"}
        self.driver = f"pycdlib ({names[self.ns]})"
        self._root_node = _Node(root)

    def _err(self, exc: BaseException) -> ImageError:
        return ImageError(f"{self.name}: {self.fstype}: {str(exc)[:200] or type(exc).__name__}",
                          code="bad-filesystem")

    def _root(self) -> _Node:
        return self._root_node

    def _name(self, rec: Any) -> str:
        if self.ns == "udf":
            return bytes(rec.file_identifier()).decode("utf-8", "replace")
        if self.ns == "rr" and rec.rock_ridge is not None:
            return bytes(rec.rock_ridge.name()).decode("utf-8", "replace")
        raw = bytes(rec.file_identifier())
        if self.ns == "joliet":
            return raw.decode("utf-16-be", "replace")
        name = raw.decode("ascii", "replace")
        if ";" in name:
            name = name.rsplit(";", 1)[0]
        return name[:-1] if name.endswith(".") else name

    def _children(self, directory: _Node) -> Iterator[tuple[str, _Node]]:
        rec = directory.rec
        try:
            if self.ns == "udf":
                kids = [fi.file_entry for fi in rec.fi_descs.values()
                        if not fi.is_parent() and fi.file_entry is not None]
            else:
                kids = [c for c in rec.children
                        if c is not None and not c.is_dot() and not c.is_dotdot()]
                if self.ns == "rr":
                    kids = [_relocated(c) for c in kids]
                    kids = [c for c in kids if c is not None]
            out = [(self._name(c), _Node(c)) for c in kids]
        except self._errs as exc:
            raise self._err(exc) from None
        yield from out

    def _lstat(self, node: _Node) -> FileStat:
        rec = node.rec
        try:
            if self.ns == "udf":
                return self._lstat_udf(rec)
            kind = "dir" if rec.is_dir() else "file"
            mode = default_mode(kind)
            uid = gid = None
            target = None
            rr = rec.rock_ridge if self.ns == "rr" else None
            if rr is not None:
                px = rr.dr_entries.px_record or (rr.ce_entries.px_record
                                                 if rr.ce_entries is not None else None)
                if px is not None:
                    mode, uid, gid = px.posix_file_mode, px.posix_user_id, px.posix_group_id
                    kind = kind_of_mode(mode)
                if rr.is_symlink():
                    kind = "symlink"
                    target = bytes(rr.symlink_path()).decode("utf-8", "replace")
                    target = target[:MAX_LINK_TARGET]
            size = len(target.encode()) if target is not None else 0 if kind == "dir" \
                else int(rec.get_data_length())
            if kind == "file" and rec.inode is not None:
                size = int(rec.inode.data_length)
            d = rec.date
            mtime = None
            if d is not None and 1 <= d.month <= 12 and 1 <= d.day_of_month <= 31:
                mtime = float(calendar.timegm((1900 + d.years_since_1900, d.month,
                                               d.day_of_month, d.hour, d.minute, d.second))
                              - _signed(d.gmtoffset) * 15 * 60)
            return FileStat(kind, size, mode, uid, gid, mtime, target,
                            int(rec.extent_location()))
        except self._errs as exc:
            raise self._err(exc) from None

    def _lstat_udf(self, rec: Any) -> FileStat:
        kind = "dir" if rec.is_dir() else "symlink" if rec.is_symlink() else \
            "file" if rec.is_file() else "other"
        p = int(rec.perms)
        mode = 0
        for shift, group in ((6, 10), (3, 5), (0, 0)):  # owner, group, other (ECMA-167 14.9.5)
            bits = (p >> group) & 0x1F
            mode |= ((bits & 4) | (bits & 2) | (bits & 1)) << shift
        mode |= {"dir": 0o040000, "symlink": 0o120000, "file": 0o100000}.get(kind, 0)
        target = None
        if kind == "symlink":
            target = _udf_symlink(self._read(_Node(rec), 0, min(int(rec.info_len), 4096)))
        t = rec.mod_time
        mtime = None
        if 1 <= t.month <= 12 and 1 <= t.day <= 31:
            tz = t.tz & 0xFFF
            off = tz - 0x1000 if tz & 0x800 else tz
            mtime = float(calendar.timegm((t.year, t.month, t.day, t.hour, t.minute, t.second))
                          - (off * 60 if abs(off) <= 1440 else 0))
        size = 0 if kind == "dir" else int(rec.get_data_length())
        uid, gid = int(rec.uid), int(rec.gid)  # 0xFFFFFFFF: "not specified" (ECMA-167 14.9.3)
        return FileStat(kind, size, mode, None if uid == 0xFFFFFFFF else uid,
                        None if gid == 0xFFFFFFFF else gid, mtime, target, None)

    def _read(self, node: _Node, offset: int, length: int) -> bytes:
        from pycdlib.pycdlibio import PyCdlibIO

        rec = node.rec
        try:
            if rec.inode is None:
                return b""
            with PyCdlibIO(rec.inode, self.iso.logical_block_size) as f:
                f.seek(offset)
                return bytes(f.read(length))
        except self._errs as exc:
            raise self._err(exc) from None

    def _close(self) -> None:
        with contextlib.suppress(*self._errs):
            self.iso.close()


def _relocated(rec: Any) -> Any:
    """A Rock Ridge directory moved by deep-directory relocation: its real record (CL)."""
    rr = rec.rock_ridge
    if rr is not None and rr.child_link_record_exists():
        return rr.cl_to_moved_dr
    if rr is not None and rr.relocated_record():
        return None  # the moved directory itself, listed where its CL entry points
    return rec


def _signed(b: int) -> int:
    return b - 256 if b > 127 else b


def _udf_symlink(data: bytes) -> str:
    """A UDF symbolic link's path components (ECMA-167 4/14.16) as a POSIX path."""
    parts: list[str] = []
    absolute = False
    pos = 0
    while pos + 4 <= len(data):
        ctype, clen = data[pos], data[pos + 1]
        ident = data[pos + 4:pos + 4 + clen]
        pos += 4 + clen
        if ctype in (1, 2):
            absolute, parts = True, []
        elif ctype == 3:
            parts.append("..")
        elif ctype == 4:
            parts.append(".")
        elif ctype == 5 and ident:
            comp, raw = ident[0], ident[1:]
            parts.append(raw.decode("utf-16-be", "replace") if comp == 16
                         else raw.decode("latin-1"))
    return ("/" if absolute else "") + "/".join(parts)
