"""Windows facts from hives written by hivexregedit, on an NTFS volume made by mkntfs and
filled through ntfs-3g, inside an MBR disk made by sfdisk. No real Windows installation is
tested (docs/guest.md says so): the hives hold the keys and values Windows uses."""

from __future__ import annotations

import pathlib
import re
import shutil

import pytest

from diskkit.guest import inspect_guest
from diskkit.guest.binfmt import pe_arch
from diskkit.layout.inspect import inspect_layout
from diskkit.readers.raw import FileReader
from diskkit.runner import run
from tests.guest.hives import make_hive

MiB = 1 << 20
PE = pathlib.Path("/usr/lib/grub/x86_64-efi/monolithic/grubx64.efi")

SOFTWARE = r'''[HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion]
"ProductName"="Windows Server 2022 Datacenter"
"CurrentMajorVersionNumber"=dword:0000000a
"CurrentMinorVersionNumber"=dword:00000000
"CurrentVersion"="6.3"
"CurrentBuild"="20348"
"DisplayVersion"="21H2"
"EditionID"="ServerDatacenter"
"InstallationType"="Server"

[HKEY_LOCAL_MACHINE\SOFTWARE\Cloudbase Solutions\Cloudbase-Init]
"Version"="1.1.4"

'''

SYSTEM = r'''[HKEY_LOCAL_MACHINE\SYSTEM\Select]
"Current"=dword:00000002
"Default"=dword:00000002

[HKEY_LOCAL_MACHINE\SYSTEM\ControlSet001\Services\viostor]
"Start"=dword:00000003

[HKEY_LOCAL_MACHINE\SYSTEM\ControlSet002\Services\viostor]
"Start"=dword:00000000
"ImagePath"=str(2):"System32\\drivers\\viostor.sys"

[HKEY_LOCAL_MACHINE\SYSTEM\ControlSet002\Services\vioscsi]
"Start"=dword:00000003

[HKEY_LOCAL_MACHINE\SYSTEM\ControlSet002\Services\netkvm]
"Start"=dword:00000003

[HKEY_LOCAL_MACHINE\SYSTEM\ControlSet002\Control\ComputerName\ComputerName]
"ComputerName"="WIN-TEST01"

'''

needs = pytest.mark.skipif(any(shutil.which(t) is None for t in
                                ("mkntfs", "ntfs-3g", "hivexregedit", "sfdisk")),
                           reason="ntfs-3g / hivex tools")


def _export_start(hive: pathlib.Path, key: str) -> int:
    """A service's Start as the real hivexregedit --export prints it."""
    out = run(["hivexregedit", "--export", str(hive), key], timeout=30).stdout
    m = re.search(r'"Start"=dword:([0-9a-f]{8})', out)
    assert m
    return int(m.group(1), 16)


@pytest.fixture(scope="module")
def windows_disk(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    base = tmp_path_factory.mktemp("win")
    soft = make_hive(base / "SOFTWARE", "HKEY_LOCAL_MACHINE\\SOFTWARE", SOFTWARE)
    system = make_hive(base / "SYSTEM", "HKEY_LOCAL_MACHINE\\SYSTEM", SYSTEM)
    vol = base / "ntfs.img"
    with open(vol, "wb") as f:
        f.truncate(48 * MiB)
    run(["mkntfs", "-q", "-F", "-Q", "-L", "Windows", str(vol)], timeout=60)
    mnt = base / "mnt"
    mnt.mkdir()
    run(["ntfs-3g", str(vol), str(mnt)], timeout=60)
    try:
        cfg = mnt / "Windows/System32/config"
        cfg.mkdir(parents=True)
        shutil.copy(soft, cfg / "SOFTWARE")
        shutil.copy(system, cfg / "SYSTEM")
        if PE.exists():
            shutil.copy(PE, mnt / "Windows/System32/ntoskrnl.exe")
        (mnt / "Windows/System32/drivers").mkdir()
    finally:
        run(["umount", str(mnt)], timeout=60)
    disk = base / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(64 * MiB)
    run(["sfdisk", "-q", str(disk)], input="label: dos\nstart=2048, type=7\n", timeout=60)
    with open(disk, "r+b") as f:
        f.seek(2048 * 512)
        f.write(vol.read_bytes())
    return base


@needs
def test_windows_facts(windows_disk: pathlib.Path) -> None:
    with FileReader(str(windows_disk / "disk.img")) as disk:
        layout = inspect_layout(disk)
        info = inspect_guest(disk, layout)
    assert len(info.roots) == 1, info.notes
    r = info.roots[0]
    assert r.type == "windows" and r.location == "partition 1" and r.fstype == "ntfs"
    w = r.windows
    assert w is not None
    assert r.product_name == w.product_name == "Windows Server 2022 Datacenter"
    assert (r.major, r.minor) == (10, 0)  # CurrentMajorVersionNumber wins over "6.3"
    assert w.build == "20348" and w.edition == "ServerDatacenter"
    assert w.installation_type == "Server" and w.display_version == "21H2"
    assert r.osinfo == "win2k22"
    assert w.control_set == "ControlSet002" and r.hostname == "WIN-TEST01"
    system = windows_disk / "SYSTEM"
    for name in ("viostor", "vioscsi", "netkvm"):
        svc = w.service(name)
        assert svc is not None
        assert svc.start == _export_start(system, f"ControlSet002\\Services\\{name}")
    viostor = w.service("viostor")
    assert viostor and viostor.start_name == "boot"
    assert viostor.image_path == "System32\\drivers\\viostor.sys"
    assert w.cloudbase_init
    if PE.exists():
        file_out = run(["file", "-b", str(PE)], timeout=10).stdout
        assert ("x86-64" in file_out) == (r.arch == "x86_64")
        assert r.arch == pe_arch(PE.read_bytes()[:4096])
    assert r.evidence["product_name"].text.endswith("CurrentVersion\\ProductName")
    from diskkit.guest.report import summary_lines

    lines = summary_lines(info)
    assert lines[0] == "partition 1 (ntfs): windows windows 10.0 (Windows Server 2022 Datacenter)"
    assert "  services: viostor=boot, vioscsi=manual, netkvm=manual" in lines
    assert "  cloudbase-init: yes" in lines


@needs
def test_damaged_hive_is_a_problem(windows_disk: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """A SOFTWARE hive that is not a hive: the root is still reported, with the problem."""
    from diskkit.guest.inspect import inspect_root
    from diskkit.guest.tree import TreeFS

    root = tmp_path / "r"
    cfg = root / "Windows/System32/config"
    cfg.mkdir(parents=True)
    (cfg / "SOFTWARE").write_bytes(b"regf" + b"\xff" * 5000)
    shutil.copy(windows_disk / "SYSTEM", cfg / "SYSTEM")
    with TreeFS(root) as fs:
        r = inspect_root(fs)
    assert r is not None and r.type == "windows"
    assert r.product_name is None and r.hostname == "WIN-TEST01"
    assert any("SOFTWARE" in n for n in r.notes)
