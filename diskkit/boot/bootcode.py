"""Identify the boot code of an MBR or of a partition boot sector (VBR) from its bytes.

The signatures are the facts Boot Info Script (arvidjaar/bootinfoscript) uses: the first 2-8
bytes of the sector, refined by bytes 0x80-0x81 (and a few other offsets) to tell versions
apart. The table below is our own, written from those facts and checked against sectors written
by the real tools (grub-bios-setup, syslinux, xorriso, parted): see tests/boot/.

Pure: 512 bytes in, a frozen :class:`BootCode` out. Code that matches nothing is "unknown" and
carries the sha256 of its code area, so unknown loaders can be collected and added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

try:  # CPython's built-in SHA-256: hashlib loads OpenSSL's libcrypto (start-up time)
    from _sha256 import sha256  # type: ignore[import-not-found]  # (no stub: a C module)
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import sha256

#: MBR code area: bytes 0..0x1B7 (the disk signature is at 0x1B8, the table at 0x1BE).
MBR_CODE_END = 0x1B8
SIGNATURE_OFFSET = 0x1FE


@dataclass(frozen=True)
class BootCode:
    """What boot code a sector holds.

    ``loader`` is a stable id ("grub2", "grub-legacy", "syslinux", "isohybrid", "windows",
    "libparted", "mkfs-fat-stub", "none", "unknown", ...); ``description`` says which version
    when the bytes tell. ``offset`` is the sector's byte offset on the disk.
    """

    where: str
    offset: int
    loader: str
    description: str
    #: The word at 0x1FE is 0xAA55 (bytes 55 AA): the only thing SeaBIOS checks.
    signature: bool
    #: The code area is all zeros (nothing would run).
    code_zero: bool
    #: sha256 of the code area (hex), to collect unknown loaders.
    sha256: str
    #: The first 8 bytes and bytes 0x80-0x81, as evidence (hex).
    first_bytes: str = ""
    bytes_80: str = ""
    #: Sector 0 is a partition boot sector (a FAT/NTFS BIOS parameter block: a
    #: "superfloppy", the whole disk one filesystem): the code is the boot loader itself and
    #: loads no other sector of a partition table.
    superfloppy: bool = False

    @property
    def known(self) -> bool:
        """True when the code was identified (or is all zeros)."""
        return self.loader != "unknown"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, "boot")."""
        return {
            "where": self.where,
            "offset": self.offset,
            "loader": self.loader,
            "description": self.description,
            "signature": self.signature,
            "code_zero": self.code_zero,
            "sha256": self.sha256,
            "first_bytes": self.first_bytes,
            "bytes_80": self.bytes_80,
            "superfloppy": self.superfloppy,
        }


# (prefix of the sector, bytes 0x80-0x81 or None, loader id, description), first match wins.
_MBR_TABLE: list[tuple[str, str | None, str, str]] = [
    ("eb63", "0020", "grub2", "GRUB 2 boot.img (1.99 and later)"),
    ("eb63", "7c3c", "grub2", "GRUB 2 boot.img (1.97-1.98)"),
    ("eb63", None, "grub2", "GRUB 2 boot.img"),
    ("eb4c", None, "grub2", "GRUB 2 boot.img (1.96)"),
    # grub-mkrescue (xorriso) puts an Apple partition map's "ER" block at 0; its first bytes
    # decode to harmless instructions followed by a jump into GRUB's boot_hybrid.img.
    ("4552", "0020", "grub2", "GRUB 2 boot_hybrid.img under an Apple partition map header"),
    ("eb48", None, "grub-legacy", "GRUB Legacy stage1"),
    ("eb5e80", None, "grub4dos", "Grub4Dos"),
    ("eb5e90", None, "wee", "WEE"),
    ("eb5e00", None, "fbinst", "fbinst"),
    ("33c08ed0bc007cfb", None, "windows", "Windows 2000/XP/2003 MBR"),
    ("33c08e", None, "windows", "Windows MBR"),  # refined by _windows_version below
    ("33c090", None, "diskcryptor", "DiskCryptor"),
    ("33ed", "407c", "isohybrid", "syslinux isohybrid MBR (4.04)"),
    ("33ed", "83e1", "isohybrid", "syslinux isohybrid MBR with partition support (4.04)"),
    ("33ed", "cd13", "isohybrid", "syslinux isohybrid MBR with partition support (4.05+)"),
    ("33ed", "f7e1", "isohybrid", "syslinux isohybrid MBR (4.05+)"),
    ("33ed", None, "isohybrid", "syslinux isohybrid MBR"),
    ("fa31c0", "0069", "isohybrid", "syslinux isohybrid MBR (3.72-3.73)"),
    ("fa31c0", "e879", "isohybrid", "syslinux isohybrid MBR (3.74-3.80)"),
    ("fa31c0", None, "syslinux", "syslinux MBR (3.x-4.03)"),
    ("fa31ed", None, "isohybrid", "syslinux isohybrid MBR (3.72-4.03)"),
    ("fa31c9", None, "mbldr", "Master Boot LoaDeR"),
    ("fab80010", None, "libparted", "libparted MBR boot code (parted mklabel msdos)"),
    ("fab80000", None, "freedos", "FreeDOS (eXtended FDisk) MBR"),
    ("fc31c08ed031e48e", None, "install-mbr", "install-mbr / TestDisk MBR"),
    ("fc31c08ec08ed88e", None, "freebsd-boot0", "FreeBSD boot0"),
    ("31c08ed0bc007c8e", None, "generic-mbr", "NetBSD/SUSE generic MBR"),
    ("31c08ed0bc007cfb", None, "acer-pqservice", "Acer PQService MBR"),
    ("ea0500c007", None, "far-jump-07c0",
     "far jump to 07C0:0005 (OpenBSD's MBR, memtest86+'s boot sector and others)"),
    ("ea0501", None, "xosl", "XOSL"),
    ("ea1e", None, "truecrypt", "TrueCrypt boot loader"),
    ("eb04", None, "solaris", "Solaris"),
    ("eb31", None, "paragon", "Paragon"),
    ("0ebe", None, "thinkpad", "ThinkPad MBR"),
    ("33ff", None, "hp-gateway", "HP/Gateway MBR"),
    ("b800", None, "plop", "Plop boot manager"),
    ("fa33", None, "msdos", "MS-DOS 3.30 through Windows 95 MBR"),
    ("faeb", None, "lilo", "LILO"),
    ("fafc", None, "reactos", "ReactOS"),
    ("fc33", None, "gag", "GAG"),
    ("fceb", None, "bootit-ng", "BootIt NG"),
]

