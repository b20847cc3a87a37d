"""inspect_guest(): the operating systems on a disk, read from the bytes (what virt-inspector
reports, and the boot and cloud facts it does not).

A root is any filesystem (partition, LV, whole disk) with /etc/fstab, or os-release with
/usr, or a Windows directory. For each, the other filesystems its fstab mounts from this disk
(/boot, /boot/efi, /var, /usr) are put in place before anything else is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diskkit.errors import DiskkitError
from diskkit.guest import packages, windows
from diskkit.guest.binfmt import elf_arch
from diskkit.guest.fs.api import GuestFS
from diskkit.guest.fstab import FstabEntry, read_fstab
from diskkit.guest.info import ROOT_TYPES, GuestInfo
from diskkit.guest.mountfs import MountFS
from diskkit.guest.vfs import Source, exists, is_dir, join, listdir, read_bytes, read_text
from diskkit.layout.inspect import Layout, lv_reader, partition_reader
from diskkit.layout.model import Filesystem
from diskkit.readers.base import Reader

# bootcfg, cloud, identity and kernels (initramfs decompressors) are imported when a root is
# read: a disk with no OS root does not pay for them (CLI start-up, docs/cli.md).
if TYPE_CHECKING:
    from diskkit.guest import bootcfg, cloud, kernels

#: Filesystems examined as possible roots per disk (a hostile table can list 32768 that all
#: start at the same byte: those count once).
MAX_ROOT_CANDIDATES = 64
#: Mount points worth assembling from fstab before reading.
ASSEMBLE = ("/boot", "/boot/efi", "/efi", "/var", "/usr")
#: Binaries whose ELF header gives the architecture, in order.
ARCH_FILES = ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash", "/bin/ls", "/usr/bin/ls",
              "/sbin/init", "/usr/lib/systemd/systemd")

OpenFS = Callable[[Reader, str], GuestFS]


@dataclass(frozen=True)
class InitramfsConfig:
    """How the next initramfs will be built: initramfs-tools' MODULES= and modules list,
    dracut's hostonly and add_drivers."""

    generator: str | None
    modules: str | None = None
    extra_modules: tuple[str, ...] = ()
    hostonly: bool | None = None
    add_drivers: tuple[str, ...] = ()
    sources: dict[str, Source] = field(default_factory=dict, hash=False, compare=False)
    #: initramfs-tools hook scripts installed (/usr/share/initramfs-tools/hooks and
    #: /etc/initramfs-tools/hooks): "lvm2", "cryptroot", "growroot", ...
    hooks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"generator": self.generator, "modules": self.modules,
                "extra_modules": list(self.extra_modules), "hostonly": self.hostonly,
                "add_drivers": list(self.add_drivers), "hooks": list(self.hooks),
                "sources": {k: v.to_dict() for k, v in self.sources.items()}}


@dataclass(frozen=True)
class BootConfig:
    """The boot loader configuration of a root."""

    grub: bootcfg.GrubConfig | None
    grubenv: dict[str, str]
    grubenv_path: str | None
    bls: tuple[bootcfg.BootEntry, ...]
    default_grub: bootcfg.DefaultGrub | None
    #: The entry that boots by default (GRUB's default, or the BLS entry it picks).
    default_entry: bootcfg.BootEntry | None
    #: Where the boot files live: "/boot" when it is its own filesystem, "" otherwise
    #: (GRUB's paths are relative to that filesystem).
    boot_prefix: str = ""

    @property
    def cmdline(self) -> str | None:
        """The default entry's kernel command line."""
        return self.default_entry.cmdline if self.default_entry else None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"grub": self.grub.to_dict() if self.grub else None,
                "grubenv": dict(self.grubenv), "grubenv_path": self.grubenv_path,
                "bls": [e.to_dict() for e in self.bls],
                "default_grub": self.default_grub.to_dict() if self.default_grub else None,
                "default_entry": self.default_entry.to_dict() if self.default_entry else None,
                "cmdline": self.cmdline, "boot_prefix": self.boot_prefix}


