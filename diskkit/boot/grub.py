"""GRUB 2 for BIOS: follow boot.img to core.img, decompress it, read its prefix and modules.

Offsets from GRUB's sources (grub-core/boot/i386/pc/boot.S, diskboot.S,
grub-core/kern/i386/pc/startup_raw.S, include/grub/offsets.h, include/grub/kernel.h):

- boot.img (sector 0, or a partition's first sector): LE u64 LBA of core.img's first sector
  at 0x5C (GRUB_BOOT_MACHINE_KERNEL_SECTOR), boot drive byte at 0x64 (0xFF: the BIOS drive).
- core.img sector 0 is diskboot.img: its blocklists (u64 start LBA, u16 sector count, u16 load
  segment; 12 bytes each) grow down from offset 0x1F4; a zero count ends the list.
- core.img sector 1 starts lzma_decompress.img (startup_raw.S): u32 compressed size at 0x08,
  u32 uncompressed size at 0x0C, boot partition bytes at 0x18. Raw LZMA (lc=3 lp=0 pb=2, as
  grub-mkimage's compress_kernel_lzma writes it, without a header) follows the decompressor.
- The decompressed kernel is followed by the module area: struct grub_module_info32 (magic
  "mimg", u32 offset, u32 size), then grub_module_header {u32 type, u32 size} records:
  0 ELF module, 1 memdisk, 2 embedded config, 3 prefix, 4 pubkey, 5 dtb, 6 disable shim lock.

Pure: a Reader in, a frozen :class:`CoreImage` out. Every length is bounded; a core.img that
cannot be followed gives ``error`` set, never an exception.
"""

from __future__ import annotations

import lzma
import struct
from dataclasses import dataclass
from typing import Any

from diskkit.readers.base import Reader

SECTOR = 512
KERNEL_SECTOR_OFFSET = 0x5C
BOOT_DRIVE_OFFSET = 0x64
HYBRID_KERNEL_SECTOR_OFFSET = 0x1B0
FIRST_BLOCKLIST = 0x1F4
BLOCKLIST_SIZE = 12
#: diskboot.img starts "push %dx; push %si; mov $notification_string, %si" (diskboot.S): the
#: string's address (bytes 3-4) moves between releases, so only the opcodes are the magic.
DISKBOOT_MAGIC = bytes.fromhex("5256be")
#: core.img cannot exceed the 0x8200..0x80000 area it is loaded to (458 KiB): bound the reads.
MAX_CORE_SECTORS = 1024
MAX_UNCOMPRESSED = 16 << 20
MODULE_MAGIC = b"mimg"
_TYPES = {0: "elf", 1: "memdisk", 2: "config", 3: "prefix", 4: "pubkey", 5: "dtb",
          6: "disable-shim-lock"}
# The decompressor ends before the kernel's link address 0x9000, loaded at 0x8200.
_MAX_DECOMPRESSOR = 0x9000 - 0x8200


@dataclass(frozen=True)
class Blocklist:
    """One blocklist entry of diskboot.img: ``count`` sectors from LBA ``start``."""

    start: int
    count: int
    segment: int

    def to_dict(self) -> dict[str, int]:
        """JSON form."""
        return {"start": self.start, "count": self.count, "segment": self.segment}