# syslinux MBRs starting 33 c0 fa: bytes 0x5B-0x5D (a call/jump target) tell which one.
_SYSLINUX_5B: dict[str, str] = {
    "0fb6c6": "syslinux GPT MBR (gptmbr.bin, 5.10+)",
    "bb007c": "syslinux GPT MBR (gptmbr.bin, 4.04-5.01)",
    "e82101": "syslinux MBR (mbr.bin, 4.04-4.07)",
    "e83501": "syslinux MBR (mbr.bin, 5.00+)",
    "e81001": "syslinux alternative MBR (altmbr.bin)",
}

# Partition boot sectors: bytes 0x80-0x81 (Boot Info Script's VBR table, the common entries).
_VBR_80: dict[str, tuple[str, str]] = {
    "0020": ("grub2", "GRUB 2 boot.img (1.99 and later)"),
    "7c3c": ("grub2", "GRUB 2 boot.img (1.97-1.98)"),
    "48b4": ("grub2", "GRUB 2 boot.img (1.96)"),
    "0488": ("grub2-core", "GRUB 2 core.img"),
    "31d2": ("grub2-core", "GRUB 2 core.img"),
    "aa75": ("grub-legacy", "GRUB Legacy stage1"),
    "5272": ("grub-legacy", "GRUB Legacy stage1"),
    "31c0": ("syslinux", "SYSLINUX 4.03 or later"),
    "b106": ("syslinux", "SYSLINUX 4.00-4.02"),
    "0689": ("syslinux", "SYSLINUX 3.00-3.52"),
    "08cd": ("windows", "Windows 2000/XP NTFS boot sector"),
    "8ec0": ("windows", "Windows XP NTFS boot sector"),
    "fa33": ("windows", "Windows XP NTFS boot sector"),
    "e9d8": ("windows", "Windows Vista/7 NTFS boot sector"),
    "0745": ("windows", "Windows Vista FAT32 boot sector"),
    "6616": ("windows", "Windows 7/2008 FAT16 boot sector"),
    "7405": ("windows", "Windows 7/2008 FAT32 boot sector"),
    "f6c1": ("windows", "Windows 8/2012 FAT32 boot sector"),
    "b6d1": ("windows", "Windows XP FAT32 boot sector"),
    "0bd0": ("msdos", "MSWIN4.1 FAT32 boot sector"),
    "7cc6": ("msdos", "MSWIN4.1 FAT32 boot sector"),
    "089e": ("msdos", "MSDOS5.0 FAT16 boot sector"),
    "638b": ("freedos", "FreeDOS FAT32 boot sector"),
    "2a00": ("reactos", "ReactOS boot sector"),
}

