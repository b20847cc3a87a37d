"""Which operating system a root holds: os-release and the older release files, the
libosinfo short id, the hostname. Pure: a GuestFS in, small frozen records out."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from diskkit.guest.vfs import GuestFS, Source, read_text

#: Release files are small; a larger one is cut here.
RELEASE_LIMIT = 64 << 10

#: os-release ID -> the distro name libguestfs (virt-inspector) reports.
_DISTRO = {
    "debian": "debian", "ubuntu": "ubuntu", "fedora": "fedora", "rhel": "rhel",
    "centos": "centos", "rocky": "rocky", "almalinux": "almalinux", "ol": "oraclelinux",
    "opensuse-leap": "opensuse", "opensuse-tumbleweed": "opensuse", "opensuse": "opensuse",
    "sles": "sles", "sled": "sles", "alpine": "alpinelinux", "arch": "archlinux",
    "gentoo": "gentoo", "linuxmint": "linuxmint", "mageia": "mageia", "void": "voidlinux",
    "altlinux": "altlinux", "kali": "kalilinux", "cirros": "cirros", "frugalware": "frugalware",
    "pld": "pldlinux", "clear-linux-os": "clearlinux", "neokylin": "neokylin",
}


@dataclass(frozen=True)
class Identity:
    """The OS identity of one Linux (or other Unix) root."""

    distro: str = "unknown"
    product_name: str | None = None
    major: int = 0
    minor: int = 0
    version_id: str | None = None
    codename: str | None = None
    id_like: tuple[str, ...] = ()
    osinfo: str | None = None
    #: os-release's PRETTY_NAME (product_name follows libguestfs, which differs for Debian).
    pretty_name: str | None = None
    #: Field name -> where it was read.
    evidence: dict[str, Source] = field(default_factory=dict, hash=False, compare=False)


def parse_os_release(text: str) -> dict[str, tuple[str, int]]:
    """KEY=value pairs of an os-release file (shell quoting), each with its 1-based line."""
    out: dict[str, tuple[str, int]] = {}
    for n, line in enumerate(text.splitlines()[:512], 1):
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            continue
        try:
            parts = shlex.split(raw[:4096], posix=True)
        except ValueError:
            parts = [raw.strip("\"'")]
        out[key] = (" ".join(parts), n)
    return out


def parse_version(text: str) -> tuple[int, int]:
    """(major, minor) from "12", "22.04", "9.4", "15-SP5", "3.18.4"; (0, 0) when none."""
    m = re.match(r"\s*(\d{1,6})(?:[.\-_](?:SP)?(\d{1,6}))?", text, re.I)
    if not m:
        return 0, 0
    return int(m.group(1)), int(m.group(2) or 0)


#: distro -> libosinfo short id pattern (libguestfs' rules), for a known major version.
_OSINFO = {
    "debian": "debian{major}", "ubuntu": "ubuntu{major}.{minor:02d}", "fedora": "fedora{major}",
    "rhel": "rhel{major}.{minor}", "rocky": "rocky{major}.{minor}",
    "almalinux": "almalinux{major}", "oraclelinux": "ol{major}.{minor}",
    "alpinelinux": "alpinelinux{major}.{minor}",
}


def _centos(major: int, minor: int, product: str) -> str:
    if "stream" in product:
        return f"centos-stream{major}"
    if major >= 8:
        return f"centos{major}"
    return "centos7.0" if major == 7 else f"centos{major}.{minor}"


def _suse(distro: str, major: int, minor: int, product: str) -> str | None:
    if distro == "sles":
        return f"sles{major}sp{minor}" if minor else f"sles{major}"
    if "tumbleweed" in product:
        return "opensusetumbleweed"
    return f"opensuse{major}.{minor}" if major >= 42 or major == 15 else None


def osinfo_id(distro: str, major: int, minor: int, product: str | None = None) -> str | None:
    """The libosinfo short id libguestfs derives for a Linux distro and version, or None."""
    p = (product or "").lower()
    if distro in ("archlinux", "gentoo", "voidlinux"):
        return distro
    if distro == "opensuse" or (distro == "sles" and major):
        return _suse(distro, major, minor, p)
    if not major or (distro == "debian" and major < 4):
        return None
    if distro == "centos":
        return _centos(major, minor, p)
    pattern = _OSINFO.get(distro)
    return pattern.format(major=major, minor=minor) if pattern else None


def _legacy(fs: GuestFS) -> Identity | None:
    """Release files of systems older than os-release."""
    for path, distro in (("/etc/redhat-release", None), ("/etc/debian_version", "debian"),
                         ("/etc/SuSE-release", "sles"), ("/etc/alpine-release", "alpinelinux")):
        text = read_text(fs, path, RELEASE_LIMIT)
        if not text or not text.strip():
            continue
        first = text.strip().splitlines()[0].strip()
        src = Source(path, 1, first)
        if distro is None:
            low = first.lower()
            distro = ("fedora" if "fedora" in low else "centos" if "centos" in low
                      else "rocky" if "rocky" in low else "rhel")
            m = re.search(r"release (\d+(?:\.\d+)?)", first)
            major, minor = parse_version(m.group(1)) if m else (0, 0)
        else:
            major, minor = parse_version(first)
            if distro == "sles" and "opensuse" in first.lower():
                distro = "opensuse"
            if distro == "sles":
                vm = re.search(r"VERSION\s*=\s*(\d+)", text)
                pm = re.search(r"PATCHLEVEL\s*=\s*(\d+)", text)
                major = int(vm.group(1)) if vm else major
                minor = int(pm.group(1)) if pm else 0
        ev = {k: src for k in ("distro", "version", "product_name")}
        return Identity(distro, first, major, minor, f"{major}.{minor}", None, (),
                        osinfo_id(distro, major, minor, first), first, ev)
    return None


def read_identity(fs: GuestFS) -> Identity:
    """Identity from /etc/os-release (else /usr/lib/os-release, else the older files)."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = read_text(fs, path, RELEASE_LIMIT)
        if text is None:
            continue
        kv = parse_os_release(text)
        if "ID" not in kv:
            continue
        ident = kv["ID"][0].lower()
        distro = _DISTRO.get(ident, ident or "unknown")
        ev: dict[str, Source] = {}

        def src(key: str, kv: dict[str, tuple[str, int]] = kv, path: str = path,
                text: str = text) -> Source:
            line = kv[key][1]
            return Source(path, line, text.splitlines()[line - 1].strip())

        ev["distro"] = src("ID")
        vid = kv.get("VERSION_ID", (None, 0))[0]
        major, minor = parse_version(vid) if vid else (0, 0)
        if vid:
            ev["version"] = src("VERSION_ID")
        product = None
        for key in ("PRETTY_NAME", "NAME"):
            if key in kv:
                product = kv[key][0]
                ev["product_name"] = src(key)
                break
        codename = kv.get("VERSION_CODENAME", (None, 0))[0] or None
        like = tuple(kv.get("ID_LIKE", ("", 0))[0].split())
        if ident == "centos" and "stream" in (kv.get("NAME", ("", 0))[0] or "").lower():
            product = product or "CentOS Stream"
        pretty = kv["PRETTY_NAME"][0] if "PRETTY_NAME" in kv else None
        if distro == "debian":
            # As libguestfs does: a point release in /etc/debian_version ("12.15") gives the
            # minor version and the product name; testing/sid ("trixie/sid") keeps os-release
            dv = read_text(fs, "/etc/debian_version", RELEASE_LIMIT)
            first = dv.strip().splitlines()[0].strip() if dv and dv.strip() else ""
            if re.fullmatch(r"\d+\.\d+", first):
                major, minor = parse_version(first)
                product = first
                src_dv = Source("/etc/debian_version", 1, first)
                ev["version"] = ev["product_name"] = src_dv
        return Identity(distro, product, major, minor, vid, codename, like,
                        osinfo_id(distro, major, minor, product), pretty, ev)
    return _legacy(fs) or Identity()


def read_hostname(fs: GuestFS) -> tuple[str | None, Source | None]:
    """The hostname: /etc/hostname, else /etc/HOSTNAME, else HOSTNAME= in
    /etc/sysconfig/network, else hostname= in /etc/conf.d/hostname (Gentoo, Alpine)."""
    for path in ("/etc/hostname", "/etc/HOSTNAME"):
        text = read_text(fs, path, 4096)
        if text is None:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if s and not s.startswith("#"):
                return s[:255], Source(path, n, line.strip())
    for path, key in (("/etc/sysconfig/network", "HOSTNAME"),
                      ("/etc/conf.d/hostname", "hostname")):
        text = read_text(fs, path, RELEASE_LIMIT)
        if text is None:
            continue
        kv = parse_os_release(text)
        if key in kv and kv[key][0]:
            return kv[key][0][:255], Source(path, kv[key][1], text.splitlines()[kv[key][1] - 1])
    return None, None
