"""Installed kernels, each with its initramfs and what the kernel has built in.

Kernels are found as /boot/vmlinuz-VERSION (vmlinux-, kernel-) and /lib/modules/VERSION
(/usr/lib/modules: Fedora keeps vmlinuz there). Each version's initramfs is looked for under
the names initramfs-tools, dracut and SUSE use. The initramfs is read whole only up to
:data:`diskkit.guest.initramfs.MAX_INPUT` bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from diskkit.guest import initramfs
from diskkit.guest.vfs import GuestFS, Source, is_dir, is_file, iter_bytes, join, listdir, read_text

_KERNEL_PREFIXES = ("vmlinuz-", "vmlinux-", "kernel-", "bzImage-")
_INITRD_NAMES = ("initrd.img-{v}", "initramfs-{v}.img", "initrd-{v}", "initrd-{v}.img",
                 "initramfs-{v}")
_NOT_KERNELS = re.compile(r"(\.old|\.bak|-rescue-[0-9a-f]+|\.hmac|\.sig)$")


@dataclass(frozen=True)
class Initramfs:
    """One initramfs file and, when it was read, what it holds."""

    path: str
    size: int
    facts: initramfs.InitramfsFacts | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        f = self.facts
        out: dict[str, Any] = {"path": self.path, "size": self.size}
        if f is not None:
            out.update({"compression": list(f.compression), "entries": f.entries,
                        "modules": len(f.modules), "module_versions": list(f.module_versions),
                        "drivers": dict(f.drivers), "lvm": f.lvm, "crypt": f.crypt,
                        "mdadm": f.mdadm, "growroot": f.growroot, "generator": f.generator,
                        "truncated": f.truncated, "problem": f.problem or None})
        return out


@dataclass(frozen=True)
class Kernel:
    """One installed kernel version."""

    version: str
    path: str | None
    modules_dir: str | None
    initramfs: Initramfs | None
    #: INTERESTING drivers the kernel has built in (modules.builtin).
    builtin: tuple[str, ...]
    source: Source | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"version": self.version, "path": self.path, "modules_dir": self.modules_dir,
                "initramfs": self.initramfs.to_dict() if self.initramfs else None,
                "builtin": list(self.builtin),
                "source": self.source.to_dict() if self.source else None}

    def has_driver(self, name: str) -> bool | None:
        """True when ``name`` is built in or in the initramfs; None when the initramfs was
        not read."""
        if name in self.builtin:
            return True
        if self.initramfs is None or self.initramfs.facts is None:
            return None
        return bool(self.initramfs.facts.drivers.get(name)) or \
            name in self.initramfs.facts.modules


def read_builtin(fs: GuestFS, modules_dir: str) -> tuple[str, ...]:
    """The INTERESTING drivers listed in ``modules_dir``/modules.builtin."""
    text = read_text(fs, join(modules_dir, "modules.builtin"), 4 << 20)
    if not text:
        return ()
    names = set()
    for line in text.splitlines():
        base = line.strip().rsplit("/", 1)[-1]
        if base.endswith(".ko"):
            names.add(base[:-3].replace("-", "_"))
    return tuple(sorted(n for n in names if n in initramfs.INTERESTING))


def read_initramfs(fs: GuestFS, path: str) -> initramfs.InitramfsFacts | None:
    """Parse the initramfs at ``path`` (bounded); None when it cannot be read."""
    data = b"".join(iter_bytes(fs, path, initramfs.MAX_INPUT))
    if not data:
        return None
    return initramfs.summarize(initramfs.list_initramfs(data))


def list_kernels(fs: GuestFS, *, read_initrd: bool = True) -> tuple[Kernel, ...]:
    """Every kernel version found, newest-looking first (by version string)."""
    versions: dict[str, dict[str, str | None]] = {}
    for name in listdir(fs, "/boot", 1024):
        for pre in _KERNEL_PREFIXES:
            if name.startswith(pre) and not _NOT_KERNELS.search(name) and \
                    is_file(fs, join("/boot", name)):
                versions.setdefault(name[len(pre):], {})["path"] = join("/boot", name)
    for mdir in ("/lib/modules", "/usr/lib/modules"):
        for v in listdir(fs, mdir, 256):
            if not is_dir(fs, join(mdir, v)):
                continue
            d = versions.setdefault(v, {})
            d.setdefault("modules", join(mdir, v))
            if "path" not in d and is_file(fs, join(mdir, v, "vmlinuz")):
                d["path"] = join(mdir, v, "vmlinuz")
    out = []
    for v, d in versions.items():
        if "path" not in d and not _looks_versioned(v):
            continue
        ird = None
        for pat in _INITRD_NAMES:
            p = join("/boot", pat.format(v=v))
            if is_file(fs, p):
                try:
                    size = int(fs.stat(p).size)
                except OSError:
                    continue
                ird = Initramfs(p, size, read_initramfs(fs, p) if read_initrd else None)
                break
        mods = d.get("modules")
        builtin = read_builtin(fs, mods) if mods else ()
        path = d.get("path")
        out.append(Kernel(v, path, mods, ird, builtin, Source(path or mods or "/boot")))
    out.sort(key=lambda k: [(0, int(x)) if x.isdigit() else (1, x)
                            for x in re.findall(r"\d+|[a-z]+", k.version)], reverse=True)
    return tuple(out)


def _looks_versioned(v: str) -> bool:
    return bool(re.match(r"\d+\.\d+", v))
