"""A small /etc/fstab reader (fstab(5)): the entries ``--os`` mounts below the root."""

from __future__ import annotations

#: Types never mounted from a guest's fstab (pseudo filesystems, swap).
_SKIP_TYPES = {"swap", "proc", "sysfs", "tmpfs", "devpts", "none", "nfs", "nfs4", "cifs",
               "bind", "devtmpfs", "efivarfs"}


def _unoctal(s: str) -> str:
    # fstab escapes spaces as \040 (fstab(5)).
    return s.replace("\\040", " ").replace("\\011", "\t")


def entries(root: str, path: str = "/etc/fstab",
            limit: int = 1 << 16) -> list[tuple[str, str, str]]:
    """(spec, mountpoint, type) of each real filesystem in the guest fstab at ``path`` under the
    mounted guest ``root``, sorted so a parent comes before its children.

    The file is opened inside the guest root (:mod:`diskkit.guestpath`: symlinks resolved as the
    guest would, a regular file only, never a FIFO or a host file), and at most ``limit`` bytes
    of it are read (a hostile image may have a huge fstab). A missing or unreadable file gives
    [].
    """
    from diskkit.errors import DiskkitError
    from diskkit.guestpath import read_file

    try:
        data = read_file(root, path, limit, truncate=True)
    except (DiskkitError, OSError):
        return []
    return parse(data.decode("utf-8", errors="replace"))


def parse(text: str) -> list[tuple[str, str, str]]:
    """The entries of fstab ``text`` (see :func:`entries`)."""
    out: list[tuple[str, str, str]] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 3:
            continue
        spec, mp, fstype = (_unoctal(x) for x in fields[:3])
        if fstype in _SKIP_TYPES or not mp.startswith("/"):
            continue
        opts = fields[3].split(",") if len(fields) > 3 else []
        if "bind" in opts:
            continue
        out.append((spec, mp.rstrip("/") or "/", fstype))
    return sorted(out, key=lambda e: e[1].count("/") if e[1] != "/" else 0)
