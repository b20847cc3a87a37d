"""ISO 9660 boot: the El Torito catalog (through pycdlib), the hybrid MBR/GPT of the system
area, and UDF.

El Torito ("Bootable CD-ROM Format Specification" 1.0): the boot record volume descriptor at
sector 17 points to the catalog; its validation entry names a platform (0 x86, 0xEF EFI), the
default entry must be 0x88 (bootable) for SeaBIOS to boot it (SeaBIOS src/cdrom.c), section
headers (0x90, last 0x91) add entries per platform. Load RBAs count 2048-byte sectors, sector
counts count 512-byte virtual sectors.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

from diskkit.boot.efi import EspInfo, inspect_fat_efi
from diskkit.errors import DiskkitError, HostError
from diskkit.readers.base import Reader, SliceReader

log = logging.getLogger(__name__)

ISO_SECTOR = 2048
PLATFORMS = {0: "x86", 1: "powerpc", 2: "mac", 0xEF: "efi"}
#: Work bounds: catalog entries read (a hostile catalog named 65,535 EFI entries), EFI images
#: inspected, volume descriptors scanned.
MAX_ENTRIES = 64
MAX_EFI_IMAGES = 8
_MAX_DESCRIPTORS = 64
MEDIA = {0: "no-emulation", 1: "floppy-1.2M", 2: "floppy-1.44M", 3: "floppy-2.88M",
         4: "hard-disk"}


class ReaderFile(io.RawIOBase):
    """A read-only, seekable file object over a Reader (pycdlib wants a file object)."""

    def __init__(self, reader: Reader) -> None:
        super().__init__()
        self._r = reader
        self._pos = 0

    def readable(self) -> bool:
        """Always."""
        return True

    def seekable(self) -> bool:
        """Always."""
        return True

    def tell(self) -> int:
        """Current position."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position like a file."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._r.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf: Any) -> int:
        """Fill ``buf`` from the current position (short at the end)."""
        data = self._r.read(self._pos, len(buf))
        n = len(data)
        buf[:n] = data
        self._pos += n
        return n


@dataclass(frozen=True)
class BootEntry:
    """One El Torito boot entry (the default entry or a section entry)."""

    section: str          # "default" or "section N"
    platform: str         # "x86", "efi", ...
    bootable: bool        # boot indicator 0x88
    media: str
    load_segment: int
    system_type: int
    sector_count: int     # 512-byte virtual sectors
    load_rba: int         # 2048-byte ISO sector
    #: The loaders found when the image is a FAT filesystem (EFI entries).
    efi: EspInfo | None = None

    @property
    def offset(self) -> int:
        """Byte offset of the boot image in the ISO."""
        return self.load_rba * ISO_SECTOR

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"section": self.section, "platform": self.platform, "bootable": self.bootable,
                "media": self.media, "load_segment": self.load_segment,
                "system_type": self.system_type, "sector_count": self.sector_count,
                "load_rba": self.load_rba, "offset": self.offset,
                "size": self.sector_count * 512,
                "efi": self.efi.to_dict() if self.efi else None}


