"""GRUB whose prefix is an LVM logical volume ((lvm/VG-LV) and (lvmid/VGUUID/LVUUID)),
resolved through the layout engineer's inspect_layout on an image built by lvm2 itself
(tests/fixtures/lvm_images.py); the UUIDs come from lvm's own report."""

from __future__ import annotations

import shutil

import pytest

from diskkit.boot import inspect_boot
from diskkit.layout import inspect_layout
from diskkit.readers.raw import FileReader
from tests.boot.conftest import grub_install


def _prefixes(report) -> list[str]:
    vg = report["vgs"][0]["vg_uuid"]
    lv = next(x["lv_uuid"] for x in report["lvs"] if x["lv_name"] == "root")
    return ["(lvm/ubuntu--vg-root)/boot/grub", f"(lvmid/{vg}/{lv})/boot/grub"]


@pytest.mark.parametrize("which", [0, 1])
def test_lvm_prefix_resolves_to_the_lv_holding_grub_cfg(tmp_path, lvm_images, which):
    img = tmp_path / "disk.img"
    shutil.copy(lvm_images.root, img)
    prefix = _prefixes(lvm_images.report["root"])[which]
    grub_install(tmp_path, img, prefix, ["biosdisk", "part_msdos", "lvm", "ext2"])
    with FileReader(str(img)) as r:
        info = inspect_boot(r, inspect_layout(r))
    (g,) = info.grub
    assert g.core.prefix == prefix and "lvm" in g.core.modules
    t = g.target
    assert (t.kind, t.lv, t.exists, t.filesystem, t.grub_cfg) == (
        "lvm", "ubuntu-vg/root", True, "ext", True)
    assert t.normal_mod is False  # the fixture's LV holds grub.cfg but no modules
    assert "grub-normal-mod-missing" in [f.code for f in info.findings]


def test_missing_lv_is_a_finding(tmp_path, lvm_images):
    img = tmp_path / "disk.img"
    shutil.copy(lvm_images.root, img)
    grub_install(tmp_path, img, "(lvm/ubuntu--vg-gone)/boot/grub",
                 ["biosdisk", "part_msdos", "lvm", "ext2"])
    with FileReader(str(img)) as r:
        info = inspect_boot(r, inspect_layout(r))
    assert info.grub[0].target.exists is False
    assert "grub-prefix-partition-missing" in [f.code for f in info.findings]
