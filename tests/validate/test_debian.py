"""Cloud readiness and properties on the real Debian 12 images (tests/fixtures/debian.py):
the base image is ready and its properties agree with virt-inspector; each variant gives its
own finding, with the guest file (and line) as evidence."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from diskkit.runner import run
from diskkit.validate import Validation, validate

pytestmark = pytest.mark.slow
DISKKIT = str(Path(sys.executable).parent / "diskkit")


def _codes(v: Validation) -> dict[str, Any]:
    return {f.code: f for f in v.readiness}


def _os(xml: Any) -> dict[str, str]:
    os_el = xml.find("operatingsystem")
    assert os_el is not None
    return {k: (os_el.findtext(k) or "") for k in ("name", "distro", "arch", "major_version",
                                                     "minor_version", "osinfo")}


def test_base_is_ready_with_the_properties_virt_inspector_sees(
        debian_base: Any, debian_inspect: Any, tmp_path: Path) -> None:
    v = validate(str(debian_base.path))
    assert v.upload.glance is not None and v.upload.glance.accepts
    assert v.verdict == "ready", [f.to_dict() for f in v.findings]
    assert v.exit_code == 0
    p = v.properties
    assert p is not None
    facts = _os(debian_inspect(debian_base))
    assert p.values["os_type"] == facts["name"] == "linux"
    assert p.values["os_distro"] == facts["distro"] == "debian"
    assert p.values["architecture"] == facts["arch"]
    assert p.values["os_version"] == facts["major_version"]
    assert f"libosinfo short id {facts['osinfo']}" in p.evidence["os_distro"]
    assert p.values["hw_firmware_type"] == "bios"
    assert p.values["hw_disk_bus"] == "virtio"
    assert p.values["hw_qemu_guest_agent"] == "yes"
    # min_disk: the end of the last partition, rounded up to GiB (sfdisk is the ground truth)
    assert p.min_disk == -(-_sfdisk_end(debian_base.path, tmp_path) // (1 << 30))
    # the command line pastes: shlex gives back exactly the intended arguments
    assert v.command is not None
    argv = shlex.split(v.command)
    assert argv[:3] == ["openstack", "image", "create"]
    assert argv[argv.index("--disk-format") + 1] == "qcow2"
    assert argv[argv.index("--file") + 1] == str(debian_base.path)
    props = [argv[i + 1] for i, a in enumerate(argv) if a == "--property"]
    assert dict(x.split("=", 1) for x in props) == p.values
    # the CLI prints the same, and exits 0
    r = subprocess.run([DISKKIT, "validate", str(debian_base.path), "--json"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["properties"] == p.values and out["command"] == v.command


def _sfdisk_end(image: Path, tmp: Path) -> int:
    """Byte end of the last partition, from sfdisk on the image's first MiB."""
    head = tmp / "head.raw"
    run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", f"if={image}", f"of={head}", "bs=1M",
         "count=1"], timeout=60)
    table = json.loads(run(["sfdisk", "--json", str(head)], timeout=30).stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    return max((int(x["start"]) + int(x["size"])) * sector for x in table["partitions"])


def test_uefi_variant_needs_uefi(debian_uefi: Any, debian_inspect: Any) -> None:
    v = validate(str(debian_uefi.path))
    codes = _codes(v)
    assert "firmware-uefi-only" in codes
    assert v.properties is not None
    assert v.properties.values["hw_firmware_type"] == "uefi"
    assert v.properties.values["hw_machine_type"] == "q35"
    assert v.properties.values["os_distro"] == _os(debian_inspect(debian_uefi))["distro"]


@pytest.mark.parametrize(("variant", "code", "path_in_evidence", "exit_code"), [
    ("no_cloud_init", "cloud-init-missing", "", 5),
    ("fstab_sda", "fstab-device-name", "/etc/fstab:", 1),
    ("no_console", "no-serial-console", "/boot/grub/grub.cfg:", 5),
    ("no_virtio", "initramfs-no-virtio", "/boot/initrd.img-", 1),
    ("root_not_last", "root-partition-not-last", "partition 1", 5),
])
def test_variant_has_its_finding(request: pytest.FixtureRequest, variant: str, code: str,
                                 path_in_evidence: str, exit_code: int) -> None:
    image = request.getfixturevalue(f"debian_{variant}")
    v = validate(str(image.path))
    codes = _codes(v)
    assert code in codes, sorted(codes)
    f = codes[code]
    assert f.fix
    if path_in_evidence:
        assert any(path_in_evidence in e.note for e in f.evidence), [e.note for e in f.evidence]
    assert v.exit_code == exit_code, [x.code for x in v.findings]
    assert v.upload.glance is not None and v.upload.glance.accepts  # uploadable all the same


def test_guest_edits_give_their_findings(debian_base: Any, tmp_path: Path) -> None:
    """The base image with files changed by debugfs (e2fsprogs, no mount, no diskkit): a
    pinned MAC, cloud-init disabled with no OpenStack datasource, sshd not enabled."""
    raw = tmp_path / "edited.raw"
    run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(debian_base.path), str(raw)],
        timeout=300)
    head = tmp_path / "head.raw"
    run(["qemu-img", "dd", "-f", "raw", "-O", "raw", f"if={raw}", f"of={head}", "bs=1M",
         "count=1"], timeout=60)
    table = json.loads(run(["sfdisk", "--json", str(head)], timeout=30).stdout)
    start = int(table["partitiontable"]["partitions"][0]["start"]) * 512
    (tmp_path / "rule").write_text('SUBSYSTEM=="net", ATTR{address}=="52:54:00:aa:bb:cc", '
                                   'NAME="eth0"\n')
    (tmp_path / "ds").write_text("datasource_list: [ NoCloud, None ]\n")
    (tmp_path / "empty").write_text("")
    script = ("cd /etc/udev/rules.d\nwrite rule 70-persistent-net.rules\n"
              "cd /etc/cloud/cloud.cfg.d\nwrite ds 99-ds.cfg\n"
              "cd /etc/cloud\nwrite empty cloud-init.disabled\n"
              "rm /etc/systemd/system/multi-user.target.wants/ssh.service\n"
              "rm /etc/systemd/system/sshd.service\n")
    subprocess.run(["debugfs", "-w", f"{raw}?offset={start}", "-f", "-"], input=script,
                   text=True, cwd=tmp_path, capture_output=True, timeout=60, check=True)
    v = validate(str(raw), disk_format="raw")
    codes = _codes(v)
    mac = codes["hardcoded-mac"]
    assert mac.details["mac"] == "52:54:00:aa:bb:cc"
    assert "/etc/udev/rules.d/70-persistent-net.rules:1" in mac.evidence[0].note
    assert "/etc/cloud/cloud.cfg.d/99-ds.cfg" in \
        codes["cloud-init-no-openstack-datasource"].evidence[0].note
    assert "cloud-init.disabled" in codes["cloud-init-disabled"].message
    assert "sshd-disabled" in codes
    assert v.exit_code == 5 and v.command is not None  # uploadable, with warnings
    assert v.properties is not None and v.properties.disk_format == "raw"
