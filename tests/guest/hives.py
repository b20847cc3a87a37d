"""Build Windows registry hives at test time: a minimal empty hive made byte by byte (the
layout hivex's own images/minimal has: base block, one hbin with a root nk and its sk), then
filled with the real ``hivexregedit --merge`` from a .reg file."""

from __future__ import annotations

import pathlib
import struct

from diskkit.runner import run


def _cell(body: bytes) -> bytes:
    size = (4 + len(body) + 7) & ~7
    return struct.pack("<i", -size) + body + b"\0" * (size - 4 - len(body))


def minimal_hive() -> bytes:
    """An empty hive: a root key named ROOT with one security cell."""
    root_off = 0x20
    name = b"ROOT"
    nk_len = (4 + 76 + len(name) + 7) & ~7
    sk_off = root_off + nk_len
    desc = struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 0)  # revision 1, self-relative
    nk = struct.pack("<2sH8sIIIIIIIIIIHHIIIIHH", b"nk", 0x2C, b"\0" * 8, 0, 0, 0, 0,
                     0xFFFFFFFF, 0xFFFFFFFF, 0, 0xFFFFFFFF, sk_off, 0xFFFFFFFF, 0, 0, 0, 0, 0,
                     0, len(name), 0) + name
    sk = struct.pack("<2sHIIII", b"sk", 0, sk_off, sk_off, 1, len(desc)) + desc
    cells = _cell(nk) + _cell(sk)
    free = 0x1000 - 0x20 - len(cells)
    hbin = struct.pack("<4sII20s", b"hbin", 0, 0x1000, b"\0" * 20) + cells + \
        struct.pack("<i", free) + b"\0" * (free - 4)
    head = bytearray(0x1000)
    struct.pack_into("<4sIIQIIIIIII", head, 0, b"regf", 1, 1, 0, 1, 3, 0, 1, root_off,
                     0x1000, 1)
    csum = 0
    for (w,) in struct.iter_unpack("<I", bytes(head[:0x1FC])):
        csum ^= w
    struct.pack_into("<I", head, 0x1FC, csum)
    return bytes(head) + hbin


def make_hive(path: pathlib.Path, prefix: str, reg: str) -> pathlib.Path:
    """Write a hive at ``path`` holding the keys of the .reg text ``reg`` (its key names
    start with ``prefix``, e.g. "HKEY_LOCAL_MACHINE\\\\SOFTWARE")."""
    path.write_bytes(minimal_hive())
    regfile = path.with_suffix(".reg")
    # hivexregedit creates a key only under an existing parent: declare every ancestor first
    keys = [line.strip()[1:-1] for line in reg.splitlines() if line.strip().startswith("[")]
    parents: list[str] = []
    for key in keys:
        parts = key[len(prefix):].strip("\\").split("\\")
        for i in range(1, len(parts)):
            anc = prefix + "\\" + "\\".join(parts[:i])
            if anc not in parents and anc not in keys:
                parents.append(anc)
    head = "".join(f"[{k}]\n\n" for k in parents)
    regfile.write_text("Windows Registry Editor Version 5.00\n\n" + head + reg)
    run(["hivexregedit", "--merge", "--prefix", prefix, str(path), str(regfile)], timeout=60)
    return path
