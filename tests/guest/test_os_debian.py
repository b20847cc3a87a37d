"""The real Debian 12 images (tests/fixtures/debian.py): every fact diskkit reads from the
bytes equals what virt-inspector (libguestfs, one appliance run per image, shared) reports;
the initramfs equals lsinitramfs' listing and fstab equals findmnt's parse on the unpacked
tree the images are made from."""

from __future__ import annotations

import hashlib
import pathlib
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from diskkit.guest import GuestInfo, inspect_guest, inspect_tree
from diskkit.guest.inspect import OSRoot
from diskkit.layout.inspect import inspect_layout
from diskkit.readers.qcow2 import Qcow2Reader
from diskkit.readers.raw import FileReader
from diskkit.runner import run

pytestmark = pytest.mark.slow

#: Variants compared with virt-inspector (each costs one appliance run, shared).
COMPARED = ("base", "xfs", "lvm", "uefi", "no-cloud-init", "fstab-sda")


def _inspect(path: pathlib.Path, read_initramfs: bool = True) -> GuestInfo:
    with Qcow2Reader(FileReader(str(path))) as disk:
        return inspect_guest(disk, inspect_layout(disk), read_initramfs=read_initramfs)


def _dev_to_location(dev: str) -> str:
    """virt-inspector's device name (its appliance sees the disk as sda) -> diskkit's."""
    m = re.fullmatch(r"/dev/sda(\d+)", dev)
    if m:
        return f"partition {m.group(1)}"
    if dev == "/dev/sda":
        return "disk"
    m = re.fullmatch(r"/dev/(?:mapper/)?([^/]+)[/-](\w+)", dev)
    assert m, dev
    return f"lv {m.group(1).replace('--', '-')}/{m.group(2)}"


def _apps(os_el: ET.Element) -> dict[str, dict[str, str]]:
    out = {}
    for app in os_el.iter("application"):
        out[app.findtext("name", "")] = {c.tag: c.text or "" for c in app}
    return out


def _deb_version(app: dict[str, str]) -> str:
    v = app.get("version", "")
    if app.get("release"):
        v += "-" + app["release"]
    if app.get("epoch") and app["epoch"] != "0":
        v = f"{app['epoch']}:{v}"
    return v


@pytest.fixture(scope="module", params=COMPARED)
def compared(request: pytest.FixtureRequest, debian_images: Any,
             debian_inspect: Any) -> tuple[Any, ET.Element, GuestInfo]:
    image = debian_images.get(request.param)
    xml = debian_inspect(image)
    return image, xml, _inspect(image.path)


def test_facts_equal_virt_inspector(compared: tuple[Any, ET.Element, GuestInfo]) -> None:
    image, xml, info = compared
    oses = xml.findall("operatingsystem")
    assert len(info.roots) == len(oses) == 1, info.notes
    r: OSRoot = info.roots[0]
    o = oses[0]
    assert r.location == _dev_to_location(o.findtext("root", ""))
    assert r.type == o.findtext("name")
    assert r.distro == o.findtext("distro")
    assert r.product_name == o.findtext("product_name")
    assert str(r.major) == o.findtext("major_version")
    assert str(r.minor) == o.findtext("minor_version")
    assert r.arch == o.findtext("arch")
    assert r.hostname == o.findtext("hostname")
    assert r.osinfo == o.findtext("osinfo")
    assert r.packages.format == o.findtext("package_format")
    assert r.packages.manager == o.findtext("package_management")
    apps = _apps(o)
    assert r.packages.count == len(apps)
    # kernels: the linux-image-VERSION packages virt-inspector lists
    kpkgs = {n[len("linux-image-"):] for n in apps if re.match(r"linux-image-\d", n)}
    assert {k.version for k in r.kernels} == kpkgs
    # mount points: fstab resolved on this disk, as libguestfs resolves it
    want = {m.text: _dev_to_location(m.get("dev", "")) for m in o.iter("mountpoint")}
    have = {mp: loc for mp, loc in r.mountpoints.items() if mp in want or mp == "/"}
    assert have == want
    # filesystems: UUIDs of the root as libguestfs reads them
    for f in o.iter("filesystem"):
        if _dev_to_location(f.get("dev", "")) == r.location and f.findtext("uuid"):
            assert (r.fs_uuid or "").lower() == f.findtext("uuid", "").lower()
    if "cloud-init" in apps:
        assert r.packages.notable["cloud-init"] == _deb_version(apps["cloud-init"])
        assert r.cloud and r.cloud.cloud_init.installed
    else:
        assert r.cloud and not r.cloud.cloud_init.installed
    assert image.variant.cloud_init == ("cloud-init" in apps)


