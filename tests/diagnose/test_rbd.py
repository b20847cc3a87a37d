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
