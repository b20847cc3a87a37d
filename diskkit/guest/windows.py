"""A Windows root: identity from the SOFTWARE hive, drivers and hostname from SYSTEM, the
kernel's architecture from ntoskrnl.exe's PE header, cloudbase-init.

Hives are read with hivex (Debian's python3-hivex): the hive's bytes (at most ``MAX_HIVE``)
are handed to it through an anonymous memory file, so nothing is written to the host's disk.
hivex itself bounds subkeys, values and value sizes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from diskkit.guest.binfmt import pe_arch
from diskkit.guest.vfs import GuestFS, Source, join, listdir, read_bytes

MAX_HIVE = 256 << 20
#: Services whose presence and Start value matter to a KVM guest.
DRIVERS = ("viostor", "vioscsi", "netkvm", "balloon", "vioser", "pvpanic", "stornvme",
           "storahci", "intelide", "atapi", "cloudbase-init", "QEMU-GA")
_START = {0: "boot", 1: "system", 2: "automatic", 3: "manual", 4: "disabled"}


@dataclass(frozen=True)
class WindowsService:
    """A service key in the current control set."""

    name: str
    start: int | None
    image_path: str | None
    source: Source

    @property
    def start_name(self) -> str | None:
        """"boot", "system", "automatic", "manual", "disabled"."""
        return _START.get(self.start) if self.start is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "start": self.start, "start_name": self.start_name,
                "image_path": self.image_path, "source": self.source.to_dict()}


@dataclass(frozen=True)
class WindowsInfo:
    """What the hives of one Windows root say."""

    systemroot: str
    product_name: str | None = None
    major: int = 0
    minor: int = 0
    build: str | None = None
    display_version: str | None = None
    edition: str | None = None
    installation_type: str | None = None
    hostname: str | None = None
    arch: str | None = None
    control_set: str | None = None
    services: tuple[WindowsService, ...] = ()
    cloudbase_init: bool = False
    osinfo: str | None = None
    problems: tuple[str, ...] = ()
    evidence: dict[str, Source] = field(default_factory=dict, hash=False, compare=False)

    def service(self, name: str) -> WindowsService | None:
        """The service ``name`` (case-insensitive), if installed."""
        return next((s for s in self.services if s.name.lower() == name.lower()), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"systemroot": self.systemroot, "product_name": self.product_name,
                "major": self.major, "minor": self.minor, "build": self.build,
                "display_version": self.display_version, "edition": self.edition,
                "installation_type": self.installation_type, "hostname": self.hostname,
                "arch": self.arch, "control_set": self.control_set,
                "services": [s.to_dict() for s in self.services],
                "cloudbase_init": self.cloudbase_init, "osinfo": self.osinfo,
                "problems": list(self.problems)}


def _ci(fs: GuestFS, directory: str, name: str) -> str | None:
    """``directory``/``name`` matched case-insensitively (as Windows does)."""
    want = name.lower()
    for n in listdir(fs, directory, 100_000):
        if n.lower() == want:
            return join(directory, n)
    return None


def _ci_path(fs: GuestFS, *parts: str) -> str | None:
    cur = "/"
    for p in parts:
        nxt = _ci(fs, cur, p)
        if nxt is None:
            return None
        cur = nxt
    return cur


def find_systemroot(fs: GuestFS) -> str | None:
    """The Windows directory of this filesystem (\\Windows, \\WINNT) holding
    System32\\config\\SOFTWARE, or None."""
    for top in ("Windows", "WINNT"):
        root = _ci(fs, "/", top)
        if root and _ci_path(fs, *root.strip("/").split("/"), "System32", "config", "SOFTWARE"):
            return root
    return None


@contextlib.contextmanager
def _hive(data: bytes) -> Iterator[Any]:
    import hivex  # type: ignore[import-untyped]

    class _Hive(hivex.Hivex):
        """hivex.Hivex whose __del__ does not fail after a failed open."""

        def __del__(self) -> None:
            if hasattr(self, "_o"):
                super().__del__()

    if len(data) < 0x2000 or data[:4] != b"regf" or data[0x1000:0x1004] != b"hbin":
        raise RuntimeError("not a registry hive (no regf header and first hbin)")
    fd = os.memfd_create("diskkit-hive", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        pos = 0
        while pos < len(data):
            pos += os.write(fd, view[pos:pos + (16 << 20)])
        yield _Hive(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _child(h: Any, node: Any, path: str) -> Any:
    for part in path.split("\\"):
        if not node:
            return None
        node = h.node_get_child(node, part)
    return node


def _value(h: Any, node: Any, key: str) -> str | int | None:
    """A value as str (REG_SZ/EXPAND_SZ) or int (DWORD/QWORD); None when absent."""
    if not node:
        return None
    try:
        v = h.node_get_value(node, key)
    except RuntimeError:
        return None
    if not v:
        return None
    t, _ = h.value_type(v)
    try:
        if t in (1, 2):
            return str(h.value_string(v))
        if t in (4, 5):
            return int(h.value_dword(v))
        if t == 11:
            return int(h.value_qword(v))
    except RuntimeError:
        return None
    return None


def _osinfo(major: int, minor: int, build: str | None, itype: str | None,
            product: str | None) -> str | None:
    server = (itype or "").lower().startswith("server") or "server" in (product or "").lower()
    b = int(build) if build and build.isdigit() else 0
    if major == 10:
        if server:
            return "win2k22" if b >= 20348 else "win2k19" if b >= 17763 else "win2k16"
        return "win11" if b >= 22000 else "win10"
    table = {(6, 3): ("win8.1", "win2k12r2"), (6, 2): ("win8", "win2k12"),
             (6, 1): ("win7", "win2k8r2"), (6, 0): ("winvista", "win2k8"),
             (5, 2): ("winxp", "win2k3"), (5, 1): ("winxp", "winxp")}
    pair = table.get((major, minor))
    return pair[1 if server else 0] if pair else None


_CV = "Microsoft\\Windows NT\\CurrentVersion"
_CV_VALUES = (("ProductName", "product_name"), ("CurrentBuild", "build"),
              ("CurrentBuildNumber", "build"), ("DisplayVersion", "display_version"),
              ("EditionID", "edition"), ("InstallationType", "installation_type"),
              ("CurrentMajorVersionNumber", "major"), ("CurrentMinorVersionNumber", "minor"),
              ("CurrentVersion", "current_version"))


def _read_software(h: Any, path: str, info: dict[str, Any], ev: dict[str, Source]) -> bool:
    """CurrentVersion's values into ``info``; returns whether Cloudbase-Init's key exists."""
    node = _child(h, h.root(), _CV)
    for key, name in _CV_VALUES:
        val = _value(h, node, key)
        if val is not None and name not in info:
            info[name] = val
            ev[name] = Source(path, None, f"HKLM\\SOFTWARE\\{_CV}\\{key}")
    if "major" not in info and isinstance(info.get("current_version"), str):
        cvs = str(info["current_version"]).split(".")
        if cvs[0].isdigit():  # before Windows 10: "6.3"
            info["major"] = int(cvs[0])
            info["minor"] = int(cvs[1]) if len(cvs) > 1 and cvs[1].isdigit() else 0
            ev["major"] = ev["current_version"]
    return bool(_child(h, h.root(), "Cloudbase Solutions\\Cloudbase-Init"))


def _read_system(h: Any, path: str, info: dict[str, Any], ev: dict[str, Source]) -> None:
    """The current control set, the DRIVERS services and the computer name into ``info``."""
    cur = _value(h, _child(h, h.root(), "Select"), "Current")
    cur = cur if isinstance(cur, int) and 0 < cur < 1000 else 1
    control_set = info["control_set"] = f"ControlSet{cur:03d}"
    cs = _child(h, h.root(), control_set)
    svc = _child(h, cs, "Services") if cs else None
    services = info.setdefault("services", [])
    for name in DRIVERS:
        node = _child(h, svc, name) if svc else None
        if node:
            start = _value(h, node, "Start")
            img = _value(h, node, "ImagePath")
            services.append(WindowsService(
                h.node_name(node), start if isinstance(start, int) else None,
                img if isinstance(img, str) else None,
                Source(path, None, f"HKLM\\SYSTEM\\{control_set}\\Services\\"
                       f"{h.node_name(node)}\\Start")))
    hn = _value(h, _child(h, cs, "Control\\ComputerName\\ComputerName") if cs else None,
                "ComputerName")
    if isinstance(hn, str):
        info["hostname"] = hn
        ev["hostname"] = Source(path, None, f"HKLM\\SYSTEM\\{control_set}\\Control"
                                "\\ComputerName\\ComputerName\\ComputerName")


def read_windows(fs: GuestFS, systemroot: str) -> WindowsInfo:
    """Identity, services and architecture of the Windows installation at ``systemroot``."""
    parts = systemroot.strip("/").split("/")
    problems: list[str] = []
    ev: dict[str, Source] = {}
    info: dict[str, Any] = {}
    cloudbase = False
    for hive in ("SOFTWARE", "SYSTEM"):
        path = _ci_path(fs, *parts, "System32", "config", hive)
        if path is None:
            continue
        try:
            with _hive(read_bytes(fs, path, MAX_HIVE) or b"") as h:
                if hive == "SOFTWARE":
                    cloudbase = _read_software(h, path, info, ev)
                else:
                    _read_system(h, path, info, ev)
        except (RuntimeError, OSError) as exc:
            problems.append(f"{path}: hivex cannot read it ({exc})")
    services: list[WindowsService] = info.get("services", [])
    cloudbase = cloudbase or any(s.name.lower() == "cloudbase-init" for s in services) or \
        _ci_path(fs, "Program Files", "Cloudbase Solutions", "Cloudbase-Init") is not None
    arch = None
    nt = _ci_path(fs, *parts, "System32", "ntoskrnl.exe")
    if nt:
        arch = pe_arch(read_bytes(fs, nt, 4096) or b"")
        if arch:
            ev["arch"] = Source(nt, None, "PE COFF header Machine")
    major = int(info.get("major", 0) or 0)
    minor = int(info.get("minor", 0) or 0)
    build = str(info["build"]) if "build" in info else None
    product = info.get("product_name")

    def text(key: str) -> str | None:
        return str(info[key]) if info.get(key) is not None else None

    return WindowsInfo(
        systemroot, text("product_name"), major, minor, build, text("display_version"),
        text("edition"), text("installation_type"), text("hostname"), arch,
        text("control_set"), tuple(services), cloudbase,
        _osinfo(major, minor, build, info.get("installation_type"), product),
        tuple(problems), ev)