def test_boot_facts_match_the_recipe(compared: tuple[Any, ET.Element, GuestInfo]) -> None:
    """The GRUB default entry's command line names the root the way the variant says."""
    image, _xml, info = compared
    r = info.roots[0]
    assert r.boot and r.boot.default_entry and r.boot.cmdline
    kv = {k.version for k in r.kernels}
    assert any((r.boot.default_entry.kernel or "").endswith(f"vmlinuz-{v}") for v in kv)
    assert (r.serial_console is not None) == bool(image.variant.console)
    root_spec = next(e for e in r.fstab if e.mountpoint == "/")
    assert root_spec.resolved and root_spec.location == r.location
    if image.variant.fstab_root.startswith("/dev/sd"):
        assert root_spec.kind == "devname" and root_spec.bus == "scsi/sata"
    k = r.kernels[0]
    assert k.has_driver("virtio_blk") and k.has_driver(r.fstype.replace("ext4", "ext4"))
    if image.variant.name == "lvm":
        assert r.location.startswith("lv ") and k.initramfs and k.initramfs.facts
        assert k.initramfs.facts.lvm and k.has_driver("dm_mod")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The parts of the unpacked debootstrap tree the images are made from that OS
    inspection reads (the tarball the Debian recipe builds)."""
    from sample_images.recipes.debian import build_tree

    tar = build_tree()
    out = tmp_path_factory.mktemp("tree")
    run(["tar", "-C", str(out), "-xf", str(tar), "--wildcards", "./etc", "./boot",
         "./var/lib/dpkg", "./usr/bin/dash", "./usr/bin/sh", "./bin", "./lib",
         "./usr/lib/modules", "./usr/sbin/sshd", "./usr/bin/cloud-init", "./usr/bin/growpart",
         "./usr/sbin/qemu-ga", "./usr/bin/apt-get", "./usr/lib/os-release",
         "./lib/systemd/system", "./usr/lib/systemd/system"], timeout=600, check=False)
    return out


def test_tree_initramfs_equals_lsinitramfs(tree: pathlib.Path) -> None:
    from diskkit.guest.initramfs import list_initramfs

    (initrd,) = sorted(tree.glob("boot/initrd.img-*"))
    names = {n for n in run(["lsinitramfs", str(initrd)], timeout=300).stdout.splitlines() if n}
    listing = list_initramfs(initrd.read_bytes())
    assert listing.names() == names
    lsmods = {re.sub(r"\.ko(\.\w+)?$", "", n.rsplit("/", 1)[-1]).replace("-", "_")
              for n in names if re.search(r"/lib/modules/.*\.ko(\.\w+)?$", n)}
    info = inspect_tree(str(tree))
    k = next(k for k in info.roots[0].kernels if initrd.name.endswith(k.version))
    assert k.initramfs and k.initramfs.facts
    assert set(k.initramfs.facts.modules) == lsmods


def assert_fstab_equals_findmnt(fstab: pathlib.Path, root: OSRoot) -> None:
    """diskkit's fstab entries are util-linux's parse of the same file."""
    out = run(["findmnt", "--tab-file", str(fstab), "-n", "-P", "-o",
               "SOURCE,TARGET,FSTYPE,OPTIONS"], timeout=30).stdout
    want = [re.findall(r'[A-Z]+="([^"]*)"', line) for line in out.splitlines() if line]
    have = [[e.spec, e.mountpoint, e.fstype, ",".join(e.options)] for e in root.fstab]
    assert have == [[w.replace("\\x20", " ") for w in row] for row in want]


def test_image_initramfs_equals_lsinitramfs(debian_base: Any, tmp_path: pathlib.Path) -> None:
    """The base image's initramfs, taken out of the image by e2fsprogs' debugfs, lists as
    lsinitramfs does; diskkit's filesystem layer read the same bytes."""
    from diskkit.guest.fs import open_filesystem
    from diskkit.guest.initramfs import list_initramfs
    from diskkit.layout.inspect import partition_reader

    info = _inspect(debian_base.path)
    k = info.roots[0].kernels[0]
    assert k.initramfs and k.initramfs.facts and info.roots[0].location == "partition 1"
    raw = tmp_path / "base.raw"
    run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(debian_base.path), str(raw)],
        timeout=600)
    with FileReader(str(raw)) as disk:
        p = inspect_layout(disk).partition(1)
        assert p is not None
        out = tmp_path / "initrd"
        run(["debugfs", "-R", f"dump {k.initramfs.path} {out}", f"{raw}?offset={p.start}"],
            timeout=120)
        run(["debugfs", "-R", f"dump /etc/fstab {tmp_path / 'fstab'}",
             f"{raw}?offset={p.start}"], timeout=120)
        with open_filesystem(partition_reader(disk, p), "ext4") as fs:
            data = fs.read(k.initramfs.path, limit=1 << 30)
    raw.unlink()
    assert hashlib.sha256(data).digest() == hashlib.sha256(out.read_bytes()).digest()
    names = {n for n in run(["lsinitramfs", str(out)], timeout=300).stdout.splitlines() if n}
    assert list_initramfs(out.read_bytes()).names() == names
    lsmods = {re.sub(r"\.ko(\.\w+)?$", "", n.rsplit("/", 1)[-1]).replace("-", "_")
              for n in names if re.search(r"/lib/modules/.*\.ko(\.\w+)?$", n)}
    assert set(k.initramfs.facts.modules) == lsmods
    assert_fstab_equals_findmnt(tmp_path / "fstab", info.roots[0])


