"""The format registry: every fact diskkit knows about a format, in one table.

One frozen :class:`FormatInfo` per format, keyed by its diskkit name (which is the OpenStack
Glance ``disk_format`` name wherever Glance has one: ``vhd``, not qemu's ``vpc``). Every other
module asks this table (:func:`get`, :func:`lookup`, :func:`qemu_driver`, :func:`formats`)
instead of keeping a tuple of names of its own.

Foundation layer: imports nothing from diskkit but :mod:`diskkit.errors`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from diskkit.errors import UserError


class Kind(StrEnum):
    """What a file of this format is."""

    DISK = "disk"              # a guest disk (raw bytes or a container of them)
    ENCRYPTED = "encrypted"    # a disk that needs a key (LUKS)
    COMPRESSED = "compressed"  # one compressed stream (gzip, xz, ...)
    ARCHIVE = "archive"        # several files (zip, tar, OVA)


class ReadVia(StrEnum):
    """How diskkit reads the guest-visible disk of a file of this format."""

    IN_PLACE = "in-place"    # the bytes are the disk (raw, iso; also a fixed VHD's body)
    QCOW2 = "qcow2"          # diskkit.readers.qcow2, pure Python
    VMDK = "vmdk"            # diskkit.readers.vmdk (hosted sparse), else qemu-nbd
    VHDX = "vhdx"            # diskkit.readers.vhdx (dynamic, fixed), else qemu-nbd
    QEMU_NBD = "qemu-nbd"    # diskkit.readers.nbd.QemuNbdReader with the qemu driver
    REFUSE = "refuse"        # cannot be read without something diskkit does not have (a key)
    UNPACK = "unpack"        # not a disk: unpack it first


@dataclass(frozen=True)
class FormatInfo:
    """One format. ``name`` is diskkit's (and OpenStack's) name for it."""

    name: str
    kind: Kind
    #: qemu's block driver name (``-f``), None when qemu cannot read it.
    qemu: str | None
    read: ReadVia
    #: Glance ``disk_format`` for an image of this format (None: Glance has none; an archive
    #: goes in as its own disk after unpacking).
    glance: str | None
    description: str
    #: Other names people and tools give it (qemu's driver name, Glance's raw aliases...).
    aliases: tuple[str, ...] = ()
    #: detect() can name a file this format.
    detected: bool = True
    #: The command that unpacks it (FILE is the placeholder), for archives and compressed.
    unpack: str | None = None
    #: Usual file name extension (without the dot).
    extension: str = ""
    #: The format can name other files to read (backing file, parent, differencing).
    has_backing: bool = False
    #: qemu's driver follows those names (``supports_backing``): qemu-nbd must be told
    #: ``backing: null`` to stay inside the file.
    qemu_backing: bool = False
    #: ``qemu-img convert -O`` can write it.
    writable: bool = False
    #: ``-o`` options always given when creating/converting to it (vpc: force_size=on, so the
    #: virtual size is the one asked for, not the CHS-rounded one).
    create_options: tuple[str, ...] = ()
    #: ``-o`` options for a preallocated (fixed) output, None when not supported.
    preallocate_options: tuple[str, ...] | None = None
    #: ``-o`` options for a compressed output (``-c``), None when not supported.
    compress_options: tuple[str, ...] | None = None

    @property
    def is_disk(self) -> bool:
        """A guest disk (possibly encrypted), not an archive or a compressed stream."""
        return self.kind in (Kind.DISK, Kind.ENCRYPTED)

    @property
    def qemu_can_read(self) -> bool:
        """qemu has a block driver for it."""
        return self.qemu is not None

    @property
    def raw_bytes(self) -> bool:
        """The file's bytes are the guest disk as they are (qemu reads it as ``raw``)."""
        return self.qemu == "raw"

    @property
    def is_container(self) -> bool:
        """A disk wrapped in a format of its own (its first sector is its header)."""
        return self.is_disk and not self.raw_bytes

    def to_dict(self) -> dict[str, object]:
        """JSON form (``diskkit formats --json`` and the docs)."""
        return {"name": self.name, "kind": self.kind.value, "qemu": self.qemu,
                "read": self.read.value, "glance": self.glance, "is_disk": self.is_disk,
                "qemu_can_read": self.qemu_can_read, "aliases": list(self.aliases),
                "unpack": self.unpack, "writable": self.writable,
                "description": self.description}


