"""An LVM2 volume group on an image file without device-mapper (this kernel has none): the
PV region is loop-attached with an offset, lvm runs with ``activation=0`` (it writes its
metadata, activates nothing), and the LV's content (mke2fs -d into a scratch file) is written
to the byte range ``lvs`` reports for it."""

from __future__ import annotations

import json
import pathlib
import tempfile

from diskkit.runner import run
from sample_images.recipes import _disk

_CONFIG = ('devices {{ filter=["a|^{dev}$|","r|.*|"] use_devicesfile=0 '
           "obtain_device_list_from_udev=0 }} global {{ activation=0 }} "
           "backup {{ backup=0 archive=0 }} activation {{ udev_sync=0 udev_rules=0 }}")


def _lvm(dev: str, *args: str) -> str:
    return run(["lvm", args[0], "--config", _CONFIG.format(dev=dev), *args[1:]],
               timeout=60).stdout


def make_lv_disk(path: pathlib.Path, size: int, vg: str, lv: str, lv_size: int) -> None:
    """``path``: MBR disk, partition 1 (type 8e) a PV of ``vg`` with one linear LV ``lv``
    holding an ext2 filesystem with /boot/grub (grub.cfg + modules)."""
    mib = _disk.MiB
    _disk.blank(path, size)
    _disk.partition(path, "label: dos\nlabel-id: 0x4449534b\nstart=2048, type=8e\n")
    start, length = mib, size - mib
    with tempfile.TemporaryDirectory(prefix="diskkit-lvm-") as t:
        tmp = pathlib.Path(t)
        root = tmp / "root"
        _disk.grub_tree(root)
        content = tmp / "lv.ext2"
        run(["mkfs.ext2", "-q", "-F", "-d", str(root), str(content), f"{lv_size // 1024}k"],
            timeout=120)
        dev = run(["losetup", "-f", "--show", "--offset", str(start), "--sizelimit",
                   str(length), str(path)], timeout=30).stdout.strip()
        try:
            _lvm(dev, "pvcreate", "-q", dev)
            _lvm(dev, "vgcreate", "-q", vg, dev)
            _lvm(dev, "lvcreate", "-q", "-an", "--zero", "n", "-L", f"{lv_size // mib}M",
                 "-n", lv, vg)
            pvs = json.loads(_lvm(dev, "pvs", "--reportformat", "json", "--units", "b",
                                  "--nosuffix", "-o", "pe_start"))["report"][0]["pv"]
            segs = json.loads(_lvm(dev, "lvs", "--reportformat", "json", "--units", "b",
                                   "--nosuffix", "-o", "lv_name,seg_pe_ranges,vg_extent_size"
                                   ))["report"][0]["lv"]
        finally:
            run(["losetup", "-d", dev], timeout=30, check=False)
        seg = next(s for s in segs if s["lv_name"] == lv)
        first = int(seg["seg_pe_ranges"].split(":")[1].split("-")[0])
        offset = start + int(pvs[0]["pe_start"]) + first * int(seg["vg_extent_size"])
        _disk.dd(content, path, offset)
