"""The qcow2 header, parsed from a bounded prefix of the file (pure: bytes in, dataclass out).

Layout from QEMU ``docs/interop/qcow2.txt`` ("Header", "Header extensions", "Feature name
table"). All numbers are big-endian. Version 2 headers are 72 bytes; version 3 headers are
``header_length`` bytes (at least 104, a multiple of 8), optionally followed by the one-byte
``compression_type`` at offset 104. Header extensions follow the header, up to the end of the
first cluster (or the backing file name, when that comes first).

This module raises :class:`ImageError` (a :class:`Qcow2HeaderError`, which names the field at
fault) only for a header that cannot be read at all (short, bad magic, version other than 2 or
3, impossible cluster size or header length, extensions running past the bytes given). The
readers refuse such an image; detection turns it into a ``qcow2-bad-version`` /
``qcow2-bad-header`` finding (:func:`diskkit.formats.qcow2_checks.probe`). Everything merely
*unsafe* (a backing file, an external data file, unknown feature bits, tables past the end of
the file) is exposed as a field; the safety checks in :mod:`diskkit.formats.qcow2_checks` turn
those into findings.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

from diskkit.errors import ImageError

MAGIC = b"QFI\xfb"
#: How many bytes of the file callers should pass (or the whole file when it is smaller).
PREFIX_SIZE = 64 * 1024
V2_HEADER_LENGTH = 72
V3_MIN_HEADER_LENGTH = 104
#: qcow2.txt: "Must not be longer than 1023 bytes".
MAX_BACKING_FILE_NAME = 1023

# Incompatible feature bits (qcow2.txt, header bytes 72-79).
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
KNOWN_INCOMPATIBLE = 0x1F
#: Autoclear bit 1: the external data file is a consistent raw image.
AUTOCLEAR_DATA_FILE_RAW = 1 << 1

# Header extension types (qcow2.txt, "Header extensions").
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_CRYPTO = 0x0537BE77
EXT_DATA_FILE = 0x44415441

COMPRESSION_NAMES = {0: "zlib", 1: "zstd"}
_FEATURE_ENTRY = 48  # type (1), bit (1), name (46)
_FIXED = struct.Struct(">4sIQIIQIIQQIIQ")  # bytes 0..71
_V3 = struct.Struct(">QQQII")  # bytes 72..103


class Qcow2HeaderError(ImageError):
    """A qcow2 header that cannot be read: the :class:`ImageError` :func:`parse_header`
    raises, with the header field at fault (``offset``, ``length`` bytes of the file) and
    whether the bytes simply end too soon (``truncated``) rather than hold a bad value."""

    def __init__(self, message: str, *, code: str, offset: int, length: int,
                 truncated: bool = False) -> None:
        super().__init__(message, code=code)
        self.offset = offset
        self.length = length
        self.truncated = truncated


@dataclass(frozen=True)
class Qcow2Header:
    """Every field of a qcow2 header and its extensions, as stored (nothing is validated
    beyond what is needed to read it)."""

    version: int
    backing_file_offset: int
    backing_file_size: int
    #: The backing file name when it lies within the bytes given (decoded, bad UTF-8
    #: replaced), else None. A non-zero ``backing_file_offset`` means there is one anyway.
    backing_file: str | None
    cluster_bits: int
    cluster_size: int
    #: Virtual (guest-visible) size in bytes.
    size: int
    crypt_method: int
    l1_size: int
    l1_table_offset: int
    refcount_table_offset: int
    refcount_table_clusters: int
    nb_snapshots: int
    snapshots_offset: int
    incompatible_features: int
    compatible_features: int
    autoclear_features: int
    refcount_order: int
    header_length: int
    #: 0 zlib, 1 zstd (other values are exposed as found).
    compression_type: int
    #: Every header extension as (type, offset of its data in the file, data).
    extensions: tuple[tuple[int, int, bytes], ...]
    #: Backing file format extension ("qcow2", "raw"...), or None.
    backing_format: str | None
    #: External data file name extension, or None (the bit may be set without a name).
    data_file: str | None

    @cached_property
    def feature_names(self) -> tuple[tuple[int, int, str], ...]:
        """Feature name table entries as (type 0/1/2, bit, name): decoded on first use only
        (detection never needs them)."""
        for ext_type, _off, raw in self.extensions:
            if ext_type == EXT_FEATURE_TABLE:
                return _feature_table(raw)
        return ()

    @property
    def has_backing_file(self) -> bool:
        """True when the header names a backing file (whether or not its name was read)."""
        return self.backing_file_offset != 0

    @property
    def has_data_file(self) -> bool:
        """True when guest data lives in an external data file (incompatible bit 2)."""
        return bool(self.incompatible_features & INCOMPAT_DATA_FILE)

    @property
    def extended_l2(self) -> bool:
        """True when L2 entries are 128 bits with subcluster bitmaps (incompatible bit 4)."""
        return bool(self.incompatible_features & INCOMPAT_EXTL2)

    @property
    def unknown_incompatible_features(self) -> int:
        """Incompatible feature bits no qemu knows (an implementation must refuse them)."""
        return self.incompatible_features & ~KNOWN_INCOMPATIBLE

    @property
    def compression(self) -> str:
        """Name of the compression of compressed clusters ("zlib", "zstd", "unknown-N")."""
        return COMPRESSION_NAMES.get(self.compression_type, f"unknown-{self.compression_type}")

    @property
    def l2_entry_size(self) -> int:
        """Bytes per L2 entry: 16 with extended L2, else 8."""
        return 16 if self.extended_l2 else 8

    @property
    def l2_entries(self) -> int:
        """Entries per L2 table (one cluster)."""
        return self.cluster_size // self.l2_entry_size

    def feature_name(self, kind: int, bit: int) -> str | None:
        """The image's own name for a feature bit (kind 0 incompatible, 1 compatible,
        2 autoclear), from its feature name table."""
        for k, b, name in self.feature_names:
            if k == kind and b == bit:
                return name
        return None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _extensions(data: bytes, start: int, end: int,
                file_size: int) -> list[tuple[int, int, bytes]]:
    """Walk the header extensions in ``data[start:end]`` (qcow2.txt "Header extensions")."""
    out: list[tuple[int, int, bytes]] = []
    pos = start
    while pos < end:
        if pos + 8 > len(data):
            raise Qcow2HeaderError(
                f"qcow2 header extension at {pos} runs past the {len(data)} bytes read",
                code="qcow2-bad-header", offset=pos, length=8,
                truncated=file_size <= len(data),
            )
        ext_type, length = struct.unpack_from(">II", data, pos)
        if ext_type == EXT_END:
            break
        data_at = pos + 8
        if data_at + length > end or data_at + length > len(data):
            raise Qcow2HeaderError(
                f"qcow2 header extension {ext_type:#010x} at {pos} claims {length} bytes, "
                f"past the end of the header area",
                code="qcow2-bad-header", offset=pos, length=8,
            )
        out.append((ext_type, data_at, bytes(data[data_at : data_at + length])))
        pos = data_at + ((length + 7) & ~7)
    return out


def _feature_table(raw: bytes) -> tuple[tuple[int, int, str], ...]:
    entries = []
    for i in range(0, len(raw) - _FEATURE_ENTRY + 1, _FEATURE_ENTRY):
        name = raw[i + 2 : i + _FEATURE_ENTRY].split(b"\0", 1)[0]
        entries.append((raw[i], raw[i + 1], _text(name)))
    return tuple(entries)


def _v3_fields(data: bytes, cluster_size: int, file_size: int
               ) -> tuple[int, int, int, int, int, int]:
    """Version 3's extra fields: (incompatible, compatible, autoclear features,
    refcount_order, header_length, compression_type)."""
    if len(data) < V3_MIN_HEADER_LENGTH:
        raise Qcow2HeaderError(f"qcow2 v3 header is truncated ({len(data)} of 104 bytes)",
                               code="qcow2-bad-header", offset=72,
                               length=len(data) - 72, truncated=True)
    incompat, compat, autoclear, refcount_order, header_length = _V3.unpack_from(data, 72)
    if header_length < V3_MIN_HEADER_LENGTH or header_length % 8:
        raise Qcow2HeaderError(f"qcow2 header_length {header_length} is not a multiple "
                               f"of 8 of at least 104", code="qcow2-bad-header",
                               offset=100, length=4)
    if header_length > cluster_size or header_length > len(data):
        raise Qcow2HeaderError(f"qcow2 header_length {header_length} runs past the "
                               f"first cluster or the bytes read", code="qcow2-bad-header",
                               offset=100, length=4,
                               truncated=header_length <= cluster_size
                               and file_size <= len(data))
    # compression_type is "present" when header_length > the field's offset
    compression_type = data[104] if header_length > 104 else 0
    return incompat, compat, autoclear, refcount_order, header_length, compression_type


def parse_header(data: bytes, file_size: int) -> Qcow2Header:
    """Parse the qcow2 header in ``data`` (the first 64 KiB of the file, or all of it when it
    is smaller; ``file_size`` is the whole file's size).

    Raises :class:`ImageError` when the header cannot be read as qcow2.
    """
    if len(data) < V2_HEADER_LENGTH:
        raise Qcow2HeaderError(f"qcow2 header is truncated ({len(data)} of 72 bytes)",
                               code="qcow2-bad-header", offset=0, length=len(data),
                               truncated=True)
    (magic, version, bf_offset, bf_size, cluster_bits, size, crypt, l1_size, l1_offset,
     rt_offset, rt_clusters, nb_snap, snap_offset) = _FIXED.unpack_from(data, 0)
    if magic != MAGIC:
        raise Qcow2HeaderError(f"not a qcow2 header: magic {magic!r}, expected {MAGIC!r}",
                               code="qcow2-bad-header", offset=0, length=4)
    if version not in (2, 3):
        raise Qcow2HeaderError(f"qcow2 version {version} is not 2 or 3",
                               code="qcow2-bad-version", offset=4, length=4)
    if not 9 <= cluster_bits <= 21:
        # qcow2.txt: at least 9; qemu cannot open clusters larger than 2 MiB.
        raise Qcow2HeaderError(f"qcow2 cluster_bits {cluster_bits} is outside 9..21",
                               code="qcow2-bad-header", offset=20, length=4)
    cluster_size = 1 << cluster_bits
    incompat = compat = autoclear = 0
    refcount_order = 4  # fixed for version 2
    header_length = V2_HEADER_LENGTH
    compression_type = 0
    if version == 3:
        incompat, compat, autoclear, refcount_order, header_length, compression_type = \
            _v3_fields(data, cluster_size, file_size)
    # Extensions end at the first cluster's end, or where the backing file name starts.
    ext_end = cluster_size
    if bf_offset and header_length < bf_offset < ext_end:
        ext_end = bf_offset
    if file_size <= len(data):  # the whole file was given: a short file ends the area
        ext_end = min(ext_end, len(data))
    extensions = _extensions(data, header_length, ext_end, file_size)
    backing_file = None
    if bf_offset and bf_size <= MAX_BACKING_FILE_NAME and bf_offset + bf_size <= len(data):
        backing_file = _text(data[bf_offset : bf_offset + bf_size])
    backing_format = data_file = None
    for ext_type, _off, raw in extensions:
        if ext_type == EXT_BACKING_FORMAT:
            backing_format = _text(raw)
        elif ext_type == EXT_DATA_FILE:
            data_file = _text(raw)
    return Qcow2Header(
        version=version, backing_file_offset=bf_offset, backing_file_size=bf_size,
        backing_file=backing_file, cluster_bits=cluster_bits, cluster_size=cluster_size,
        size=size, crypt_method=crypt, l1_size=l1_size, l1_table_offset=l1_offset,
        refcount_table_offset=rt_offset, refcount_table_clusters=rt_clusters,
        nb_snapshots=nb_snap, snapshots_offset=snap_offset, incompatible_features=incompat,
        compatible_features=compat, autoclear_features=autoclear,
        refcount_order=refcount_order, header_length=header_length,
        compression_type=compression_type, extensions=tuple(extensions),
        backing_format=backing_format, data_file=data_file,
    )
