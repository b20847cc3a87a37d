"""Clone chains: an RBD image's parent snapshot, its parent's, ..., each format-checked.

A Cinder volume created from a Glance image on Ceph is a copy-on-write clone of the image's
protected snapshot (``rbd info`` shows ``parent: images/ID@snap``). Until the volume is written
over, its bytes ARE the parent's. Nova, Cinder and libvirt attach RBD volumes as raw (qemu
``format=raw``), so a parent holding qcow2 bytes means the guest sees a qcow2 header where its
MBR should be: the classic "No bootable device" on Ceph. :func:`rbd_facts` gives the ``rbd``
section of ``diskkit info`` and the findings ``rbd-not-raw``, ``rbd-parent-not-raw`` and
``rbd-parent-unreadable`` (docs/findings.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diskkit.errors import DiskkitError
from diskkit.findings import Evidence, Finding, Severity
from diskkit.formats import registry
from diskkit.formats.detect import Detection, detect
from diskkit.readers.rbd import RbdReader, image_spec
from diskkit.readers.rbd_connection import modules
from diskkit.target import Target


def raw_like(fmt: str | None) -> bool:
    """The bytes of a ``fmt`` file are a disk a guest can use raw (raw; an ISO 9660 image)."""
    info = registry.lookup(fmt) if fmt else None
    return info is not None and info.raw_bytes
#: A chain longer than this is reported as it stands (Ceph itself allows deep chains).
MAX_DEPTH = 16


@dataclass(frozen=True)
class ParentSpec:
    """Where a clone's data comes from: ``pool[/namespace]/image@snap``."""

    pool: str
    namespace: str | None
    image: str
    snap: str

    @property
    def spec(self) -> str:
        """Ceph's spelling, as ``rbd info`` prints it."""
        return image_spec(self.pool, self.namespace, self.image, self.snap)


@dataclass(frozen=True)
class ChainLink:
    """One ancestor of an image: where it is, its size, and what its bytes are."""

    parent: ParentSpec
    size: int | None
    format: str | None
    formats_matched: tuple[str, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/json.md, ``rbd.parents``)."""
        return {"spec": self.parent.spec, "pool": self.parent.pool,
                "namespace": self.parent.namespace, "image": self.parent.image,
                "snapshot": self.parent.snap, "virtual_size": self.size, "format": self.format,
                "formats_matched": list(self.formats_matched), "error": self.error}


def parent_of(image: Any) -> ParentSpec | None:
    """The parent of an open ``rbd.Image``, or None when it is not a clone."""
    _, rbd = modules()
    try:
        p = image.get_parent_image_spec()
    except rbd.ImageNotFound:
        return None
    return ParentSpec(p["pool_name"], p.get("pool_namespace") or None, p["image_name"],
                      p["snap_name"])


def clone_chain(reader: RbdReader, max_depth: int = MAX_DEPTH) -> list[ChainLink]:
    """The ancestors of ``reader``'s image, nearest first, each opened read-only on the same
    connection and its bytes detected. A parent that cannot be opened ends the chain with a
    link carrying ``error``."""
    links: list[ChainLink] = []
    parent = parent_of(reader.image)
    conn = reader.connection
    t = reader.target
    while parent is not None and len(links) < max_depth:
        here = parent
        pt = Target(spec=f"rbd:{parent.spec}", kind="rbd", pool=parent.pool,
                    namespace=parent.namespace, image=parent.image, snap=parent.snap,
                    conf=t.conf, user=t.user, keyring=t.keyring)
        try:
            with RbdReader(pt, connection=conn) as pr:
                det = detect(pr)
                links.append(ChainLink(here, pr.size, det.format, det.formats_matched))
                parent = parent_of(pr.image)
        except DiskkitError as exc:
            links.append(ChainLink(here, None, None, error=f"{exc.code}: {exc.message}"))
            break
    return links


def _convert_fix(fmt: str, spec: str) -> str:
    dest = spec.split("@", 1)[0] + "-raw"
    return (f"convert it to raw in the cluster: qemu-img convert -f {fmt} -O raw "
            f"rbd:{spec} rbd:{dest}, then register/boot the raw copy (Glance "
            "disk_format=raw)")


def _not_raw(reader: RbdReader, detection: Detection) -> Finding:
    fmt = detection.format
    head = reader.read(0, 16)
    return Finding(
        "rbd-not-raw", Severity.ERROR,
        f"RBD image {reader.spec} holds {fmt} bytes, but RBD images are attached as raw: "
        f"the guest sees a {fmt} header where its boot sector should be (No bootable device), "
        "and Glance/Cinder cannot clone it copy-on-write",
        (Evidence(f"{fmt} signature at the start of the image", 0, head),),
        _convert_fix(fmt, reader.spec), {"format": fmt})


def _parent_not_raw(reader: RbdReader, link: ChainLink, depth: int) -> Finding:
    who = "parent" if depth == 1 else f"ancestor (depth {depth})"
    return Finding(
        "rbd-parent-not-raw", Severity.ERROR,
        f"{reader.spec} is a clone whose {who} {link.parent.spec} holds {link.format} bytes: "
        f"every unwritten block of the clone reads the parent's {link.format} data, so as a "
        "raw volume it will not boot",
        (Evidence(f"{link.parent.spec}: detected {link.format}", 0, None),),
        "rebuild from a raw image; " + _convert_fix(link.format or "?", link.parent.spec)
        + "; then recreate the volume from it (flattening the clone does not help)",
        {"parent": link.parent.spec, "format": link.format, "depth": depth})


def rbd_facts(reader: RbdReader, detection: Detection) -> tuple[dict[str, Any], list[Finding]]:
    """The ``rbd`` section of ``diskkit info`` (image facts + clone chain) and its findings."""
    section = reader.describe()
    # docs/json.md: an image's sizes are virtual_size / actual_size in every command
    section["virtual_size"] = section.pop("size", None)
    section["actual_size"] = section.pop("allocated", None)
    chain = clone_chain(reader)
    section["parent"] = chain[0].parent.spec if chain else None
    section["parents"] = [link.to_dict() for link in chain]
    findings: list[Finding] = []
    if not raw_like(detection.format):
        findings.append(_not_raw(reader, detection))
    for depth, link in enumerate(chain, 1):
        if link.error is not None:
            findings.append(Finding(
                "rbd-parent-unreadable", Severity.WARNING,
                f"the parent {link.parent.spec} of {reader.spec} cannot be opened "
                f"({link.error}); its format was not checked",
                (), "check that the user may read the parent's pool", {"parent": link.parent.spec}))
        elif not raw_like(link.format):
            findings.append(_parent_not_raw(reader, link, depth))
    return section, findings
