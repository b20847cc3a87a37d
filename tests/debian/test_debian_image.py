"""The Debian 12 images are what they claim to be: checked with tools outside diskkit
(virt-inspector through the libguestfs appliance, blkid, the debootstrap tree itself)."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest

from diskkit.runner import run
from sample_images.recipes import debian as recipe

pytestmark = pytest.mark.slow


def _tree_kernels() -> set[str]:
    """Kernel versions in the debootstrap tree (``/boot/vmlinuz-VERSION``), from tar."""
    listing = run(["tar", "-tf", str(recipe.build_tree())], timeout=300).stdout
    return set(re.findall(r"^\./boot/vmlinuz-(\S+)$", listing, re.M))


def _os(xml: Any) -> Any:
    oses = xml.findall("operatingsystem")
    assert len(oses) == 1, [o.findtext("root") for o in oses]
    return oses[0]


@pytest.mark.parametrize("name", ["base", "xfs", "lvm", "uefi"])
def test_virt_inspector_sees_debian_12(debian_images: Any, debian_inspect: Any,
                                       name: str) -> None:
    image = debian_images.get(name)
    os_ = _os(debian_inspect(image))
    assert os_.findtext("name") == "linux"
    assert os_.findtext("distro") == "debian"
    assert os_.findtext("major_version") == "12"
    assert os_.findtext("osinfo") == "debian12"
    assert os_.findtext("arch") == "x86_64"
    assert os_.findtext("hostname") == recipe.HOSTNAME
    assert os_.findtext("package_format") == "deb"
    apps = {a.findtext("name"): a.findtext("version") for a in os_.iter("application")}
    kernels = _tree_kernels()
    assert kernels and all(v.endswith("-cloud-amd64") for v in kernels)
    assert {f"linux-image-{k}" for k in kernels} <= set(apps)
    for pkg in ("cloud-init", "openssh-server", "cloud-guest-utils", "qemu-guest-agent",
                "grub-pc", "initramfs-tools"):
        assert pkg in apps, pkg
    mounts = {m.text: m.get("dev") for m in os_.iter("mountpoint")}
    assert "/" in mounts
    if name == "uefi":
        assert "/boot/efi" in mounts
    if name == "lvm":
        assert os_.findtext("root") == "/dev/debian-vg/root"


def test_variant_without_cloud_init(debian_images: Any, debian_inspect: Any) -> None:
    apps = {a.findtext("name") for a in _os(debian_inspect(debian_images.get(
        "no-cloud-init"))).iter("application")}
    assert "cloud-init" not in apps and "openssh-server" in apps


def test_root_filesystem_identity(debian_images: Any, tmp_path: pathlib.Path) -> None:
    """blkid on the raw bytes: the UUIDs the variants promise (the changed one included)."""
    for name, uuid, fstype in (("base", recipe.ROOT_UUID, "ext4"),
                               ("xfs", recipe.ROOT_UUID, "xfs"),
                               ("uuid-changed", recipe.CHANGED_UUID, "ext4")):
        raw = tmp_path / f"{name}.raw"
        run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw",
             str(debian_images.get(name).path), str(raw)], timeout=300)
        out = run(["blkid", "-p", "-O", str(1 << 20), "-o", "export", str(raw)],
                  timeout=60).stdout
        assert f"UUID={uuid}" in out and f"TYPE={fstype}" in out, (name, out)
        raw.unlink()


def test_recorded_facts_match_the_variants(debian_images: Any) -> None:
    """The build-time ground truth (lsinitramfs, grub.cfg, blkid) shows each variant's
    difference, so the tests of other layers can lean on it."""
    base = debian_images.get("base").facts
    (initrd,) = base["initramfs"].values()
    assert initrd["magic"].startswith("1f8b")  # gzip: no zstd in the image
    assert {"virtio_blk", "virtio_scsi", "xfs"} <= set(initrd["modules"])
    assert "ext4" in base["modules_builtin"]  # the cloud kernel has ext4 built in
    assert all(f"root=UUID={recipe.ROOT_UUID}" in ln and "console=ttyS0" in ln
               for ln in base["grub_linux_lines"])
    assert base["blkid"]["root"]["UUID"] == recipe.ROOT_UUID
    assert base["hostname"] == recipe.HOSTNAME and base["cloud_init"] is True

    (no_virtio,) = debian_images.get("no-virtio").facts["initramfs"].values()
    assert "virtio_blk" not in no_virtio["modules"] and "virtio_scsi" not in no_virtio["modules"]
    (no_hook,) = debian_images.get("lvm-no-hook").facts["initramfs"].values()
    (hook,) = debian_images.get("lvm").facts["initramfs"].values()
    assert "lvm" in hook["programs"] and "lvm" not in no_hook["programs"]
    assert all("root=/dev/mapper/debian--vg-root" in ln
               for ln in debian_images.get("lvm").facts["grub_linux_lines"])
    assert not any("console=" in ln
                   for ln in debian_images.get("no-console").facts["grub_linux_lines"])
    assert debian_images.get("no-cloud-init").facts["cloud_init"] is False
    changed = debian_images.get("uuid-changed").facts
    assert changed["blkid"]["root"]["UUID"] == recipe.CHANGED_UUID
    assert f"UUID={recipe.ROOT_UUID}" in changed["fstab"]
    uefi = debian_images.get("uefi").facts["blkid"]
    assert uefi["esp"]["TYPE"] == "vfat" and uefi["esp"]["UUID"] == "D15C-0E5F"
    assert debian_images.get("root-not-last").facts["blkid"]["swap"]["UUID"] == \
        recipe.SWAP_UUID
    assert debian_images.get("xfs-grub-unreadable").facts["blkid"]["root"]["TYPE"] == "xfs"
