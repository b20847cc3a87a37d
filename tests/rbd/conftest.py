"""Images in a pool of their own on the session's real Ceph cluster (tests/fixtures/ceph.py),
made with the tools operators use: librbd, ``qemu-img convert ... rbd:``, ``rbd import``,
``rbd snap``/``rbd clone``. Built once per session (a few seconds)."""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from diskkit.runner import run
from tests.fixtures.ceph import CephCluster
from tests.helpers import create, qemu_img

MiB = 1 << 20
POOL = "dkrbd"
NS = "tenant1"
BROKEN = "dkorphan"
DISKKIT = str(pathlib.Path(__file__).resolve().parents[2] / ".venv" / "bin" / "diskkit")


@dataclass
class RbdImages:
    """The pool, its images, and the local files their bytes came from."""

    cluster: CephCluster
    pool: str
    conf: str
    files: dict[str, pathlib.Path] = field(default_factory=dict)
    #: image name -> the format its bytes are (as made), for the scan's expectations.
    made_as: dict[str, str] = field(default_factory=dict)

    def uri(self, image: str, snap: str | None = None) -> str:
        """``rbd:POOL/IMAGE[@SNAP]:conf=PATH``."""
        at = f"@{snap}" if snap else ""
        return f"rbd:{self.pool}/{image}{at}:conf={self.conf}"

    def rbd_json(self, *args: str) -> Any:
        """``rbd -c CONF ARGS --format json``, parsed."""
        import json

        return json.loads(self.cluster.rbd(*args, "--format", "json"))


def sha256_of(path: pathlib.Path) -> str:
    """SHA-256 of a local file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mbr_disk(path: pathlib.Path, size_mib: int) -> pathlib.Path:
    """A raw disk with an MBR partition table (sfdisk) and a recognisable payload."""
    create(path, "raw", f"{size_mib}M")
    run(["sfdisk", "--no-reread", "--no-tell-kernel", str(path)],
        input="label: dos\nstart=2048, size=20480, type=83, bootable\n", timeout=30)
    with open(path, "r+b") as f:
        f.seek(3 * MiB)
        f.write(os.urandom(MiB))  # data inside the partition
    return path


@pytest.fixture(scope="session")
def rbd_images(ceph_cluster: CephCluster, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[RbdImages]:
    """See the module docstring; the pool is deleted at the end."""
    import rados
    import rbd

    c = ceph_cluster
    c.ceph("osd", "pool", "create", POOL, "8", "8")
    c.ceph("osd", "pool", "application", "enable", POOL, "rbd")
    c.rbd("namespace", "create", f"{POOL}/{NS}")
    d = tmp_path_factory.mktemp("rbd")
    imgs = RbdImages(c, POOL, c.conf)

    # 1. Written with librbd: a 64 MiB raw disk with an MBR.
    src = _mbr_disk(d / "librbd.raw", 64)
    imgs.files["librbd-raw"] = src
    with rados.Rados(conffile=c.conf) as cluster, cluster.open_ioctx(POOL) as io:
        rbd.RBD().create(io, "librbd-raw", src.stat().st_size)
        with rbd.Image(io, "librbd-raw") as img:
            data = src.read_bytes()
            for off in range(0, len(data), 4 * MiB):
                chunk = data[off : off + 4 * MiB]
                if chunk.count(0) != len(chunk):  # leave zero objects unallocated
                    img.write(chunk, off)
    imgs.made_as["librbd-raw"] = "raw"

    # 2. Written by qemu's rbd driver.
    qsrc = _mbr_disk(d / "qemu.raw", 32)
    imgs.files["qemu-raw"] = qsrc
    qemu_img("convert", "-f", "raw", "-O", "raw", qsrc, f"rbd:{POOL}/qemu-raw:conf={c.conf}")
    imgs.made_as["qemu-raw"] = "raw"

    # 3. A qcow2 file stored as it is (what `rbd import` or a disk_format=raw upload does).
    q = create(d / "glance.qcow2", "qcow2", "1G")
    qemu_img("convert", "-f", "raw", "-O", "qcow2", qsrc, q)
    imgs.files["qcow2-bytes"] = q
    c.rbd("import", str(q), f"{POOL}/qcow2-bytes")
    imgs.made_as["qcow2-bytes"] = "qcow2"

    # 4. Clone chains: a Cinder volume from a Glance image snapshot, raw and qcow2 flavours,
    # and a clone of a clone.
    for parent, child in (("qcow2-bytes", "vol-from-qcow2"), ("librbd-raw", "vol-from-raw")):
        c.rbd("snap", "create", f"{POOL}/{parent}@snap")
        c.rbd("snap", "protect", f"{POOL}/{parent}@snap")
        c.rbd("clone", f"{POOL}/{parent}@snap", f"{POOL}/{child}")
    imgs.made_as["vol-from-qcow2"] = "qcow2"
    imgs.made_as["vol-from-raw"] = "raw"
    with rados.Rados(conffile=c.conf) as cluster, cluster.open_ioctx(POOL) as io, \
            rbd.Image(io, "vol-from-raw") as img:
        img.write(b"\xab" * MiB, 40 * MiB)  # the clone's own data, past the parent's
    c.rbd("snap", "create", f"{POOL}/vol-from-raw@s2")
    c.rbd("snap", "protect", f"{POOL}/vol-from-raw@s2")
    c.rbd("clone", f"{POOL}/vol-from-raw@s2", f"{POOL}/vol-deep")
    imgs.made_as["vol-deep"] = "raw"

    # 5. A blank 1 TiB volume (thin: created in well under a second).
    c.rbd("create", "--size", "1T", f"{POOL}/blank-1t")
    imgs.made_as["blank-1t"] = "raw"

    # 5b. No object map (krbd-compatible features): data at 0 and across the 2 GiB mark.
    c.rbd("create", "--image-feature", "layering", "--size", "3G", f"{POOL}/plain-3g")
    with rados.Rados(conffile=c.conf) as cluster, cluster.open_ioctx(POOL) as io, \
            rbd.Image(io, "plain-3g") as img:
        img.write(b"\x5a" * MiB, 0)
        img.write(b"\xa5" * MiB, 2 * 1024 * MiB - 4096)  # across a 1 GiB window edge
    imgs.made_as["plain-3g"] = "raw"

    # 6. An image in a namespace (not part of the pool's default namespace scan).
    c.rbd("create", "--size", "8M", f"{POOL}/{NS}/ns-img")
    # 7. A clone whose parent pool was deleted (in pool BROKEN): listed, cannot be opened.
    for pool in ("dkgone", BROKEN):
        c.ceph("osd", "pool", "create", pool, "8", "8")
        c.ceph("osd", "pool", "application", "enable", pool, "rbd")
    c.rbd("create", "--size", "8M", "dkgone/base")
    c.rbd("snap", "create", "dkgone/base@snap")
    c.rbd("snap", "protect", "dkgone/base@snap")
    c.rbd("clone", "dkgone/base@snap", f"{BROKEN}/orphan")
    c.ceph("osd", "pool", "delete", "dkgone", "dkgone", "--yes-i-really-really-mean-it")
    yield imgs
    for pool in (POOL, BROKEN):
        c.ceph("osd", "pool", "delete", pool, pool, "--yes-i-really-really-mean-it")
