"""Installed packages: dpkg's status file, rpm's SQLite database, apk's installed file.

Bounds: at most ``MAX_DB`` bytes of a database are read; package counts stop at
``MAX_PACKAGES``. The rpm SQLite file is opened in memory (``sqlite3`` deserialize, read-only):
nothing is written to the host; a write-ahead log rpm has not checkpointed is not read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from diskkit.guest.vfs import GuestFS, Source, exists, read_bytes

MAX_DB = 256 << 20
MAX_PACKAGES = 1_000_000

#: Packages whose version is worth reporting (cloud readiness, boot).
NOTABLE = ("cloud-init", "cloudbase-init", "openssh-server", "qemu-guest-agent",
           "cloud-guest-utils", "cloud-utils-growpart", "cloud-initramfs-growroot",
           "initramfs-tools", "dracut", "grub-pc", "grub-efi-amd64", "grub2-pc", "grub2-efi-x64",
           "lvm2", "cryptsetup", "systemd", "shim-signed", "shim-x64")


@dataclass(frozen=True)
class Packages:
    """Package format, manager and count."""

    format: str | None = None
    manager: str | None = None
    count: int | None = None
    #: Name -> version of the NOTABLE packages installed.
    notable: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    #: Every installed package name -> version (bounded).
    installed: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    source: Source | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without the full list)."""
        return {"format": self.format, "manager": self.manager, "count": self.count,
                "notable": dict(self.notable),
                "source": self.source.to_dict() if self.source else None}


def parse_dpkg_status(text: str) -> dict[str, str]:
    """Installed packages (Status "... installed") -> Version, from dpkg's status file."""
    out: dict[str, str] = {}
    for para in text.split("\n\n"):
        name = version = status = None
        for line in para.splitlines():
            if line.startswith("Package:"):
                name = line[8:].strip()
            elif line.startswith("Version:"):
                version = line[8:].strip()
            elif line.startswith("Status:"):
                status = line[7:].split()
        if name and status and status[-1] == "installed":
            arch_free = name
            if arch_free not in out:
                out[arch_free] = version or ""
            if len(out) >= MAX_PACKAGES:
                break
    return out


def rpm_header(blob: bytes) -> dict[int, str | int]:
    """NAME (1000), VERSION (1001), RELEASE (1002) and EPOCH (1003) of an rpm header blob
    (as rpmdb stores it: index count, data length, 16-byte index entries, data)."""
    if len(blob) < 8:
        return {}
    il, dl = struct.unpack_from(">II", blob, 0)
    if il > 100_000 or 8 + 16 * il + dl > len(blob):
        return {}
    data = 8 + 16 * il
    out: dict[int, str | int] = {}
    for i in range(il):
        tag, typ, off, _count = struct.unpack_from(">IIiI", blob, 8 + 16 * i)
        if tag not in (1000, 1001, 1002, 1003) or not 0 <= off < dl:
            continue
        if typ == 6:  # STRING
            end = blob.find(b"\0", data + off, data + dl)
            if end >= 0:
                out[tag] = blob[data + off:end].decode("utf-8", "replace")
        elif typ == 4 and off + 4 <= dl:  # INT32
            out[tag] = struct.unpack_from(">I", blob, data + off)[0]
    return out


def _rpm_sqlite(data: bytes) -> dict[str, str] | None:
    """rpm's rpmdb.sqlite (opened in memory): name -> [epoch:]version-release of every
    header in the Packages table, gpg-pubkey entries left out."""
    import sqlite3  # only rpm databases need it

    if data[:16] == b"SQLite format 3\0" and len(data) >= 100 and data[18:20] == b"\2\2":
        # a WAL-mode file (rpm's default): mark the in-memory copy as rollback-journal mode,
        # which is what lets sqlite open it from memory (the WAL itself is not read)
        data = data[:18] + b"\1\1" + data[20:]
    try:
        con = sqlite3.connect(":memory:")
        try:
            con.deserialize(data)
            con.execute("PRAGMA query_only = ON")
            rows = con.execute("SELECT blob FROM Packages LIMIT ?", (MAX_PACKAGES,)).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    out: dict[str, str] = {}
    for (blob,) in rows:
        h = rpm_header(bytes(blob)) if isinstance(blob, bytes | bytearray | memoryview) else {}
        name = h.get(1000)
        if not isinstance(name, str) or name == "gpg-pubkey":
            continue
        ver = f"{h.get(1001, '')}-{h.get(1002, '')}"
        if h.get(1003):
            ver = f"{h[1003]}:{ver}"
        out[name] = ver
    return out


def parse_apk_installed(text: str) -> dict[str, str]:
    """apk's /lib/apk/db/installed: P: (name) and V: (version) per paragraph."""
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("P:"):
            name = line[2:].strip()
            out[name] = ""
        elif line.startswith("V:") and name:
            out[name] = line[2:].strip()
        if len(out) >= MAX_PACKAGES:
            break
    return out


def read_packages(fs: GuestFS) -> Packages:
    """What package database the root has and what it lists."""
    data = read_bytes(fs, "/var/lib/dpkg/status", MAX_DB)
    if data is not None:
        pk = parse_dpkg_status(data.decode("utf-8", "replace"))
        manager = "apt" if exists(fs, "/usr/bin/apt-get") else "dpkg"
        return Packages("deb", manager, len(pk), {k: v for k, v in pk.items() if k in NOTABLE},
                        pk, Source("/var/lib/dpkg/status"))
    for path in ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite"):
        data = read_bytes(fs, path, MAX_DB)
        if data is None:
            continue
        pk2 = _rpm_sqlite(data)
        return Packages("rpm", _rpm_manager(fs), len(pk2) if pk2 is not None else None,
                        {k: v for k, v in (pk2 or {}).items() if k in NOTABLE}, pk2 or {},
                        Source(path))
    for path in ("/var/lib/rpm/Packages", "/usr/lib/sysimage/rpm/Packages"):
        if exists(fs, path):  # Berkeley DB: the format is known, the count is not read
            return Packages("rpm", _rpm_manager(fs), None, {}, {}, Source(path))
    data = read_bytes(fs, "/lib/apk/db/installed", MAX_DB)
    if data is not None:
        pk3 = parse_apk_installed(data.decode("utf-8", "replace"))
        return Packages("apk", "apk", len(pk3), {k: v for k, v in pk3.items() if k in NOTABLE},
                        pk3, Source("/lib/apk/db/installed"))
    return Packages()


def _rpm_manager(fs: GuestFS) -> str:
    for tool, name in (("/usr/bin/dnf", "dnf"), ("/usr/bin/zypper", "zypper"),
                       ("/usr/bin/yum", "yum")):
        if exists(fs, tool):
            return name
    return "rpm"
