"""TreeFS (a host directory as a guest root) and the Linux facts read from a tree built at test
time, each checked against a tool outside diskkit: sh for os-release, readelf for the ELF
machine, dpkg-query --admindir for the package count, lsinitramfs for the initramfs."""

from __future__ import annotations

import os
import pathlib
import re

import pytest

from diskkit.guest import inspect_tree
from diskkit.guest.fs.api import NotFound, SymlinkLoop
from diskkit.guest.identity import osinfo_id
from diskkit.guest.tree import TreeFS
from diskkit.runner import run
from tests.guest.os_build import debian_tree, link, write


def test_treefs_stays_inside(tmp_path: pathlib.Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    root = tmp_path / "root"
    write(root, "etc/x", "inside")
    link(root, "abs", "/etc/x")
    link(root, "up", "../../../../outside/secret")
    link(root, "hostabs", str(outside / "secret"))
    link(root, "etc/dir", "..")
    link(root, "loop", "loop")
    with TreeFS(root) as fs:
        assert fs.read("/abs") == b"inside"
        assert fs.read("/../../etc/x") == b"inside"
        assert fs.read("/etc/dir/etc/dir/etc/x") == b"inside"
        assert fs.readlink("/abs") == "/etc/x"
        with pytest.raises(NotFound):
            fs.read("/up")  # resolves to /outside/secret inside the tree: absent
        with pytest.raises(NotFound):
            fs.read("/hostabs")
        with pytest.raises(SymlinkLoop):
            fs.stat("/loop")
        assert fs.lstat("/abs").kind == "symlink" and fs.stat("/abs").kind == "file"
        assert fs.names("/") == sorted(os.listdir(root))
        assert [p for p, _ in fs.find("/", name="x")] == ["/etc/x"]


def _sh_os_release(path: pathlib.Path) -> dict[str, str]:
    out = run(["sh", "-c", f'. "{path}"; printf "%s\\n%s\\n%s\\n" "$ID" "$VERSION_ID" '
               '"$PRETTY_NAME"'], timeout=10).stdout.splitlines()
    return {"ID": out[0], "VERSION_ID": out[1], "PRETTY_NAME": out[2]}


def _readelf_arch(path: pathlib.Path) -> str:
    out = run(["readelf", "-h", str(path)], timeout=10).stdout
    machine = re.search(r"Machine:\s+(.*)", out)
    assert machine
    return {"Advanced Micro Devices X86-64": "x86_64", "AArch64": "aarch64",
            "Intel 80386": "i386"}[machine.group(1).strip()]


def test_debian_tree_facts(tmp_path: pathlib.Path) -> None:
    root = debian_tree(tmp_path / "root", hostname="web-01", packages=37)
    write(root, "etc/udev/rules.d/70-persistent-net.rules",
          '# net\nSUBSYSTEM=="net", ACTION=="add", ATTR{address}=="52:54:00:12:34:56", '
          'NAME="eth0"\n')
    write(root, "etc/netplan/50-cloud-init.yaml", "network:\n  ethernets:\n    eth0:\n"
          "      match:\n        macaddress: 'fa:16:3e:aa:bb:cc'\n")
    write(root, "etc/sysconfig/network-scripts/ifcfg-eth0",
          'DEVICE=eth0\nHWADDR="00:16:3E:01:02:03"\n')
    write(root, "etc/NetworkManager/system-connections/w.nmconnection",
          "[ethernet]\nmac-address=52:54:00:AA:00:01\n")
    write(root, "etc/systemd/network/10-e.network", "[Match]\nMACAddress=52:54:00:bb:00:02\n")
    info = inspect_tree(str(root))
    assert len(info.roots) == 1
    r = info.roots[0]
    osr = _sh_os_release(root / "etc/os-release")
    assert r.type == "linux" and r.distro == osr["ID"]
    assert r.version_id == osr["VERSION_ID"] and r.major == int(osr["VERSION_ID"].split(".")[0])
    assert r.pretty_name == osr["PRETTY_NAME"]
    # as libguestfs: Debian's point release (/etc/debian_version) is the minor version and
    # the product name
    point = (root / "etc/debian_version").read_text().strip()
    assert r.product_name == point and f"{r.major}.{r.minor}" == point
    assert r.evidence["version"].path == "/etc/debian_version"
    assert r.evidence["distro"].path == "/etc/os-release"
    assert r.evidence["distro"].text == f"ID={osr['ID']}"
    assert r.hostname == "web-01" and r.evidence["hostname"].line == 1
    assert r.arch == _readelf_arch(root / "usr/bin/dash")
    assert r.evidence["arch"].path == "/usr/bin/dash"
    installed = run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                     "-f=${db:Status-Status}\\n"], timeout=30).stdout.split()
    assert r.packages.format == "deb" and r.packages.manager == "apt"
    assert r.packages.count == installed.count("installed")
    (k,) = r.kernels
    assert k.version == "6.1.0-99-cloud-amd64" and k.path == f"/boot/vmlinuz-{k.version}"
    assert k.initramfs and k.initramfs.path == f"/boot/initrd.img-{k.version}"
    assert k.has_driver("virtio_blk") and k.has_driver("ahci")  # module / built in
    assert k.has_driver("ata_piix") is False
    assert k.builtin == ("ahci", "xfs")
    assert r.initramfs_config and r.initramfs_config.modules == "dep"
    assert r.initramfs_config.sources["modules"].line == 2
    ci = r.cloud.cloud_init if r.cloud else None
    assert ci and ci.installed and ci.enabled and not ci.disabled_file
    assert ci.datasources == ("NoCloud", "OpenStack", "None") and ci.openstack
    assert ci.datasource_source and ci.datasource_source.path.endswith("90_dpkg.cfg")
    assert ci.growpart_module and r.cloud and r.cloud.growpart
    assert r.cloud.sshd.installed and r.cloud.sshd.unit and r.cloud.sshd.unit.enabled
    assert not r.cloud.qemu_guest_agent.installed
    macs = {m.mac: m.source for m in r.cloud.macs}
    assert set(macs) == {"52:54:00:12:34:56", "fa:16:3e:aa:bb:cc", "00:16:3e:01:02:03",
                         "52:54:00:aa:00:01", "52:54:00:bb:00:02"}
    assert macs["00:16:3e:01:02:03"].path == "/etc/sysconfig/network-scripts/ifcfg-eth0"
    assert macs["52:54:00:12:34:56"].line == 2
    d = info.to_dict()
    assert d["roots"][0]["distro"] == osr["ID"]