# Windows NTFS boot sectors with 55 AA at 0x80: bytes 0x110-0x111 give the version.
_NTFS_110: dict[str, str] = {
    "9090": "Windows Vista NTFS boot sector",
    "2810": "Windows 7/2008 NTFS boot sector",
    "0a13": "Windows 8/2012 NTFS boot sector",
}

_MKFS_FAT_STUB = b"This is not a bootable disk"


def _windows_version(sector: bytes) -> str:
    # "TCPA" string (Trusted Platform support) at a version-specific offset: byte 0xF0-0xF1.
    tag = sector[0xF0:0xF2].hex()
    if sector[:8].hex() == "33c08ed0bc007c8e":
        if tag == "fb54":
            return "Windows Vista MBR"
        if tag == "4350":
            return "Windows 7/8/10/2012+ MBR"
    return "Windows MBR"


def _match_mbr(sector: bytes) -> tuple[str, str] | None:
    head = sector[:8].hex()
    b80 = sector[0x80:0x82].hex()
    if head.startswith("33c0fa"):
        desc = _SYSLINUX_5B.get(sector[0x5B:0x5E].hex())
        return ("syslinux", desc) if desc else None
    for prefix, at80, loader, desc in _MBR_TABLE:
        if head.startswith(prefix) and (at80 is None or at80 == b80):
            if loader == "windows" and prefix == "33c08e":
                desc = _windows_version(sector)
            return loader, desc
    return None


def _match_vbr(sector: bytes) -> tuple[str, str] | None:
    b80 = sector[0x80:0x82].hex()
    if sector[:2].hex() == "eb63" and b80 in ("0020", "7c3c"):
        return _VBR_80[b80]
    if b80 == "55aa" and sector[0x82:0x84].hex() == "7506":
        desc = _NTFS_110.get(sector[0x110:0x112].hex())
        if desc:
            return "windows", desc
    if _MKFS_FAT_STUB in sector:
        return "mkfs-fat-stub", "mkfs.fat's stub: prints 'This is not a bootable disk'"
    hit = _VBR_80.get(b80)
    if sector[3:11] == b"SYSLINUX":  # syslinux --install writes its OEM name
        return "syslinux", hit[1] if hit and hit[0] == "syslinux" else "SYSLINUX boot sector"
    if hit:
        return hit
    return _match_mbr(sector)


def has_bpb(sector: bytes) -> bool:
    """A FAT/NTFS boot sector: a short or near jump over a BIOS parameter block whose bytes
    per sector (0x0B) is a power of two from 512 to 4096 and whose sectors per cluster (0x0D)
    is a power of two (what a BIOS boot sector of a filesystem, not an MBR, starts with)."""
    if not ((sector[0] == 0xEB and sector[2] == 0x90) or sector[0] == 0xE9):
        return False
    bps = int.from_bytes(sector[0x0B:0x0D], "little")
    spc = sector[0x0D]
    return bps in (512, 1024, 2048, 4096) and spc != 0 and spc & (spc - 1) == 0


def identify(sector: bytes, *, where: str = "mbr", offset: int = 0,
             vbr: bool = False) -> BootCode:
    """Identify the boot code in the 512-byte ``sector`` (short input is zero-padded).

    ``vbr`` selects the partition boot sector rules: the code area there excludes the BIOS
    parameter block of FAT/NTFS (bytes 3..0x59), and bytes 0x80-0x81 are looked at first.
    """
    sector = bytes(sector[:512]).ljust(512, b"\0")
    signature = sector[SIGNATURE_OFFSET:SIGNATURE_OFFSET + 2] == b"\x55\xaa"
    # In a VBR the jump + BPB (up to 0x5A for FAT32, the largest) are data, not code.
    code = sector[:3] + sector[0x5A:SIGNATURE_OFFSET] if vbr else sector[:MBR_CODE_END]
    code_zero = code.count(0) == len(code)
    digest = sha256(code).hexdigest()
    superfloppy = False
    if code_zero:
        loader, desc = "none", "no boot code (all zeros)"
    else:
        hit = _match_vbr(sector) if vbr else _match_mbr(sector)
        if hit is None and not vbr and has_bpb(sector):
            # Not an MBR: a filesystem's boot sector at sector 0 (mkfs.fat, syslinux on a
            # whole-disk FAT): judge it by the partition boot sector rules.
            hit = _match_vbr(sector)
            superfloppy = hit is not None
        loader, desc = hit if hit else ("unknown", "unknown boot code")
    return BootCode(
        where=where,
        offset=offset,
        loader=loader,
        description=desc,
        signature=signature,
        code_zero=code_zero,
        sha256=digest,
        first_bytes=sector[:8].hex(),
        bytes_80=sector[0x80:0x82].hex(),
        superfloppy=superfloppy,
    )
