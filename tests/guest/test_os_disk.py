"""inspect_guest on real disks built at test time: partitions by sfdisk, ext4 filesystems made
from trees by mkfs.ext4 -d, a qcow2 made by qemu-img; read through diskkit's readers and the
no-root filesystem layer. fstab resolution is checked against blkid's view of the same
filesystems."""

from __future__ import annotations

import pathlib
import shutil
import uuid

import pytest

from diskkit.guest import inspect_guest
from diskkit.layout.inspect import inspect_layout
from diskkit.readers.base import Reader
from diskkit.readers.qcow2 import Qcow2Reader
from diskkit.readers.raw import FileReader
from diskkit.runner import run
from tests.guest.os_build import debian_tree, grub_mkconfig, host_kernel, make_initramfs, write

MiB = 1 << 20
ROOT_UUID = str(uuid.UUID(int=0x1234_5678_9ABC_4DEF_8123_456789ABCDEF))

needs_tools = pytest.mark.skipif(shutil.which("mkfs.ext4") is None or
                                 shutil.which("sfdisk") is None, reason="e2fsprogs/fdisk")


def open_disk(path: str, fmt: str) -> Reader:
    """The guest-visible disk of a raw or qcow2 file, through diskkit's own readers."""
    return Qcow2Reader(FileReader(path)) if fmt == "qcow2" else FileReader(path)


def _mkfs(img: pathlib.Path, tree: pathlib.Path, size: int, *args: str) -> None:
    run(["mkfs.ext4", "-q", "-F", "-d", str(tree), *args, str(img), f"{size // 1024}k"],
        timeout=120)


