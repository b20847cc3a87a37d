"""Architecture from an executable's header: ELF e_machine (and class), PE COFF Machine."""

from __future__ import annotations

import struct

#: ELF e_machine -> the architecture name libguestfs reports.
_ELF = {
    3: "i386", 62: "x86_64", 40: "arm", 183: "aarch64", 8: "mips", 20: "ppc", 21: "ppc64",
    22: "s390x", 243: "riscv64", 2: "sparc", 43: "sparc64", 50: "ia64", 258: "loongarch64",
}
#: PE COFF Machine -> architecture.
_PE = {0x14C: "i386", 0x8664: "x86_64", 0xAA64: "aarch64", 0x1C4: "arm", 0x200: "ia64"}


def elf_arch(head: bytes) -> str | None:
    """The architecture of an ELF file from its first 64 bytes; None if it is not ELF."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    cls, data = head[4], head[5]
    if data not in (1, 2):
        return None
    (machine,) = struct.unpack_from("<H" if data == 1 else ">H", head, 18)
    arch = _ELF.get(machine)
    if arch == "ppc64" and data == 1:
        return "ppc64le"
    if arch == "mips" and cls == 2:
        return "mips64"
    if arch == "riscv64" and cls == 1:
        return "riscv32"
    if arch == "s390x" and cls == 1:
        return "s390"
    return arch


def pe_arch(head: bytes) -> str | None:
    """The architecture of a PE file (an "MZ" header whose e_lfanew lies within ``head``)."""
    if len(head) < 0x40 or head[:2] != b"MZ":
        return None
    (lfanew,) = struct.unpack_from("<I", head, 0x3C)
    if lfanew + 6 > len(head) or head[lfanew:lfanew + 4] != b"PE\0\0":
        return None
    (machine,) = struct.unpack_from("<H", head, lfanew + 4)
    return _PE.get(machine)
