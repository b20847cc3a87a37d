"""Cloud readiness facts of a Linux root: cloud-init, growpart/growroot, sshd,
qemu-guest-agent, hard-coded MAC addresses, the serial console.

cloud-init's YAML is parsed with PyYAML's safe loader, at most ``MAX_YAML`` bytes per file
and ``MAX_FILES`` files per directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from diskkit.guest.vfs import GuestFS, Source, exists, join, listdir, read_text, readlink

MAX_YAML = 1 << 20
MAX_FILES = 256
SYSTEMD_DIRS = ("/etc/systemd/system",)
CLOUD_INIT_UNITS = ("cloud-init-local.service", "cloud-init.service", "cloud-config.service",
                    "cloud-final.service", "cloud-init.target", "cloud-init-main.service",
                    "cloud-init-network.service")


@dataclass(frozen=True)
class UnitState:
    """A systemd unit: links that enable it (in *.wants/ or *.requires/), masked."""

    name: str
    wanted_by: tuple[str, ...]
    masked: bool
    #: The unit file found (/etc, /lib or /usr/lib systemd/system), or None.
    path: str | None = None
    #: The unit file has no [Install] section: it is started by something else (udev,
    #: another unit), never "enabled" (systemctl says "static").
    static: bool = False

    @property
    def enabled(self) -> bool:
        """Linked from some target (or static: started by udev or another unit), not masked."""
        return (bool(self.wanted_by) or self.static) and not self.masked

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "enabled": self.enabled, "wanted_by": list(self.wanted_by),
                "masked": self.masked, "static": self.static, "path": self.path}


@dataclass(frozen=True)
class CloudInit:
    """cloud-init as installed in the guest."""

    installed: bool
    version: str | None
    disabled_file: bool
    units: tuple[UnitState, ...]
    #: datasource_list after cloud.cfg and cloud.cfg.d/*.cfg (None: not restricted).
    datasources: tuple[str, ...] | None
    datasource_source: Source | None
    growpart_module: bool
    problems: tuple[str, ...] = ()
    #: ``cloud-init=disabled`` on the default entry's kernel command line.
    disabled_cmdline: bool = False

    @property
    def enabled(self) -> bool:
        """Installed, not disabled (file or command line), and some cloud-init unit enabled."""
        return self.installed and not self.disabled_file and not self.disabled_cmdline and \
            any(u.enabled for u in self.units)

    @property
    def openstack(self) -> bool:
        """The datasources let cloud-init find OpenStack's metadata."""
        if self.datasources is None:
            return True
        return any(d.lower() in ("openstack", "configdrive", "ec2") for d in self.datasources)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"installed": self.installed, "version": self.version,
                "enabled": self.enabled, "disabled_file": self.disabled_file,
                "disabled_cmdline": self.disabled_cmdline,
                "units": [u.to_dict() for u in self.units],
                "datasources": list(self.datasources) if self.datasources is not None else None,
                "datasource_source": self.datasource_source.to_dict()
                if self.datasource_source else None,
                "openstack_datasource": self.openstack, "growpart_module": self.growpart_module,
                "problems": list(self.problems)}


@dataclass(frozen=True)
class MacAddress:
    """A MAC address written into network configuration."""

    mac: str
    source: Source

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"mac": self.mac, "source": self.source.to_dict()}


@dataclass(frozen=True)
class Service:
    """A piece of software that matters in a cloud: installed, its unit enabled."""

    installed: bool
    unit: UnitState | None
    source: Source | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"installed": self.installed,
                "enabled": self.unit.enabled if self.unit else None,
                "unit": self.unit.to_dict() if self.unit else None,
                "source": self.source.to_dict() if self.source else None}


@dataclass(frozen=True)
class CloudFacts:
    """Everything of this module for one root."""

    cloud_init: CloudInit
    growpart: bool
    growpart_source: Source | None
    growroot: bool
    sshd: Service
    qemu_guest_agent: Service
    macs: tuple[MacAddress, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"cloud_init": self.cloud_init.to_dict(), "growpart": self.growpart,
                "growpart_source": self.growpart_source.to_dict()
                if self.growpart_source else None,
                "growroot": self.growroot, "sshd": self.sshd.to_dict(),
                "qemu_guest_agent": self.qemu_guest_agent.to_dict(),
                "hardcoded_macs": [m.to_dict() for m in self.macs]}