@dataclass(frozen=True)
class CoreImage:
    """What boot.img points to, and what the core.img found there holds."""

    #: LBA of core.img's first sector, from boot.img.
    sector: int
    #: Byte offset of that sector on the disk (sector * 512).
    offset: int
    boot_drive: int
    found: bool = False
    diskboot_magic: str = ""
    blocklists: tuple[Blocklist, ...] = ()
    compressed_size: int | None = None
    uncompressed_size: int | None = None
    prefix: str | None = None
    modules: tuple[str, ...] = ()
    config: str | None = None
    memdisk_size: int | None = None
    #: The files of a tar memdisk (``(memdisk)`` prefixes: grub-mkstandalone), at most
    #: :data:`MAX_MEMDISK_FILES`, names without a leading "./" or "/".
    memdisk_files: tuple[str, ...] = ()
    #: Why the core.img could not be followed or decoded; None when all went well.
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, "boot.grub.core")."""
        return {
            "sector": self.sector,
            "offset": self.offset,
            "boot_drive": self.boot_drive,
            "found": self.found,
            "diskboot_magic": self.diskboot_magic,
            "blocklists": [b.to_dict() for b in self.blocklists],
            "compressed_size": self.compressed_size,
            "uncompressed_size": self.uncompressed_size,
            "prefix": self.prefix,
            "modules": list(self.modules),
            "config": self.config,
            "memdisk_size": self.memdisk_size,
            "memdisk_files": len(self.memdisk_files),
            "error": self.error,
        }


def boot_img_pointer(sector: bytes) -> tuple[int, int]:
    """(core.img LBA, boot drive) from a GRUB boot.img sector.

    boot_hybrid.img (grub-mkrescue's MBR) keeps its pointer at 0x1B0 instead, where xorriso's
    ``--grub2-mbr`` writes "the boot image's 512-byte block address + 4" (xorriso manual);
    0x5C is then zero.
    """
    lba = struct.unpack_from("<Q", sector, KERNEL_SECTOR_OFFSET)[0]
    if lba == 0:
        lba = struct.unpack_from("<Q", sector, HYBRID_KERNEL_SECTOR_OFFSET)[0]
    return lba, sector[BOOT_DRIVE_OFFSET]


def read_blocklists(diskboot: bytes) -> list[Blocklist]:
    """The blocklists of a diskboot.img sector, top (0x1F4) down, until a zero count."""
    out: list[Blocklist] = []
    pos = FIRST_BLOCKLIST
    # diskboot's code occupies the start of the sector: stop well before it.
    while pos >= 0x100:
        start, count, segment = struct.unpack_from("<QHH", diskboot, pos)
        if count == 0:
            break
        out.append(Blocklist(start, count, segment))
        pos -= BLOCKLIST_SIZE
    return out


#: Work bounds of the search for the LZMA stream: full raw-decoder attempts (after a 16 KiB
#: probe), and bytes they may output in all (a bogus payload once cost 3,553 attempts and
#: 50 minutes).
MAX_LZMA_ATTEMPTS = 16
MAX_LZMA_OUTPUT = 96 << 20
_PROBE = 16 << 10


class _Bound(Exception):
    """The LZMA search hit its work bound."""


def _candidates(body: bytes, compressed: int, limit: int) -> list[int]:
    """Where the raw stream may start, likeliest first. grub-mkimage appends the compressed
    kernel right after lzma_decompress.img and the blocklists cover whole sectors, so the
    stream starts in the last 512 bytes before ``len(body) - compressed``; an LZMA
    range-coder stream always starts with a zero byte."""
    tail = len(body) - compressed
    first = [i for i in range(tail, max(0x20, tail - SECTOR) - 1, -1)
             if 0x20 <= i < limit and body[i] == 0]
    seen = set(first)
    return first + [i for i in range(0x20, limit) if body[i] == 0 and i not in seen]


def _decompress(body: bytes, compressed: int, uncompressed: int) -> bytes | None:
    """Find the raw LZMA stream after the decompressor and inflate it (None when it does not
    decompress; :class:`_Bound` when the work bound is hit first)."""
    filters = [{"id": lzma.FILTER_LZMA1, "lc": 3, "lp": 0, "pb": 2, "dict_size": 1 << 16}]
    limit = min(len(body), _MAX_DECOMPRESSOR + 1)
    attempts = work = 0
    probe = min(uncompressed, _PROBE)
    for start in _candidates(body, compressed, limit):
        stream = body[start:start + compressed]
        if len(stream) < compressed:
            continue
        if attempts >= MAX_LZMA_ATTEMPTS or work >= MAX_LZMA_OUTPUT:
            raise _Bound(f"core.img: no LZMA stream found within the work bound "
                         f"({attempts} full attempts, {work} bytes decoded)")
        try:
            # A cheap probe first: a wrong start almost always fails within a few KiB.
            dec = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
            out = dec.decompress(stream, max_length=probe)
            work += len(out)
            if len(out) < uncompressed:
                attempts += 1
                out += dec.decompress(b"", max_length=uncompressed - len(out))
                work += len(out) - probe
        except lzma.LZMAError:
            continue
        if len(out) == uncompressed:
            return out
    xz_at = body.find(b"\xfd7zXZ\x00", 0, limit)
    if xz_at >= 0:
        try:
            out = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(
                body[xz_at:], max_length=MAX_UNCOMPRESSED)
            return out
        except lzma.LZMAError:
            return None
    return None


def _elf_modname(elf: bytes) -> str | None:
    """The ``.modname`` section of a GRUB ELF32 module (bounded reads; None if absent)."""
    if len(elf) < 52 or elf[:4] != b"\x7fELF" or elf[4] != 1:
        return None
    shoff, = struct.unpack_from("<I", elf, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x2E)
    if shentsize < 40 or shnum > 256 or shoff + shnum * shentsize > len(elf) or shstrndx >= shnum:
        return None

    def section(i: int) -> tuple[int, int, int]:
        name, _t, _f, _a, off, size = struct.unpack_from("<IIIIII", elf, shoff + i * shentsize)
        return name, off, size

    _n, stroff, strsize = section(shstrndx)
    strtab = elf[stroff:stroff + strsize]
    for i in range(shnum):
        name, off, size = section(i)
        if strtab[name:name + 9] == b".modname\x00" and off + size <= len(elf):
            return elf[off:off + size].split(b"\0", 1)[0].decode("ascii", "replace")
    return None


#: Work bound: tar entries of a memdisk listed.
MAX_MEMDISK_FILES = 4096


def tar_names(data: bytes) -> list[str]:
    """The member names of a ustar/v7 tar held in ``data`` (GRUB's memdisk with its ``tar``
    module), at most :data:`MAX_MEMDISK_FILES`; stops at the first zero or bad header."""
    names: list[str] = []
    at = 0
    while at + 512 <= len(data) and len(names) < MAX_MEMDISK_FILES:
        head = data[at:at + 512]
        if head[:1] == b"\0":
            break
        try:
            size = int(head[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            break
        name = head[:100].split(b"\0", 1)[0]
        if head[257:262] == b"ustar" and head[345:500].strip(b"\0"):
            name = head[345:500].split(b"\0", 1)[0] + b"/" + name
        names.append(name.decode("utf-8", "replace").lstrip("./"))
        at += 512 + (size + 511) // 512 * 512
    return names


def parse_modules(kernel: bytes) -> dict[str, Any]:
    """Prefix, module names, embedded config and memdisk size from a decompressed core."""
    result: dict[str, Any] = {"prefix": None, "modules": [], "config": None, "memdisk": None}
    pos = -1
    # The module info follows the kernel: the last "mimg" whose header is consistent.
    at = len(kernel)
    while True:
        at = kernel.rfind(MODULE_MAGIC, 0, at)
        if at < 0 or at + 12 > len(kernel):
            break
        offset, size = struct.unpack_from("<II", kernel, at + 4)
        if offset == 12 and 12 <= size <= len(kernel) - at:
            pos = at
            break
    if pos < 0:
        raise ValueError("no module area ('mimg') in the decompressed core.img")
    _off, total = struct.unpack_from("<II", kernel, pos + 4)
    end = pos + total
    cur = pos + 12
    while cur + 8 <= end:
        mtype, msize = struct.unpack_from("<II", kernel, cur)
        if msize < 8 or cur + msize > end:
            break
        body = kernel[cur + 8:cur + msize]
        kind = _TYPES.get(mtype)
        if kind == "elf":
            name = _elf_modname(body)
            result["modules"].append(name or "?")
        elif kind == "prefix":
            result["prefix"] = body.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif kind == "config":
            result["config"] = body.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif kind == "memdisk":
            result["memdisk"] = len(body)
            result["memdisk_files"] = tar_names(body)
        cur += msize  # grub-mkimage already pads each module to its alignment
    return result


def assemble(disk: Reader, diskboot: bytes, lists: list[Blocklist]) -> bytes | None:
    """diskboot.img followed by the sectors its blocklists name (None if one runs off the
    disk). Callers bound the total count first."""
    chunks = [diskboot]
    for b in lists:
        if (b.start + b.count) * SECTOR > disk.size:
            return None
        chunks.append(disk.read(b.start * SECTOR, b.count * SECTOR))
    return b"".join(chunks)


def follow_core(disk: Reader, lba: int, boot_drive: int) -> CoreImage:
    """Read core.img from ``disk`` starting at ``lba`` (512-byte sectors, as BIOS reads)."""
    base = CoreImage(sector=lba, offset=lba * SECTOR, boot_drive=boot_drive)
    if lba == 0 or lba * SECTOR + SECTOR > disk.size:
        return _with(base, error=f"core.img sector {lba} is outside the disk")
    diskboot = disk.read(lba * SECTOR, SECTOR)
    magic = diskboot[:4].hex()
    if diskboot.count(0) == SECTOR:
        return _with(base, diskboot_magic=magic, error="core.img sector is all zeros")
    lists = read_blocklists(diskboot)
    base = _with(base, diskboot_magic=magic, blocklists=tuple(lists))
    if not diskboot.startswith(DISKBOOT_MAGIC):
        return _with(base, error=f"no diskboot.img magic at sector {lba} (found {magic})")
    total = sum(b.count for b in lists)
    if not lists or total > MAX_CORE_SECTORS:
        return _with(base, error=f"implausible blocklists ({len(lists)} lists, {total} sectors)")
    core = assemble(disk, diskboot, lists)
    if core is None:
        return _with(base, error="a blocklist runs past the end of the disk")
    head = core[SECTOR:]
    compressed, uncompressed = struct.unpack_from("<II", head, 0x08)
    base = _with(base, found=True, compressed_size=compressed, uncompressed_size=uncompressed)
    if not (0 < compressed <= len(head) and 0 < uncompressed <= MAX_UNCOMPRESSED):
        return _with(base, error="implausible compressed/uncompressed sizes in core.img")
    try:
        kernel = _decompress(head, compressed, uncompressed)
    except _Bound as exc:
        return _with(base, error=f"{exc} (work bound hit)")
    if kernel is None:
        return _with(base, error="core.img does not decompress (corrupt or unknown format)")
    try:
        info = parse_modules(kernel)
    except (ValueError, struct.error) as exc:
        return _with(base, error=str(exc))
    return _with(base, prefix=info["prefix"], modules=tuple(info["modules"]),
                 config=info["config"], memdisk_size=info["memdisk"],
                 memdisk_files=tuple(info.get("memdisk_files", ())))


def _with(core: CoreImage, **changes: Any) -> CoreImage:
    from dataclasses import replace

    return replace(core, **changes)