@dataclass(frozen=True)
class OSRoot:
    """One operating system found on the disk."""

    location: str
    fstype: str
    fs_uuid: str | None
    type: str
    distro: str = "unknown"
    product_name: str | None = None
    major: int = 0
    minor: int = 0
    version_id: str | None = None
    codename: str | None = None
    osinfo: str | None = None
    hostname: str | None = None
    #: os-release's PRETTY_NAME ("Debian GNU/Linux 12 (bookworm)"); Windows: ProductName.
    pretty_name: str | None = None
    arch: str | None = None
    packages: packages.Packages = field(default_factory=packages.Packages)
    kernels: tuple[kernels.Kernel, ...] = ()
    boot: BootConfig | None = None
    fstab: tuple[FstabEntry, ...] = ()
    #: Mount point -> location on this disk, from fstab (only the entries that resolve).
    mountpoints: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    initramfs_config: InitramfsConfig | None = None
    cloud: cloud.CloudFacts | None = None
    serial_console: str | None = None
    windows: windows.WindowsInfo | None = None
    evidence: dict[str, Source] = field(default_factory=dict, hash=False, compare=False)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/guest.md)."""
        return {
            "location": self.location, "fstype": self.fstype, "fs_uuid": self.fs_uuid,
            "type": self.type, "distro": self.distro, "product_name": self.product_name,
            "major_version": self.major, "minor_version": self.minor,
            "version_id": self.version_id, "codename": self.codename, "osinfo": self.osinfo,
            "hostname": self.hostname, "pretty_name": self.pretty_name, "arch": self.arch,
            "packages": self.packages.to_dict(),
            "kernels": [k.to_dict() for k in self.kernels],
            "boot": self.boot.to_dict() if self.boot else None,
            "fstab": [e.to_dict() for e in self.fstab],
            "mountpoints": dict(self.mountpoints),
            "initramfs_config": self.initramfs_config.to_dict()
            if self.initramfs_config else None,
            "cloud": self.cloud.to_dict() if self.cloud else None,
            "serial_console": self.serial_console,
            "windows": self.windows.to_dict() if self.windows else None,
            "evidence": {k: v.to_dict() for k, v in self.evidence.items()},
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------ pieces

def read_arch(fs: GuestFS) -> tuple[str | None, Source | None]:
    """Architecture from the ELF header of /bin/sh's target (then other binaries)."""
    for path in ARCH_FILES:
        head = read_bytes(fs, path, 64)
        arch = elf_arch(head or b"")
        if arch:
            try:
                real = fs.realpath(path)
            except OSError:
                real = path
            return arch, Source(real, None, f"ELF header of {path}" +
                                (f" -> {real}" if real != path else ""))
    return None, None


def read_boot(fs: GuestFS, boot_separate: bool) -> BootConfig:
    """grub.cfg, grubenv, BLS entries and /etc/default/grub of a root (with /boot mounted)."""
    from diskkit.guest import bootcfg

    grub = None
    env: dict[str, str] = {}
    env_path = None
    for d in ("/boot/grub", "/boot/grub2"):
        data = read_bytes(fs, join(d, "grubenv"), 4096)
        if data is not None:
            env = bootcfg.parse_grubenv(data)
            env_path = join(d, "grubenv")
        text = read_text(fs, join(d, "grub.cfg"), bootcfg.MAX_CFG)
        if text is not None:
            grub = bootcfg.parse_grub_cfg(text, join(d, "grub.cfg"), env)
            break
    bls = bootcfg.parse_bls(fs, "/boot/loader/entries", {**(grub.variables if grub else {}),
                                                         **env}, prefix="")
    default = None
    if grub is not None and (grub.uses_bls or not grub.entries) and bls:
        saved = env.get("saved_entry")
        default = next((e for e in bls if e.id == saved), None) if saved else None
        default = default or bls[0]
    elif grub is not None:
        default = grub.default_entry
    elif bls:
        default = bls[0]
    return BootConfig(grub, env, env_path, bls, bootcfg.read_default_grub(fs), default,
                      "/boot" if boot_separate else "")