_D, _E, _C, _A = Kind.DISK, Kind.ENCRYPTED, Kind.COMPRESSED, Kind.ARCHIVE

_TABLE: dict[str, FormatInfo] = {}
_ALIASES: dict[str, str] = {}


def register(info: FormatInfo) -> FormatInfo:
    """Add a format (at import time of this module, or of a format module that owns it).
    Names and aliases must be new; :class:`ValueError` otherwise."""
    for key in (info.name, *info.aliases):
        if key in _TABLE or key in _ALIASES:
            raise ValueError(f"format name {key!r} is registered twice")
    _TABLE[info.name] = info
    for alias in info.aliases:
        _ALIASES[alias] = info.name
    return info


for _info in (
    FormatInfo("raw", _D, "raw", ReadVia.IN_PLACE, "raw", "raw disk bytes",
               aliases=("img", "ami", "ari", "aki"), extension="raw", writable=True,
               preallocate_options=("preallocation=falloc",)),
    FormatInfo("iso", _D, "raw", ReadVia.IN_PLACE, "iso", "ISO 9660 optical disc image",
               extension="iso"),
    FormatInfo("qcow2", _D, "qcow2", ReadVia.QCOW2, "qcow2", "QEMU copy-on-write v2/v3",
               extension="qcow2", has_backing=True, qemu_backing=True, writable=True,
               preallocate_options=("preallocation=falloc",), compress_options=()),
    FormatInfo("qed", _D, "qed", ReadVia.QEMU_NBD, None, "QEMU enhanced disk",
               extension="qed", has_backing=True, qemu_backing=True),
    FormatInfo("vmdk", _D, "vmdk", ReadVia.VMDK, "vmdk", "VMware virtual disk",
               extension="vmdk", has_backing=True, qemu_backing=True,
               writable=True,
               compress_options=("subformat=streamOptimized",)),
    FormatInfo("vhd", _D, "vpc", ReadVia.QEMU_NBD, "vhd",
               "Microsoft Virtual PC / Hyper-V VHD (a fixed VHD is read in place)",
               aliases=("vpc",), extension="vhd", has_backing=True, writable=True,
               create_options=("force_size=on",), preallocate_options=("subformat=fixed",)),
    FormatInfo("vhdx", _D, "vhdx", ReadVia.VHDX, "vhdx", "Hyper-V VHDX",
               extension="vhdx", has_backing=True, writable=True,
               preallocate_options=("subformat=fixed",)),
    FormatInfo("vdi", _D, "vdi", ReadVia.QEMU_NBD, "vdi", "VirtualBox disk image",
               extension="vdi", has_backing=True, writable=True,
               preallocate_options=("static=on",)),
    FormatInfo("ploop", _D, "parallels", ReadVia.QEMU_NBD, "ploop",
               "Virtuozzo ploop (qemu's parallels driver)", detected=False, extension="hds"),
    FormatInfo("luks", _E, "luks", ReadVia.REFUSE, None, "LUKS-encrypted disk",
               extension="luks"),
    # Formats qemu reads that OpenStack does not take (validate: refused with the conversion).
    FormatInfo("parallels", _D, "parallels", ReadVia.QEMU_NBD, None,
               "Parallels / Virtuozzo image (v1 or extended; ploop's file format)",
               extension="hdd"),
    FormatInfo("bochs", _D, "bochs", ReadVia.QEMU_NBD, None, "Bochs growing (redolog) image",
               extension="img"),
    FormatInfo("cloop", _D, "cloop", ReadVia.QEMU_NBD, None,
               "cloop compressed loop image (Knoppix)", extension="cloop"),
    FormatInfo("dmg", _D, "dmg", ReadVia.QEMU_NBD, None, "Apple UDIF disk image",
               extension="dmg"),
    FormatInfo("qcow", _D, "qcow", ReadVia.QEMU_NBD, None, "QEMU qcow version 1",
               aliases=("qcow1",), extension="qcow", has_backing=True, qemu_backing=True),
    FormatInfo("vvfat", _D, "vvfat", ReadVia.REFUSE, None,
               "qemu's virtual FAT disk of a host directory (fat:DIR; never a file)",
               detected=False),
    FormatInfo("gzip", _C, None, ReadVia.UNPACK, None, "gzip-compressed file",
               unpack="gunzip -k FILE", extension="gz"),
    FormatInfo("xz", _C, None, ReadVia.UNPACK, None, "xz-compressed file",
               unpack="unxz -k FILE", extension="xz"),
    FormatInfo("zstd", _C, None, ReadVia.UNPACK, None, "zstd-compressed file",
               unpack="unzstd FILE", extension="zst"),
    FormatInfo("bzip2", _C, None, ReadVia.UNPACK, None, "bzip2-compressed file",
               unpack="bunzip2 -k FILE", extension="bz2"),
    FormatInfo("zip", _A, None, ReadVia.UNPACK, None, "zip archive",
               unpack="unzip FILE", extension="zip"),
    FormatInfo("tar", _A, None, ReadVia.UNPACK, None, "tar archive",
               unpack="tar -xf FILE", extension="tar"),
    FormatInfo("ova", _A, None, ReadVia.UNPACK, None,
               "OVA: a tar of an OVF descriptor and its disks (Glance container_format ova)",
               unpack="tar -xf FILE", extension="ova"),
):
    register(_info)