def _blkid(img: pathlib.Path, offset: int) -> dict[str, str]:
    out = run(["blkid", "-p", "-O", str(offset), "-o", "export", str(img)], timeout=30).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def debian_disk(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """MBR disk: p1 = /boot (ext4, label BOOT), p2 = / (ext4, fixed UUID); a Debian-like
    root whose fstab names /boot by LABEL, / by UUID, plus entries that do not resolve."""
    base = tmp_path_factory.mktemp("debdisk")
    kver = host_kernel()
    root = debian_tree(base / "root", hostname="disk-guest", version=kver)
    boot = base / "boot"
    shutil.move(str(root / "boot"), str(boot))
    (root / "boot").mkdir()
    cfg = grub_mkconfig({"GRUB_DEVICE": f"UUID={ROOT_UUID}",
                         "GRUB_CMDLINE_LINUX": "console=ttyS0,115200n8"})
    # GRUB sees /boot as its own filesystem: drop the /boot prefix as grub-mkconfig does then
    write(boot, "grub/grub.cfg", cfg.replace("/boot/", "/"))
    make_initramfs(boot / f"initrd.img-{kver}", kver,
                   ["block/virtio_blk.ko", "fs/ext4.ko"], compression="gzip")
    write(root, "etc/fstab", "\n".join([
        "# <file system> <mount point> <type> <options> <dump> <pass>",
        f"UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1",
        "LABEL=BOOT /boot ext4 defaults 0 2",
        "/dev/sdb1 /data ext4 defaults 0 2",
        "/dev/vda1 /mnt/v ext4 noauto 0 0",
        "/dev/sda2 /mnt/s ext4 ro,nofail 0 0",
        "UUID=dead-beef /srv vfat nofail 0 0",
        "tmpfs /tmp tmpfs defaults 0 0",
        "/dev/disk/by-id/virtio-abc /x ext4 defaults 0 0", ""]))
    disk = base / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(256 * MiB)
    run(["sfdisk", "-q", str(disk)], input="label: dos\nlabel-id: 0x1a2b3c4d\n"
        "start=2048, size=131072, type=83\nstart=133120, type=83\n", timeout=60)
    b, r = base / "boot.img", base / "root.img"
    _mkfs(b, boot, 64 * MiB, "-L", "BOOT")
    _mkfs(r, root, 256 * MiB - 133120 * 512, "-U", ROOT_UUID)
    with open(disk, "r+b") as f:
        for img, off in ((b, 2048 * 512), (r, 133120 * 512)):
            f.seek(off)
            f.write(img.read_bytes())
    return disk


@needs_tools
def test_debian_disk_raw(debian_disk: pathlib.Path) -> None:
    with open_disk(str(debian_disk), "raw") as disk:
        layout = inspect_layout(disk)
        info = inspect_guest(disk, layout)
    assert len(info.roots) == 1, info.notes
    r = info.roots[0]
    assert r.location == "partition 2" and r.fstype == "ext4"
    assert r.fs_uuid == _blkid(debian_disk, 133120 * 512)["UUID"] == ROOT_UUID
    assert r.hostname == "disk-guest" and r.distro == "debian"
    assert r.mountpoints["/"] == "partition 2" and r.mountpoints["/boot"] == "partition 1"
    assert _blkid(debian_disk, 2048 * 512)["LABEL"] == "BOOT"
    fst = {e.mountpoint: e for e in r.fstab}
    assert fst["/"].kind == "uuid" and fst["/"].resolved and not fst["/"].nofail
    assert fst["/boot"].kind == "label" and fst["/boot"].location == "partition 1"
    assert not fst["/data"].resolved and not fst["/data"].nofail  # sdb: a second disk
    assert fst["/data"].bus == "scsi/sata"
    assert fst["/mnt/v"].location == "partition 1" and fst["/mnt/v"].bus == "virtio"
    assert fst["/mnt/v"].nofail  # noauto
    assert fst["/mnt/s"].location == "partition 2" and fst["/mnt/s"].nofail
    assert not fst["/srv"].resolved and fst["/srv"].nofail
    assert fst["/tmp"].kind == "virtual" and fst["/tmp"].resolved
    assert fst["/x"].kind == "by-id" and not fst["/x"].resolved
    assert fst["/data"].source.line == 4
    from tests.guest.test_os_debian import assert_fstab_equals_findmnt

    fstab = debian_disk.parent / "root/etc/fstab"
    assert_fstab_equals_findmnt(fstab, r)
    # /boot is its own filesystem: kernels and grub.cfg are read from partition 1
    kver = host_kernel()
    assert [k.version for k in r.kernels] == [kver]
    k = r.kernels[0]
    assert k.initramfs and k.initramfs.facts and k.initramfs.facts.compression == ("none",
                                                                                     "gzip")
    assert k.has_driver("virtio_blk") and k.has_driver("virtio_scsi") is False
    assert r.boot and r.boot.grub and r.boot.boot_prefix == "/boot"
    assert r.boot.default_entry and r.boot.default_entry.kernel == f"/vmlinuz-{kver}"
    assert r.boot.cmdline == f"root=UUID={ROOT_UUID} ro console=ttyS0,115200n8"
    assert r.serial_console == "ttyS0,115200n8"


@needs_tools
def test_partuuid_and_qcow2(debian_disk: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Through a qcow2 made by qemu-img: the same facts; MBR PARTUUID resolves."""
    q = tmp_path / "d.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(debian_disk), str(q)],
        timeout=120)
    from diskkit.guest.fstab import Resolver

    with open_disk(str(q), "qcow2") as disk:
        layout = inspect_layout(disk)
        info = inspect_guest(disk, layout, read_initramfs=False)
        res = Resolver(layout)
        partuuid = _blkid(debian_disk, 2048 * 512).get("PART_ENTRY_UUID")
    assert info.roots and info.roots[0].hostname == "disk-guest"
    assert info.roots[0].kernels[0].initramfs is not None
    assert info.roots[0].kernels[0].initramfs.facts is None  # not read when asked not to
    assert res.resolve("PARTUUID=1a2b3c4d-02")[1] == "partition 2"
    if partuuid:
        assert res.resolve(f"PARTUUID={partuuid}")[1] == "partition 1"
    assert res.resolve("PARTUUID=1a2b3c4d-07")[1] is None


@needs_tools
def test_unreadable_filesystem_is_a_note(tmp_path: pathlib.Path) -> None:
    """A filesystem the layer cannot open gives a note, not an exception."""
    if shutil.which("mkfs.btrfs") is None:
        pytest.skip("btrfs-progs")
    img = tmp_path / "b.img"
    with open(img, "wb") as f:
        f.truncate(128 * MiB)
    run(["mkfs.btrfs", "-q", str(img)], timeout=60)
    with open_disk(str(img), "raw") as disk:
        info = inspect_guest(disk, inspect_layout(disk))
    assert info.roots == ()
    assert info.notes and "btrfs" in info.notes[0]


@needs_tools
def test_summary_lines(debian_disk: pathlib.Path) -> None:
    """The readable `os` section names the OS, the kernel's drivers and each fstab entry that
    is not on this disk."""
    from diskkit.guest.report import summary_lines

    with open_disk(str(debian_disk), "raw") as disk:
        info = inspect_guest(disk, inspect_layout(disk))
    lines = summary_lines(info)
    assert lines[0].startswith("partition 2 (ext4): linux debian")
    assert any(line.startswith(f"  kernel {host_kernel()}") and "virtio_blk" in line
               for line in lines)
    assert "  fstab /data <- /dev/sdb1: NOT ON THIS DISK [scsi/sata]" in lines
    assert "  fstab /boot <- LABEL=BOOT: partition 1" in lines
    assert "  serial console: ttyS0,115200n8" in lines


@needs_tools
def test_whole_disk_root(tmp_path: pathlib.Path) -> None:
    """A filesystem on the whole disk (no partition table) is a root too; /dev/vda names it."""
    root = debian_tree(tmp_path / "root", hostname="flat")
    write(root, "etc/fstab", "/dev/vda / ext4 defaults 0 1\n")
    img = tmp_path / "flat.img"
    _mkfs(img, root, 96 * MiB)
    with open_disk(str(img), "raw") as disk:
        info = inspect_guest(disk, inspect_layout(disk), read_initramfs=False)
    (r,) = info.roots
    assert r.location == "disk" and r.hostname == "flat"
    assert r.fstab[0].location == "disk" and r.fstab[0].bus == "virtio"


@needs_tools
def test_many_filesystems_are_bounded(tmp_path: pathlib.Path) -> None:
    """70 ext4 partitions (sfdisk GPT, one mkfs.ext4 image copied into each): at most
    MAX_ROOT_CANDIDATES are opened, the rest is a note."""
    from diskkit.guest.inspect import MAX_ROOT_CANDIDATES

    n = MAX_ROOT_CANDIDATES + 6
    tree = tmp_path / "t"
    write(tree, "etc/hostname", "x\n")
    fs = tmp_path / "fs.img"
    _mkfs(fs, tree, 1 * MiB)
    disk = tmp_path / "many.img"
    with open(disk, "wb") as f:
        f.truncate((n + 2) * MiB)
    table = "label: gpt\n" + "".join(f"size={MiB // 512}\n" for _ in range(n))
    run(["sfdisk", "-q", str(disk)], input=table, timeout=60)
    data = fs.read_bytes()
    with FileReader(str(disk)) as r:
        layout = inspect_layout(r)
    with open(disk, "r+b") as f:
        for p in layout.partitions:
            f.seek(p.start)
            f.write(data)
    with open_disk(str(disk), "raw") as r:
        layout = inspect_layout(r)
        assert sum(1 for x in layout.filesystems if x.type == "ext4") == n
        info = inspect_guest(r, layout)
    assert info.roots == ()
    assert info.notes == (f"6 more filesystems not examined for an operating system (at most "
                          f"{MAX_ROOT_CANDIDATES} per disk)",)


@needs_tools
def test_gpt_partlabel_partuuid_and_lvm_names(tmp_path: pathlib.Path) -> None:
    """GPT names and GUIDs (as `sfdisk --json` reads them back) resolve; so do
    /dev/disk/by-* forms; names of another disk or bus do not."""
    from diskkit.guest.fstab import Resolver

    disk = tmp_path / "gpt.img"
    with open(disk, "wb") as f:
        f.truncate(16 * MiB)
    run(["sfdisk", "-q", str(disk)], input="label: gpt\nsize=4MiB, name=esp\n"
        "size=8MiB, name=\"root fs\"\n", timeout=60)
    with FileReader(str(disk)) as r:
        layout = inspect_layout(r)
    res = Resolver(layout)
    parts = {p.number: p for p in layout.partitions}
    out = run(["sfdisk", "--json", str(disk)], timeout=30).stdout
    import json

    table = json.loads(out)["partitiontable"]["partitions"]
    for n, entry in enumerate(table, 1):
        assert res.resolve(f"PARTUUID={entry['uuid'].lower()}")[1] == f"partition {n}"
        assert res.resolve(f"/dev/disk/by-partuuid/{entry['uuid']}")[1] == f"partition {n}"
        assert parts[n].name == entry["name"]
    assert res.resolve("PARTLABEL=esp")[1] == "partition 1"
    assert res.resolve("/dev/disk/by-partlabel/root\\x20fs")[1] == "partition 2"  # as udev
    assert res.resolve("PARTLABEL=root fs")[1] == "partition 2"
    assert res.resolve("/dev/nvme0n1p2")[1:3] == ("partition 2", "nvme")
    assert res.resolve("/dev/nvme1n1p2")[1] is None
    assert res.resolve("/dev/xvda1")[1:3] == ("partition 1", "xen")
    assert res.resolve("/dev/sda9")[1] is None
    assert res.resolve("/dev/mapper/vg--x-root")[0] == "lvm"
