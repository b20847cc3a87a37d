"""Sample images for format detection and the safety checks: one small image per format and
a few hostile ones, each with the format and finding codes ``diskkit check`` should report."""

from __future__ import annotations

import pathlib
import shutil
import struct
import tempfile

from diskkit.runner import run
from sample_images.recipe import Recipe


def _qemu_img(*args: object) -> None:
    run(["qemu-img", *map(str, args)], timeout=120)


def _create(fmt: str, size: str, *opts: str):
    def build(path: pathlib.Path) -> None:
        extra = [a for o in opts for a in ("-o", o)]
        _qemu_img("create", "-q", "-f", fmt, *extra, path, size)
    return build


def _patch(build, offset: int, data: bytes):
    def patched(path: pathlib.Path) -> None:
        build(path)
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(data)
    return patched


def _vmdk_passwd(path: pathlib.Path) -> None:
    path.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                    'createType="monolithicFlat"\n\nRW 2048 FLAT "/etc/passwd" 0\n')


def _iso(path: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (pathlib.Path(tmp) / "README.TXT").write_text("diskkit sample\n")
        run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "SAMPLE", "-o", path, tmp],
            timeout=60)


def _iso_polyglot(path: pathlib.Path) -> None:
    _iso(path)
    with tempfile.TemporaryDirectory() as tmp:
        q = pathlib.Path(tmp) / "h.qcow2"
        _qemu_img("create", "-q", "-f", "qcow2", q, "1M")
        header = q.read_bytes()[:512]
    with open(path, "r+b") as f:
        f.write(header)


def _ova(path: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = pathlib.Path(tmp)
        (t / "vm.ovf").write_text("<Envelope/>\n")
        _qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized",
                  t / "vm-disk1.vmdk", "16M")
        run(["tar", "-C", tmp, "-cf", path, "vm.ovf", "vm-disk1.vmdk"], timeout=60)


def _gzip(path: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = pathlib.Path(tmp) / "disk.raw"
        raw.write_bytes(b"\0" * (1 << 20))
        run(["gzip", "-k", raw], timeout=60)
        shutil.move(str(raw) + ".gz", path)


RECIPES = [
    Recipe("fmt-qcow2.qcow2", "A plain qcow2 v3 image, declared qcow2: safe",
           _create("qcow2", "64M"), "qcow2", {"format": "qcow2", "codes": []}),
    Recipe("fmt-stream.vmdk", "A streamOptimized VMDK (what OVAs carry): safe",
           _create("vmdk", "64M", "subformat=streamOptimized"), "vmdk",
           {"format": "vmdk", "codes": []}),
    Recipe("fmt-fixed.vhd", "A fixed VHD: its footer is only at the end (oslo and qemu's "
           "probe call it raw), so Glance refuses it as vhd", _create("vpc", "16M",
                                                                       "subformat=fixed"),
           "vhd", {"format": "vhd", "codes": ["glance-refuses"]}),
    Recipe("fmt-fixed-as-raw.vhd", "The same fixed VHD declared raw: the guest would see the "
           "footer", _create("vpc", "16M", "subformat=fixed"), "raw",
           {"format": "vhd", "codes": ["disk-format-mismatch"]}),
    Recipe("fmt-vhdx.vhdx", "A VHDX (Hyper-V) image", _create("vhdx", "64M"), "vhdx",
           {"format": "vhdx", "codes": []}),
    Recipe("fmt-vdi.vdi", "A VirtualBox VDI image", _create("vdi", "64M"), "vdi",
           {"format": "vdi", "codes": []}),
    Recipe("fmt-plain.iso", "An ISO 9660 image from xorriso", _iso, "iso",
           {"format": "iso", "codes": []}),
    Recipe("hostile-vmdk-passwd.vmdk", "A VMDK descriptor whose extent is /etc/passwd "
           "(CVE-2022-47951)", _vmdk_passwd, "vmdk",
           {"format": "vmdk", "codes": ["vmdk-create-type", "vmdk-extent-file"]}),
    Recipe("hostile-qcow2-backing.qcow2", "A qcow2 whose backing file is /etc/passwd "
           "(CVE-2024-32498)", lambda p: _qemu_img("create", "-q", "-f", "qcow2", "-u", "-b",
                                                  "/etc/passwd", "-F", "raw", p, "1M"),
           "qcow2", {"format": "qcow2", "codes": ["qcow2-backing-file"]}),
    Recipe("hostile-qcow2-datafile.qcow2", "A qcow2 with the external data file bit set",
           _patch(_create("qcow2", "1M"), 72, struct.pack(">Q", 1 << 2)), "qcow2",
           {"format": "qcow2", "codes": ["qcow2-data-file"]}),
    Recipe("hostile-polyglot.iso", "An ISO whose system area holds a qcow2 header: qemu-img's "
           "probe says qcow2", _iso_polyglot, "iso",
           {"format": "qcow2", "codes": ["polyglot", "disk-format-mismatch"]}),
    Recipe("hostile-qed.qed", "A QED image (unmaintained, refused by OpenStack)",
           _create("qed", "64M"), "raw",
           {"format": "qed", "codes": ["qed-unsupported", "disk-format-mismatch"]}),
    Recipe("archive-vm.ova", "An OVA package uploaded as if it were the disk", _ova, "vmdk",
           {"format": "ova", "codes": ["archive-upload", "disk-format-mismatch"]}),
    Recipe("archive-disk.raw.gz", "A gzip-compressed raw disk uploaded as raw", _gzip, "raw",
           {"format": "gzip", "codes": ["compressed-upload", "disk-format-mismatch"]}),
]
