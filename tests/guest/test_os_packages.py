"""Package databases: an rpm database made by the real rpm (packages built by rpmbuild,
recorded with rpm --justdb), compared with rpm -qa; dpkg is covered in test_os_tree."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from diskkit.guest import inspect_tree
from diskkit.runner import run
from tests.guest.os_build import write

needs_rpm = pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpm is not installed")

SPEC = """Name: {name}
Version: {version}
Release: {release}
Epoch: {epoch}
Summary: test package {name}
License: MIT
BuildArch: noarch
%description
a package built at test time
%files
"""


@needs_rpm
def test_rpm_sqlite_equals_rpm_qa(tmp_path: pathlib.Path) -> None:
    top = tmp_path / "top"
    pkgs = [("cloud-init", "23.4", "7.el9", 0), ("openssh-server", "8.7p1", "38.el9", 0),
            ("bash", "5.1.8", "9.el9", 0), ("kernel-core", "5.14.0", "427.el9", 0),
            ("shim-x64", "15.8", "4.el9", 2)]
    for name, version, release, epoch in pkgs:
        spec = tmp_path / f"{name}.spec"
        spec.write_text(SPEC.format(name=name, version=version, release=release, epoch=epoch))
        run(["rpmbuild", "--define", f"_topdir {top}", "-bb", str(spec)], timeout=120)
    root = tmp_path / "root"
    write(root, "etc/os-release", 'NAME="Rocky Linux"\nVERSION="9.3 (Blue Onyx)"\nID="rocky"\n'
          'ID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n'
          'PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n')
    write(root, "etc/fstab", "")
    write(root, "usr/bin/dnf", b"")
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    rpm = ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm"]
    run([*rpm, "--initdb"], timeout=60)
    run([*rpm, "-i", "--justdb", "--nodeps", "--noscripts",
         *map(str, sorted((top / "RPMS/noarch").glob("*.rpm")))], timeout=120)
    qa = run([*rpm, "-qa", "--qf", "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE}\\n"],
             timeout=60).stdout.split("\n")
    want = {}
    for line in filter(None, qa):
        name, ver = line.split(" ")
        want[name] = ver[2:] if ver.startswith("0:") else ver
    r = inspect_tree(str(root), read_initramfs=False).roots[0]
    assert (r.distro, r.major, r.minor, r.osinfo) == ("rocky", 9, 3, "rocky9.3")
    assert r.packages.format == "rpm" and r.packages.manager == "dnf"
    assert r.packages.count == len(want) == len(pkgs)
    assert r.packages.installed == want
    assert r.packages.notable["cloud-init"] == "23.4-7.el9"
    assert r.packages.notable["shim-x64"] == "2:15.8-4.el9"


def test_apk_and_bdb(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "alpine"
    write(root, "etc/os-release", 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n'
          'PRETTY_NAME="Alpine Linux v3.19"\n')
    write(root, "etc/fstab", "")
    write(root, "lib/apk/db/installed", "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\n\n"
          "C:Q1def=\nP:cloud-init\nV:23.4-r0\nA:noarch\n\n")
    r = inspect_tree(str(root)).roots[0]
    assert (r.distro, r.osinfo, r.packages.format, r.packages.count) == \
        ("alpinelinux", "alpinelinux3.19", "apk", 2)
    assert r.packages.notable == {"cloud-init": "23.4-r0"}
    old = tmp_path / "centos7"
    write(old, "etc/redhat-release", "CentOS Linux release 7.9.2009 (Core)\n")
    write(old, "etc/fstab", "")
    write(old, "var/lib/rpm/Packages", b"\0" * 4096)
    r2 = inspect_tree(str(old)).roots[0]
    assert (r2.distro, r2.major, r2.minor, r2.osinfo) == ("centos", 7, 9, "centos7.0")
    assert r2.packages.format == "rpm" and r2.packages.count is None