def read_initramfs_config(fs: GuestFS) -> InitramfsConfig | None:
    """initramfs-tools' or dracut's configuration for the next build."""
    if is_dir(fs, "/etc/initramfs-tools"):
        modules = None
        srcs: dict[str, Source] = {}
        files = ["/etc/initramfs-tools/initramfs.conf"] + [
            join("/etc/initramfs-tools/conf.d", n)
            for n in listdir(fs, "/etc/initramfs-tools/conf.d", 256)]
        for path in files:
            text = read_text(fs, path, 256 << 10) or ""
            for n, line in enumerate(text.splitlines(), 1):
                m = re.match(r"\s*MODULES\s*=\s*['\"]?(\w+)", line)
                if m:
                    modules = m.group(1)
                    srcs["modules"] = Source(path, n, line.strip())
        extra = []
        text = read_text(fs, "/etc/initramfs-tools/modules", 256 << 10) or ""
        for line in text.splitlines():
            s = line.split("#", 1)[0].strip()
            if s:
                extra.append(s.split()[0])
        hooks = sorted(set(listdir(fs, "/usr/share/initramfs-tools/hooks", 512)) |
                       set(listdir(fs, "/etc/initramfs-tools/hooks", 512)))
        return InitramfsConfig("initramfs-tools", modules, tuple(extra[:512]), None, (), srcs,
                               tuple(hooks))
    if exists(fs, "/etc/dracut.conf") or is_dir(fs, "/etc/dracut.conf.d"):
        hostonly = None
        drivers: list[str] = []
        srcs = {}
        files = ["/etc/dracut.conf"] + [join("/etc/dracut.conf.d", n) for n in
                                        listdir(fs, "/etc/dracut.conf.d", 256)
                                        if n.endswith(".conf")]
        for path in files:
            text = read_text(fs, path, 256 << 10) or ""
            for n, line in enumerate(text.splitlines(), 1):
                m = re.match(r"\s*hostonly\s*=\s*['\"]?(\w+)", line)
                if m:
                    hostonly = m.group(1) == "yes"
                    srcs["hostonly"] = Source(path, n, line.strip())
                m = re.match(r"\s*add_drivers\s*\+?=\s*['\"]([^'\"]*)", line)
                if m:
                    drivers += m.group(1).split()
                    srcs["add_drivers"] = Source(path, n, line.strip())
        return InitramfsConfig("dracut", None, (), hostonly, tuple(drivers[:512]), srcs)
    return None


def is_linux_root(fs: GuestFS) -> bool:
    """/etc/fstab, or os-release with /usr."""
    if exists(fs, "/etc/fstab"):
        return True
    return (exists(fs, "/etc/os-release") or exists(fs, "/usr/lib/os-release")) and \
        is_dir(fs, "/usr")


def inspect_root(fs: GuestFS, *, location: str = "tree", layout: Layout | None = None,
                 mounts: dict[str, GuestFS] | None = None, read_initramfs: bool = True,
                 fs_uuid: str | None = None) -> OSRoot | None:
    """The OS on filesystem ``fs`` (None when it is not a root). ``mounts`` are the other
    filesystems to put at their mount points (from fstab: see :func:`inspect_guest`);
    ``fs_uuid`` is the filesystem's UUID as the layout found it (default: ``fs.uuid``)."""
    fstype = str(getattr(fs, "fstype", "unknown"))
    uuid = fs_uuid or getattr(fs, "uuid", None)
    sysroot = windows.find_systemroot(fs)
    if sysroot is not None:
        w = windows.read_windows(fs, sysroot)
        ev = {k: v for k, v in w.evidence.items()
              if k in ("product_name", "major", "hostname", "arch")}
        if "major" in ev:
            ev["version"] = ev.pop("major")
        return OSRoot(location, fstype, uuid, "windows", distro="windows",
                      product_name=w.product_name, major=w.major, minor=w.minor,
                      version_id=f"{w.major}.{w.minor}" if w.major else None, osinfo=w.osinfo,
                      hostname=w.hostname, pretty_name=w.product_name, arch=w.arch,
                      windows=w, evidence=ev, notes=w.problems)
    if not is_linux_root(fs):
        return None
    from diskkit.guest import cloud, identity, kernels

    fstab = read_fstab(fs, layout)
    mountpoints = {e.mountpoint: e.location for e in fstab if e.location and
                   e.mountpoint.startswith("/")}
    view: GuestFS = MountFS(fs, mounts) if mounts else fs  # type: ignore[assignment]
    ident = identity.read_identity(view)
    hostname, hsrc = identity.read_hostname(view)
    arch, asrc = read_arch(view)
    pk = packages.read_packages(view)
    ks = kernels.list_kernels(view, read_initrd=read_initramfs)
    boot = read_boot(view, bool(mounts and "/boot" in mounts))
    cmdline = boot.cmdline
    growroot = any(k.initramfs and k.initramfs.facts and k.initramfs.facts.growroot for k in ks)
    cf = cloud.read_cloud(view, pk.notable, bool(growroot), cmdline)
    ev = dict(ident.evidence)
    if hsrc:
        ev["hostname"] = hsrc
    if asrc:
        ev["arch"] = asrc
    if pk.source:
        ev["packages"] = pk.source
    csrc = boot.default_entry.cmdline_source or boot.default_entry.source \
        if boot.default_entry else None
    if csrc:
        ev["cmdline"] = csrc
    return OSRoot(location, fstype, uuid, "linux", ident.distro, ident.product_name,
                  ident.major, ident.minor, ident.version_id, ident.codename, ident.osinfo,
                  hostname, ident.pretty_name, arch, pk, ks, boot, fstab, mountpoints,
                  read_initramfs_config(view), cf, cloud.serial_console(cmdline), None, ev)