def wants_index(fs: GuestFS) -> dict[str, list[str]]:
    """unit name -> the *.wants/*.requires links naming it under /etc/systemd/system."""
    out: dict[str, list[str]] = {}
    for base in SYSTEMD_DIRS:
        for d in listdir(fs, base, 1024):
            if d.endswith((".wants", ".requires")):
                for u in listdir(fs, join(base, d), 1024):
                    out.setdefault(u, []).append(join(base, d, u))
    return out


def unit_state(fs: GuestFS, unit: str,
               wants: dict[str, list[str]] | None = None) -> UnitState:
    """Where ``unit`` is linked from under /etc/systemd/system (*.wants, *.requires), whether
    it is masked, and whether its unit file is static (no [Install]). ``wants`` is
    :func:`wants_index` of ``fs`` (computed when not given)."""
    wanted = list((wants if wants is not None else wants_index(fs)).get(unit, ()))
    masked = any(readlink(fs, join(base, unit)) == "/dev/null" for base in SYSTEMD_DIRS)
    path = next((join(d, unit) for d in ("/etc/systemd/system", "/lib/systemd/system",
                                         "/usr/lib/systemd/system")
                 if exists(fs, join(d, unit))), None)
    static = False
    if path and not masked:
        text = read_text(fs, path, 64 << 10) or ""
        static = not re.search(r"^\s*\[Install\]", text, re.M) or not re.search(
            r"^\s*(WantedBy|RequiredBy|Alias|Also)\s*=", text, re.M)
    return UnitState(unit, tuple(wanted), masked, path, static)


def _yaml(fs: GuestFS, path: str, problems: list[str]) -> Any:
    text = read_text(fs, path, MAX_YAML)
    if text is None:
        return None
    import yaml  # type: ignore[import-untyped]  # (80 ms to import: only when there is YAML)

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problems.append(f"{path}: not valid YAML ({str(exc).splitlines()[0]})")
        return None


def _line_of(fs: GuestFS, path: str, key: str) -> Source:
    text = read_text(fs, path, MAX_YAML) or ""
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(key):
            return Source(path, n, line.strip())
    return Source(path)


def read_cloud_init(fs: GuestFS, version: str | None, cmdline: str | None = None,
                    wants: dict[str, list[str]] | None = None) -> CloudInit:
    """cloud-init's installation, enablement and datasource list."""
    installed = exists(fs, "/usr/bin/cloud-init") or version is not None
    problems: list[str] = []
    files = ["/etc/cloud/cloud.cfg"] + [
        join("/etc/cloud/cloud.cfg.d", n) for n in listdir(fs, "/etc/cloud/cloud.cfg.d",
                                                           MAX_FILES) if n.endswith(".cfg")]
    datasources: tuple[str, ...] | None = None
    dsrc = None
    growpart_module = False
    for path in files:
        doc = _yaml(fs, path, problems)
        if not isinstance(doc, dict):
            continue
        ds = doc.get("datasource_list")
        if isinstance(ds, list):
            datasources = tuple(str(x) for x in ds[:64])
            dsrc = _line_of(fs, path, "datasource_list")
        elif isinstance(ds, str):
            datasources = tuple(x.strip() for x in ds.strip("[] ").split(",") if x.strip())
            dsrc = _line_of(fs, path, "datasource_list")
        for key in ("cloud_init_modules", "cloud_config_modules"):
            mods = doc.get(key)
            if isinstance(mods, list) and any(
                    (m == "growpart" or (isinstance(m, list) and m and m[0] == "growpart"))
                    for m in mods):
                growpart_module = True
    wants = wants if wants is not None else wants_index(fs)
    units = tuple(st for st in (unit_state(fs, u, wants) for u in CLOUD_INIT_UNITS)
                  if st.path or st.wanted_by)
    return CloudInit(installed, version, exists(fs, "/etc/cloud/cloud-init.disabled"), units,
                     datasources, dsrc, growpart_module, tuple(problems),
                     "cloud-init=disabled" in (cmdline or "").split())


