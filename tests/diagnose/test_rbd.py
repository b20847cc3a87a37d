"""Ceph RBD volumes (a real single-node cluster): a volume is always raw, so a qcow2 uploaded
with disk_format=raw and cloned into a volume is diagnosed from the rbd: target alone, and
qemu boots the volume through its rbd driver (read-only, snapshot overlay)."""

from __future__ import annotations

from typing import Any

import pytest

from diskkit.boottest import boot_test
from diskkit.diagnose import diagnose
from diskkit.runner import run


@pytest.fixture(scope="module")
def volumes(ceph_cluster, boot_samples: dict[str, Any]) -> dict[str, str]:
    """Sample bytes imported as they are into RBD images (what a raw upload + clone gives)."""
    out = {}
    for name, image in (("boot-qcow2-as-raw.raw", "dk-diag-qcow2"),
                        ("boot-grub-mbr.img", "dk-diag-grub")):
        run(["rbd", "-c", str(ceph_cluster.conf), "import", "--no-progress",
             boot_samples[name]["path"], f"{ceph_cluster.pool}/{image}"], timeout=120)
        out[name] = f"rbd:{ceph_cluster.pool}/{image}:conf={ceph_cluster.conf}"
    return out


def test_qcow2_bytes_in_a_volume(volumes: dict[str, str]) -> None:
    spec = volumes["boot-qcow2-as-raw.raw"]
    d = diagnose(spec)  # no -f: an RBD volume is raw
    assert (d.format, d.detected_format, d.will_boot) == ("raw", "qcow2", False)
    assert d.findings[0].code == "container-as-raw"
    o = boot_test(spec, timeout=60)
    assert (o.format, o.outcome) == ("raw", "no-bootable-device")


def test_healthy_volume_boots_from_ceph(volumes: dict[str, str]) -> None:
    spec = volumes["boot-grub-mbr.img"]
    assert diagnose(spec).will_boot is True
    o = boot_test(spec, timeout=90)
    assert (o.outcome, o.loader) == ("bootloader-reached", "grub"), o.messages


def _clone(ceph_cluster: Any, parent: str, clone: str) -> str:
    """Snapshot ``parent`` (pool image), protect it and clone it as Cinder does."""
    conf = ["-c", str(ceph_cluster.conf)]
    pool = ceph_cluster.pool
    run(["rbd", *conf, "snap", "create", f"{pool}/{parent}@snap"], timeout=60)
    run(["rbd", *conf, "snap", "protect", f"{pool}/{parent}@snap"], timeout=60)
    run(["rbd", *conf, "clone", f"{pool}/{parent}@snap", f"{pool}/{clone}"], timeout=60)
    return f"rbd:{pool}/{clone}:conf={ceph_cluster.conf}"


def test_clone_names_the_parent_whose_bytes_fail(ceph_cluster: Any,
                                                 volumes: dict[str, str]) -> None:
    """A volume cloned from an image whose bytes are qcow2: the cause is the parent's,
    named with its snapshot, and the fix starts with the parent (ground truth: `rbd info`)."""
    spec = _clone(ceph_cluster, "dk-diag-qcow2", "dk-diag-qcow2-clone")
    info = run(["rbd", "-c", str(ceph_cluster.conf), "info",
                f"{ceph_cluster.pool}/dk-diag-qcow2-clone"], timeout=60).stdout
    parent = f"{ceph_cluster.pool}/dk-diag-qcow2@snap"
    assert f"parent: {parent}" in info
    d = diagnose(spec)
    assert d.will_boot is False and d.findings[0].code == "container-as-raw"
    origin = d.findings[0].details["origin"]
    assert (origin["parent"], origin["image"], origin["snapshot"]) == (
        parent, "dk-diag-qcow2", "snap")
    fix = d.findings[0].fix or ""
    assert fix.index(parent) < fix.index("dk-diag-qcow2-clone")
    assert parent in d.reason


def test_clone_own_writes_are_the_clones(ceph_cluster: Any, volumes: dict[str, str]) -> None:
    """A clone of a bootable image whose own sector 0 was wiped: the parent boots, so the
    cause stays the clone's (no origin)."""
    spec = _clone(ceph_cluster, "dk-diag-grub", "dk-diag-grub-clone")
    run(["qemu-io", "-f", "raw", "-c", "write -z 0 512", spec], timeout=60)
    d = diagnose(spec)
    assert d.will_boot is False
    assert "origin" not in d.findings[0].details
    assert diagnose(volumes["boot-grub-mbr.img"]).will_boot is True
