"""What a TARGET argument names, and how to open it.

A target is a local path (file or block device), an NBD URI (``nbd://host[:port]/export``,
``nbd+unix:///export?socket=PATH``) or a Ceph RBD spec in qemu's spelling
(``rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:conf=PATH][:id=USER][:keyring=PATH]``).

Foundation layer: parsing only. Opening a target is :mod:`diskkit.disk` (readers level), so
the readers that need a :class:`Target` never import what loads them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from diskkit.errors import HostError, UserError


@dataclass(frozen=True)
class Target:
    """A parsed TARGET. ``kind`` is "file", "nbd" or "rbd"."""

    spec: str
    kind: str
    path: str | None = None
    # nbd
    uri: str | None = None
    # rbd
    pool: str | None = None
    namespace: str | None = None
    image: str | None = None
    snap: str | None = None
    conf: str | None = None
    user: str | None = None
    keyring: str | None = None

    @property
    def display(self) -> str:
        """How to show this target to a person."""
        return self.spec


def _parse_rbd(spec: str) -> Target:
    body = spec[len("rbd:") :]
    # qemu's syntax: options follow the image as ":key=value"; "\:" escapes a colon.
    parts: list[str] = []
    cur = ""
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            cur += body[i + 1]
            i += 2
            continue
        if c == ":":
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    name, opts = parts[0], parts[1:]
    options: dict[str, str] = {}
    for opt in opts:
        if "=" not in opt:
            raise UserError(f"{spec}: option {opt!r} is not key=value", code="bad-uri",
                            hint="write rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=USER]")
        key, value = opt.split("=", 1)
        if key not in ("conf", "id", "keyring"):
            raise UserError(f"{spec}: unknown rbd option {key!r}", code="bad-uri",
                            hint="known options: conf, id, keyring")
        options[key] = value
    snap = None
    if "@" in name:
        name, snap = name.split("@", 1)
        if not snap:
            raise UserError(f"{spec}: empty snapshot name after '@'", code="bad-uri")
    segs = name.split("/")
    if len(segs) == 2:
        pool, image, namespace = segs[0], segs[1], None
    elif len(segs) == 3:
        pool, namespace, image = segs
    elif len(segs) == 1 and segs[0]:
        # "rbd:POOL" names a whole pool (for `diskkit scan`).
        pool, image, namespace = segs[0], None, None
    else:
        raise UserError(f"{spec}: expected rbd:POOL/IMAGE[@SNAP]", code="bad-uri")
    if not pool or image == "":
        raise UserError(f"{spec}: expected rbd:POOL/IMAGE[@SNAP]", code="bad-uri")
    return Target(spec=spec, kind="rbd", pool=pool, namespace=namespace, image=image, snap=snap,
                  conf=options.get("conf"), user=options.get("id"), keyring=options.get("keyring"))


def parse_target(spec: str) -> Target:
    """Parse a TARGET string; a :class:`UserError` says what is wrong with a bad one."""
    if not spec:
        raise UserError("the target is empty", code="bad-uri")
    if spec.startswith("rbd:"):
        return _parse_rbd(spec)
    if spec.startswith(("nbd://", "nbd+unix://", "nbds://", "nbd+tcp://")):
        import urllib.parse  # here, not at the top: a file path need not load it (start-up)

        parsed = urllib.parse.urlparse(spec)
        if parsed.scheme == "nbd+unix" and "socket=" not in parsed.query:
            raise UserError(f"{spec}: nbd+unix URIs need ?socket=PATH", code="bad-uri")
        if parsed.scheme in ("nbd", "nbds") and not parsed.hostname:
            raise UserError(f"{spec}: no host in the NBD URI", code="bad-uri")
        return Target(spec=spec, kind="nbd", uri=spec)
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        raise UserError(f"{spec}: unknown scheme {scheme!r}", code="bad-uri",
                        hint="use a path, nbd://HOST[:PORT]/EXPORT, or rbd:POOL/IMAGE[@SNAP]")
    return Target(spec=spec, kind="file", path=spec)


def load(dotted: str, package: str) -> Any:
    """Import ``module:attr``; a missing binding becomes a :class:`HostError` with the fix."""
    module_name, attr = dotted.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HostError(
            f"cannot load {module_name} ({exc.name or exc})",
            code="binding-missing",
            hint=f"install it: apt-get install {package}",
        ) from None
    return getattr(module, attr)