def _service(fs: GuestFS, binaries: tuple[str, ...], units: tuple[str, ...],
             wants: dict[str, list[str]]) -> Service:
    found = next((b for b in binaries if exists(fs, b)), None)
    states = [unit_state(fs, u, wants) for u in units]
    unit = next((s for s in states if s.enabled), None)
    if unit is None:
        unit = next((s for s in states if s.path), None)
    return Service(found is not None, unit, Source(found) if found else None)


_MAC = r"(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}"


def read_macs(fs: GuestFS) -> tuple[MacAddress, ...]:
    """MAC addresses pinned in udev rules, ifcfg files, netplan, NetworkManager, networkd."""
    out: list[MacAddress] = []

    def scan(path: str, pattern: str) -> None:
        text = read_text(fs, path, MAX_YAML)
        if text is None:
            return
        for n, line in enumerate(text.splitlines()[:10_000], 1):
            s = line.strip()
            if s.startswith("#"):
                continue
            m = re.search(pattern, s)
            if m:
                out.append(MacAddress(m.group(1).lower().replace("-", ":"), Source(path, n, s)))

    scan("/etc/udev/rules.d/70-persistent-net.rules", rf'ATTR\{{address\}}=="({_MAC})"')
    for d in ("/etc/sysconfig/network-scripts", "/etc/sysconfig/network"):
        for n in listdir(fs, d, MAX_FILES):
            if n.startswith("ifcfg-"):
                scan(join(d, n), rf"^(?:HWADDR|MACADDR)=[\"']?({_MAC})")
    for n in listdir(fs, "/etc/netplan", MAX_FILES):
        if n.endswith((".yaml", ".yml")):
            scan(join("/etc/netplan", n), rf"macaddress:\s*[\"']?({_MAC})")
    d = "/etc/NetworkManager/system-connections"
    for n in listdir(fs, d, MAX_FILES):
        scan(join(d, n), rf"^(?:mac-address|cloned-mac-address)=({_MAC})")
    for d in ("/etc/systemd/network",):
        for n in listdir(fs, d, MAX_FILES):
            if n.endswith((".network", ".link")):
                scan(join(d, n), rf"^(?:MACAddress|PermanentMACAddress)=({_MAC})")
    return tuple(out[:256])


def read_cloud(fs: GuestFS, notable: dict[str, str], initramfs_growroot: bool,
               cmdline: str | None = None) -> CloudFacts:
    """The cloud readiness facts of one root (``cmdline``: the default kernel command line)."""
    wants = wants_index(fs)
    ci = read_cloud_init(fs, notable.get("cloud-init"), cmdline, wants)
    gp = next((p for p in ("/usr/bin/growpart", "/usr/sbin/growpart") if exists(fs, p)), None)
    growroot = initramfs_growroot or any(exists(fs, p) for p in (
        "/usr/share/initramfs-tools/scripts/local-bottom/growroot",
        "/usr/share/initramfs-tools/hooks/growroot",
        "/usr/lib/dracut/modules.d/50growroot/growroot.sh"))
    sshd = _service(fs, ("/usr/sbin/sshd", "/sbin/sshd"), ("ssh.service", "sshd.service"),
                    wants)
    qga = _service(fs, ("/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"),
                   ("qemu-guest-agent.service",), wants)
    return CloudFacts(ci, gp is not None, Source(gp) if gp else None, growroot, sshd, qga,
                      read_macs(fs))


def serial_console(cmdline: str | None) -> str | None:
    """The serial console= of a kernel command line ("ttyS0,115200n8"), or None."""
    if not cmdline:
        return None
    found = None
    for word in cmdline.split():
        if word.startswith("console=") and word[8:].startswith(("ttyS", "ttyAMA", "hvc")):
            found = word[8:]
    return found