@dataclass(frozen=True)
class ElTorito:
    """An ISO's boot facts."""

    catalog_present: bool
    validation_platform: str | None = None
    catalog_lba: int | None = None
    entries: tuple[BootEntry, ...] = ()
    udf: bool = False
    #: The system area (first 32 KiB) holds an MBR with 55 AA and a partition entry.
    hybrid_mbr: bool = False
    #: A GPT header ("EFI PART") at byte 512 of the system area.
    hybrid_gpt: bool = False
    error: str | None = None

    @property
    def bios_bootable(self) -> bool:
        """What SeaBIOS checks: platform 0 (x86) and a default entry of 0x88."""
        return bool(self.catalog_present and self.validation_platform == "x86" and self.entries
                    and self.entries[0].bootable)

    @property
    def efi_entries(self) -> tuple[BootEntry, ...]:
        """Entries for the EFI platform (from the validation entry or a section header)."""
        return tuple(e for e in self.entries if e.platform == "efi")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, "boot.eltorito")."""
        return {"catalog_present": self.catalog_present,
                "validation_platform": self.validation_platform,
                "catalog_lba": self.catalog_lba,
                "entries": [e.to_dict() for e in self.entries], "udf": self.udf,
                "hybrid_mbr": self.hybrid_mbr, "hybrid_gpt": self.hybrid_gpt,
                "bios_bootable": self.bios_bootable, "error": self.error}


def is_iso(reader: Reader) -> bool:
    """True when the primary volume descriptor ("\\x01CD001") is at sector 16."""
    return reader.read(16 * ISO_SECTOR, 6) == b"\x01CD001"


def catalog_entry_count(disk: Reader) -> int | None:
    """Entries the El Torito catalog declares (default + every section's), counted from the
    raw bytes before pycdlib parses anything; None when there is no boot record."""
    for n in range(16, 16 + _MAX_DESCRIPTORS):
        vd = disk.read(n * ISO_SECTOR, ISO_SECTOR)
        if len(vd) < 0x4B or vd[1:6] != b"CD001" or vd[0] == 255:
            return None
        if vd[0] == 0 and vd[7:30] == b"EL TORITO SPECIFICATION":
            lba = int.from_bytes(vd[0x47:0x4B], "little")
            break
    else:
        return None
    total = 1
    pos = 64
    cat = disk.read(lba * ISO_SECTOR, ISO_SECTOR)
    while pos + 32 <= len(cat):
        header = cat[pos]
        if header not in (0x90, 0x91):
            break
        count = int.from_bytes(cat[pos + 2:pos + 4], "little")
        total += count
        if header == 0x91 or total > MAX_ENTRIES:
            break
        pos += 32 * (count + 1)
        if pos + 32 > len(cat):
            cat += disk.read(lba * ISO_SECTOR + len(cat), ISO_SECTOR * (1 + pos // ISO_SECTOR))
            if pos + 32 > len(cat):
                break
    return total


def _entry(disk: Reader, raw: Any, section: str, platform: int,
           efi_budget: list[int] | None = None) -> BootEntry:
    pname = PLATFORMS.get(platform, f"0x{platform:02x}")
    efi = None
    if efi_budget is not None and pname == "efi" and raw.load_rba:
        efi_budget[0] -= 1
    if pname == "efi" and raw.load_rba and (efi_budget is None or efi_budget[0] >= 0):
        start = raw.load_rba * ISO_SECTOR
        image = SliceReader(disk, start, disk.size - start, name=f"{disk.name} El Torito EFI")
        found = inspect_fat_efi(image, f"eltorito {section}", start)
        efi = found if found.fat_bits else None
    return BootEntry(section=section, platform=pname, bootable=raw.boot_indicator == 0x88,
                     media=MEDIA.get(raw.boot_media_type, str(raw.boot_media_type)),
                     load_segment=raw.load_segment, system_type=raw.system_type,
                     sector_count=raw.sector_count, load_rba=raw.load_rba, efi=efi)


def _system_area(disk: Reader) -> tuple[bool, bool]:
    mbr = disk.read(0, 512).ljust(512, b"\0")
    has_mbr = mbr[510:512] == b"\x55\xaa" and any(
        mbr[0x1BE + 16 * i + 4] != 0 for i in range(4))
    return has_mbr, disk.read(512, 8) == b"EFI PART"


def inspect_iso(disk: Reader) -> ElTorito:
    """The El Torito catalog and system area of the ISO in ``disk``."""
    try:
        import pycdlib
    except ImportError:
        raise HostError("pycdlib is not installed", code="binding-missing",
                        hint="pip install pycdlib (bash scripts/setup.sh)") from None
    hybrid_mbr, hybrid_gpt = _system_area(disk)
    declared = catalog_entry_count(disk)
    if declared is not None and declared > MAX_ENTRIES:
        return ElTorito(True, hybrid_mbr=hybrid_mbr, hybrid_gpt=hybrid_gpt,
                        error=f"the El Torito catalog declares more than {MAX_ENTRIES} entries: "
                              "work bound hit, not read")
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(ReaderFile(disk))  # type: ignore[arg-type]
    except DiskkitError:
        raise
    except Exception as exc:  # pycdlib raises anything on hostile bytes
        return ElTorito(False, hybrid_mbr=hybrid_mbr, hybrid_gpt=hybrid_gpt,
                        error=f"pycdlib cannot read the ISO: {type(exc).__name__}: {exc}")
    try:
        cat = iso.eltorito_boot_catalog
        udf = bool(iso.has_udf())
        if cat is None:
            return ElTorito(False, udf=udf, hybrid_mbr=hybrid_mbr, hybrid_gpt=hybrid_gpt)
        plat = cat.validation_entry.platform_id
        budget = [MAX_EFI_IMAGES]
        entries = [_entry(disk, cat.initial_entry, "default", plat, budget)]
        for i, sec in enumerate(cat.sections, 1):
            for e in sec.section_entries:
                if len(entries) >= MAX_ENTRIES:
                    break
                entries.append(_entry(disk, e, f"section {i}", sec.platform_id, budget))
        return ElTorito(True, PLATFORMS.get(plat, f"0x{plat:02x}"), cat.extent_location(),
                        tuple(entries), udf, hybrid_mbr, hybrid_gpt)
    except DiskkitError:
        raise
    except Exception as exc:  # pycdlib objects of a hostile catalog
        return ElTorito(False, hybrid_mbr=hybrid_mbr, hybrid_gpt=hybrid_gpt,
                        error=f"the El Torito catalog cannot be read: {type(exc).__name__}: "
                              f"{exc}")
    finally:
        try:
            iso.close()
        except Exception:
            log.debug("pycdlib close failed", exc_info=True)


def iso_has_paths(disk: Reader, paths: list[str]) -> list[bool] | None:
    """Whether each of ``paths`` exists in the ISO 9660 filesystem of ``disk`` (Rock Ridge
    names, as GRUB's iso9660 module reads them; then Joliet; then plain ISO 9660 names).
    None when pycdlib cannot read the filesystem."""
    try:
        import pycdlib
    except ImportError:
        return None
    iso = pycdlib.PyCdlib()
    declared = catalog_entry_count(disk)
    if declared is not None and declared > MAX_ENTRIES:
        return None
    try:
        iso.open_fp(ReaderFile(disk))  # type: ignore[arg-type]
    except DiskkitError:
        raise
    except Exception:  # pycdlib raises anything on hostile bytes
        return None
    out = []
    try:
        for path in paths:
            if iso.has_rock_ridge():
                kwargs = {"rr_path": path}
            elif iso.has_joliet():
                kwargs = {"joliet_path": path}
            else:
                kwargs = {"iso_path": path.upper() + ";1"}
            try:
                iso.get_record(**kwargs)
                out.append(True)
            except DiskkitError:
                raise
            except Exception:  # PyCdlibException, or anything on hostile bytes
                out.append(False)
        return out
    finally:
        try:
            iso.close()
        except Exception:
            log.debug("pycdlib close failed", exc_info=True)