def test_tree_facts_equal_image_facts(tree: pathlib.Path, debian_base: Any) -> None:
    """inspect_tree on the unpacked tree and inspect_guest on the base image agree."""
    t = inspect_tree(str(tree), read_initramfs=False).roots[0]
    i = _inspect(debian_base.path, read_initramfs=False).roots[0]
    for attr in ("distro", "product_name", "major", "minor", "osinfo", "hostname", "arch"):
        assert getattr(t, attr) == getattr(i, attr), attr
    assert t.packages.count == i.packages.count
    assert [k.version for k in t.kernels] == [k.version for k in i.kernels]


def _variant_names() -> list[str]:
    from sample_images.recipes.debian import VARIANTS

    return list(VARIANTS)


@pytest.mark.parametrize("name", _variant_names())
def test_variant_facts(name: str, debian_images: Any) -> None:
    """What each variant changes is what diskkit reads from its bytes (the facts diagnose
    and validate build on)."""
    image = debian_images.get(name)
    v = image.variant
    info = _inspect(image.path)
    assert len(info.roots) == 1 and not info.notes
    r = info.roots[0]
    assert r.fstype == v.fs
    assert r.location.startswith("lv ") == v.layout.endswith("lvm")
    assert r.boot and r.boot.cmdline
    assert (r.serial_console is not None) == v.console
    assert r.cloud and r.cloud.cloud_init.installed == r.cloud.cloud_init.enabled == v.cloud_init
    root = next(e for e in r.fstab if e.mountpoint == "/")
    assert root.spec.startswith("/dev/sd") == v.fstab_root.startswith("/dev/sd")
    assert root.resolved == (v.post != "uuid-changed")
    blocking = [e for e in r.fstab if not e.resolved and not e.nofail]
    assert bool(blocking) == (v.fstab_missing or v.post == "uuid-changed")
    k = r.kernels[0]
    assert k.initramfs and k.initramfs.facts
    assert k.has_driver("virtio_blk") == (v.initramfs_modules is None)
    assert r.initramfs_config
    assert r.initramfs_config.modules == ("list" if v.initramfs_modules else "most")
    if v.layout.endswith("lvm"):
        assert k.initramfs.facts.lvm == v.lvm_hook
    if v.layout == "gpt-uefi":
        assert r.mountpoints.get("/boot/efi") == "partition 1"


def test_info_json_os_section(compared: tuple[Any, ET.Element, GuestInfo]) -> None:
    """`diskkit info --json` (the command) reports the same OS facts as virt-inspector."""
    import json
    import sys

    image, xml, _info = compared
    out = run([sys.executable, "-m", "diskkit", "info", "--json", str(image.path)],
              timeout=300).stdout
    (r,) = json.loads(out)["os"]["roots"]
    o = xml.findall("operatingsystem")[0]
    for key in ("distro", "product_name", "major_version", "minor_version", "hostname", "arch",
                "osinfo"):
        assert str(r[key]) == o.findtext(key), key
    assert r["packages"]["format"] == o.findtext("package_format")
    assert r["packages"]["manager"] == o.findtext("package_management")
    assert r["packages"]["count"] == len(_apps(o))
    want = {m.text: _dev_to_location(m.get("dev", "")) for m in o.iter("mountpoint")}
    assert {mp: loc for mp, loc in r["mountpoints"].items() if mp in want} == want
    assert r["evidence"]["hostname"] == {"path": "/etc/hostname", "line": 1,
                                         "text": o.findtext("hostname")}