def inspect_tree(path: str, *, layout: Layout | None = None,
                 read_initramfs: bool = True) -> GuestInfo:
    """The OS of an unpacked tree on the host (see :class:`diskkit.guest.tree.TreeFS`)."""
    from diskkit.guest.tree import TreeFS

    with TreeFS(path) as fs:
        root = inspect_root(fs, location="tree", layout=layout, read_initramfs=read_initramfs)
    return GuestInfo((root,) if root else ())


def _reader_for(disk: Reader, layout: Layout, location: str) -> Reader | None:
    if location == "disk":
        return disk
    if location.startswith("partition "):
        p = layout.partition(int(location.split()[1]))
        return partition_reader(disk, p) if p else None
    if location.startswith("lv "):
        return lv_reader(disk, layout, location[3:])
    return None


def _assemble(fs: GuestFS, location: str, layout: Layout,
              get: Callable[[str, str], GuestFS | None]) -> dict[str, GuestFS]:
    """The filesystems the root at ``location`` mounts at ASSEMBLE points, from its fstab."""
    mounts: dict[str, GuestFS] = {}
    for e in read_fstab(fs, layout):
        if e.mountpoint in ASSEMBLE and e.location and e.location != location:
            other = next((x for x in layout.filesystems if x.location == e.location), None)
            sub = get(e.location, other.type) if other else None
            if sub is not None:
                mounts[e.mountpoint] = sub
    return mounts


def _candidates(layout: Layout) -> tuple[list[Filesystem], int]:
    """The filesystems that may hold a root (each start examined once, at most
    MAX_ROOT_CANDIDATES), and how many more were left out."""
    seen: set[tuple[int | None, str]] = set()
    out: list[Filesystem] = []
    skipped = 0
    for f in layout.filesystems:
        if f.type not in ROOT_TYPES:
            continue
        key = (f.offset, f.type) if f.offset is not None else (None, f.location)
        if key in seen:
            continue
        if len(out) >= MAX_ROOT_CANDIDATES:
            skipped += 1
            continue
        seen.add(key)
        out.append(f)
    return out, skipped


def _default_open(reader: Reader, fstype: str) -> GuestFS:
    from diskkit.guest.fs import open_filesystem

    return open_filesystem(reader, fstype)


def inspect_guest(disk: Reader, layout: Layout, *, open_fs: OpenFS | None = None,
                  read_initramfs: bool = True) -> GuestInfo:
    """Every OS root on ``disk`` (whose layout is ``layout``), read through ``open_fs``
    (default: :func:`diskkit.guest.fs.open_filesystem`). Never raises for a bad guest: a
    filesystem that cannot be read becomes a note."""
    opener = open_fs or _default_open
    notes: list[str] = []
    roots: list[OSRoot] = []
    opened: dict[str, GuestFS] = {}

    def get(location: str, fstype: str) -> GuestFS | None:
        if location in opened:
            return opened[location]
        try:
            r = _reader_for(disk, layout, location)
            if r is None:
                return None
            fs = opener(r, fstype)
        except (DiskkitError, OSError, ValueError) as exc:
            notes.append(f"{location} ({fstype}): not read: {exc}")
            return None
        opened[location] = fs
        return fs

    try:
        candidates, skipped = _candidates(layout)
        for f in candidates:
            fs = get(f.location, f.type)
            if fs is None:
                continue
            try:
                probe_root = is_linux_root(fs) or windows.find_systemroot(fs) is not None
            except OSError:
                probe_root = False
            if not probe_root:
                continue
            mounts = _assemble(fs, f.location, layout, get)
            try:
                root = inspect_root(fs, location=f.location, layout=layout, mounts=mounts,
                                    read_initramfs=read_initramfs, fs_uuid=f.uuid)
            except (DiskkitError, OSError, ValueError) as exc:
                notes.append(f"{f.location}: inspection stopped: {exc}")
                continue
            if root is not None:
                roots.append(root)
        if skipped:
            notes.append(f"{skipped} more filesystems not examined for an operating system "
                         f"(at most {MAX_ROOT_CANDIDATES} per disk)")
    finally:
        for fs in opened.values():
            close = getattr(fs, "close", None)
            if close:
                close()
    return GuestInfo(tuple(roots), tuple(notes))