def lookup(name: str) -> FormatInfo | None:
    """The entry for a name or alias (case-insensitive), None when unknown."""
    low = name.strip().lower()
    return _TABLE.get(low) or _TABLE.get(_ALIASES.get(low, ""))


def get(name: str) -> FormatInfo:
    """The entry for a name or alias; :class:`UserError` (code ``bad-format``) naming the
    known formats when there is none."""
    info = lookup(name)
    if info is None:
        raise UserError(f"unknown disk format {name!r}", code="bad-format",
                        hint="use one of: " + ", ".join(sorted(_TABLE)))
    return info


def normalise(name: str) -> str:
    """diskkit's name for a format name or alias (``vpc`` -> ``vhd``, ``ami`` -> ``raw``)."""
    return get(name).name


def qemu_driver(name: str) -> str:
    """qemu's driver for a format name or alias; :class:`UserError` when qemu has none."""
    info = get(name)
    if info.qemu is None:
        raise UserError(f"qemu cannot read {info.name} files", code="bad-format",
                        hint=f"unpack it first ({info.unpack})" if info.unpack else None)
    return info.qemu


def by_qemu(driver: str) -> FormatInfo | None:
    """The entry whose qemu driver is ``driver`` (``raw`` gives ``raw``, not ``iso``)."""
    exact = _TABLE.get(driver)
    if exact is not None and exact.qemu == driver:
        return exact
    return next((i for i in _TABLE.values() if i.qemu == driver), None)


def formats() -> Iterator[FormatInfo]:
    """Every entry, in registration order."""
    return iter(tuple(_TABLE.values()))


def names(*, kind: Kind | None = None, read: ReadVia | None = None, detected: bool | None = None,
          disk: bool | None = None, writable: bool | None = None) -> tuple[str, ...]:
    """The names of the entries that match every given condition."""
    return tuple(i.name for i in _TABLE.values()
                 if (kind is None or i.kind == kind) and (read is None or i.read == read)
                 and (detected is None or i.detected == detected)
                 and (disk is None or i.is_disk == disk)
                 and (writable is None or i.writable == writable))


def qemu_drivers() -> tuple[str, ...]:
    """Every qemu driver name the registry knows (each once)."""
    return tuple(dict.fromkeys(i.qemu for i in _TABLE.values() if i.qemu))


def glance_names() -> tuple[str, ...]:
    """Every Glance ``disk_format`` value the registry knows, with Glance's raw aliases."""
    out = [i.glance for i in _TABLE.values() if i.glance]
    return tuple(dict.fromkeys([*out, "ami", "ari", "aki"]))
