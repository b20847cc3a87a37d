"""Windows readiness and properties on NTFS disks holding real registry hives (written by
hivexregedit, as the guest tests build them): the virtio boot driver and cloudbase-init."""

from __future__ import annotations

import pathlib
import shutil

from diskkit.runner import run
from diskkit.validate import validate
from tests.guest.hives import make_hive
from tests.guest.test_os_windows import SOFTWARE, SYSTEM, needs

MI = 1 << 20


def _disk(d: pathlib.Path, software: str, system: str) -> pathlib.Path:
    soft = make_hive(d / "SOFTWARE", "HKEY_LOCAL_MACHINE\\SOFTWARE", software)
    sys_ = make_hive(d / "SYSTEM", "HKEY_LOCAL_MACHINE\\SYSTEM", system)
    vol = d / "ntfs.img"
    with open(vol, "wb") as f:
        f.truncate(48 * MI)
    run(["mkntfs", "-q", "-F", "-Q", "-L", "Windows", str(vol)], timeout=60)
    mnt = d / "mnt"
    mnt.mkdir()
    run(["ntfs-3g", str(vol), str(mnt)], timeout=60)
    try:
        cfg = mnt / "Windows/System32/config"
        cfg.mkdir(parents=True)
        shutil.copy(soft, cfg / "SOFTWARE")
        shutil.copy(sys_, cfg / "SYSTEM")
    finally:
        run(["umount", str(mnt)], timeout=60)
    disk = d / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(64 * MI)
    run(["sfdisk", "-q", str(disk)], input="label: dos\nstart=2048, type=7\n", timeout=60)
    with open(disk, "r+b") as f:
        f.seek(2048 * 512)
        f.write(vol.read_bytes())
    return disk


@needs
def test_windows_with_viostor_and_cloudbase_init(tmp_path: pathlib.Path) -> None:
    v = validate(str(_disk(tmp_path, SOFTWARE, SYSTEM)), disk_format="raw")
    codes = {f.code for f in v.readiness}
    assert "cloudbase-init-missing" not in codes and "windows-no-virtio" not in codes
    p = v.properties
    assert p is not None
    assert p.values["os_type"] == "windows" and p.values["os_distro"] == "windows"
    assert p.values["os_version"] == "10.0"  # CurrentMajor/MinorVersionNumber
    assert p.values["hw_disk_bus"] == "virtio"  # viostor Start=0 in ControlSet002
    assert "win2k22" in p.evidence["os_distro"]


@needs
def test_windows_without_virtio_or_cloudbase_init(tmp_path: pathlib.Path) -> None:
    software = SOFTWARE.split("[HKEY_LOCAL_MACHINE\\SOFTWARE\\Cloudbase")[0]
    system = SYSTEM.replace('"Start"=dword:00000000', '"Start"=dword:00000003')
    assert software != SOFTWARE and system != SYSTEM
    v = validate(str(_disk(tmp_path, software, system)), disk_format="raw")
    codes = {f.code: f for f in v.readiness}
    assert "cloudbase-init-missing" in codes
    f = codes["windows-no-virtio"]
    assert f.blocking and "viostor" in f.evidence[0].note
    assert v.exit_code == 1
    assert v.properties is not None and v.properties.values["hw_disk_bus"] == "sata"


