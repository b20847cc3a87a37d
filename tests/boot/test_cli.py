"""`diskkit info` carries the boot section (JSON) and prints a short boot section."""

from __future__ import annotations

import json
import shutil
import sys

from diskkit.runner import run
from tests.boot.conftest import grub_install


def test_info_json_and_text_have_boot(tmp_path, msdos_base):
    img = tmp_path / "disk.img"
    shutil.copy(msdos_base, img)
    grub_install(tmp_path, img, "(hd0,msdos1)/boot/grub", ["biosdisk", "part_msdos", "ext2"])
    out = run([sys.executable, "-m", "diskkit", "info", "--json", str(img)], timeout=120).stdout
    boot = json.loads(out)["boot"]
    assert boot["mbr"]["loader"] == "grub2"
    (g,) = boot["grub"]
    assert g["prefix"] == "(hd0,msdos1)/boot/grub"
    assert g["target"]["partition_number"] == 1 and g["target"]["grub_cfg"] is True
    text = run([sys.executable, "-m", "diskkit", "info", str(img)], timeout=120).stdout
    assert "GRUB (mbr): core.img at sector 1" in text
    assert "grub.cfg found" in text