def test_cloud_init_disabled_and_masked(tmp_path: pathlib.Path) -> None:
    root = debian_tree(tmp_path / "root")
    write(root, "etc/cloud/cloud-init.disabled", "")
    ci = inspect_tree(str(root), read_initramfs=False).roots[0].cloud
    assert ci and ci.cloud_init.installed and ci.cloud_init.disabled_file
    assert not ci.cloud_init.enabled
    root3 = debian_tree(tmp_path / "root3")
    write(root3, "boot/grub/grub.cfg", "menuentry 'd' {\n linux /vmlinuz root=/dev/vda1 "
          "cloud-init=disabled\n}\n")
    r3 = inspect_tree(str(root3), read_initramfs=False).roots[0]
    assert r3.cloud and r3.cloud.cloud_init.disabled_cmdline and not r3.cloud.cloud_init.enabled
    assert not r3.cloud.cloud_init.disabled_file
    root2 = debian_tree(tmp_path / "root2", cloud_init=False)
    ci2 = inspect_tree(str(root2), read_initramfs=False).roots[0].cloud
    assert ci2 and not ci2.cloud_init.installed and not ci2.growpart


def test_not_a_root(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "r", "grub/grub.cfg", "")
    assert inspect_tree(str(tmp_path / "r")).roots == ()


OSINFO = pathlib.Path("/usr/share/osinfo/os")


@pytest.mark.skipif(not OSINFO.is_dir(), reason="osinfo-db not installed")
@pytest.mark.parametrize("distro,major,minor,product", [
    ("debian", 11, 0, None), ("ubuntu", 22, 4, None), ("fedora", 36, 0, None),
    ("rhel", 9, 0, None), ("centos", 9, 0, "CentOS Stream 9"), ("rocky", 9, 0, None),
    ("almalinux", 9, 0, None), ("opensuse", 15, 4, None), ("alpinelinux", 3, 17, None),
    ("centos", 7, 0, None), ("archlinux", 0, 0, None)])
def test_osinfo_ids_exist_in_osinfo_db(distro: str, major: int, minor: int,
                                       product: str | None) -> None:
    """The short ids diskkit derives are ids libosinfo's database defines."""
    sid = osinfo_id(distro, major, minor, product)
    ids = set()
    for xml in OSINFO.rglob("*.xml"):
        ids.update(re.findall(r"<short-id>([^<]+)</short-id>", xml.read_text()))
    assert sid in ids


def test_treefs_walk_equals_find(tmp_path: pathlib.Path) -> None:
    """TreeFS.walk lists what GNU find lists (links not followed), with the same kinds."""
    root = debian_tree(tmp_path / "root", packages=5)
    out = run(["find", str(root), "-mindepth", "1", "-printf", "%P %y\n"], timeout=60).stdout
    kinds = {"f": "file", "d": "dir", "l": "symlink"}
    want = {("/" + line.rsplit(" ", 1)[0], kinds.get(line.rsplit(" ", 1)[1], "other"))
            for line in out.splitlines() if line}
    with TreeFS(root) as fs:
        have = {(f"{d.rstrip('/')}/{e.name}", e.kind) for d, entries in fs.walk("/")
                for e in entries}
    assert have == want
