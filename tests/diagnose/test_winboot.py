"""Windows' boot driver for the chosen bus (diskkit/diagnose/winboot.py) on a SYSTEM hive
written by hivexregedit (tests/guest/test_os_windows.py's disk: viostor Start=0 in the current
control set 002, 3 in 001; vioscsi Start=3; no storahci), checked against hivexregedit's
export. No real Windows installation is booted here."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from diskkit.diagnose import winboot
from diskkit.guest import inspect_guest
from diskkit.layout.inspect import inspect_layout
from diskkit.readers.raw import FileReader
from diskkit.runner import run
from tests.guest import test_os_windows as win
from tests.guest.test_os_windows import _export_start, needs

pytestmark = needs
windows_disk = win.windows_disk  # the module fixture, shared


@pytest.mark.parametrize(("bus", "verdict", "usable"), [
    ("virtio", "ok", None), ("scsi", "fails", ["virtio"]), ("sata", "fails", ["virtio"]),
    ("ide", "fails", ["virtio"])])
def test_boot_start_driver_per_bus(windows_disk: pathlib.Path, bus: str, verdict: str,
                                   usable: list[str] | None, tmp_path: pathlib.Path) -> None:
    with FileReader(str(windows_disk / "disk.img")) as disk:
        root = inspect_guest(disk, inspect_layout(disk)).root
    assert root is not None and root.type == "windows"
    # ground truth: the current control set's Start values as hivexregedit exports them
    hive = windows_disk / "SYSTEM"
    assert _export_start(hive, "ControlSet002\\Services\\viostor") == 0
    assert _export_start(hive, "ControlSet002\\Services\\vioscsi") == 3
    st = winboot.kernel(root, bus)
    assert st.verdict == verdict, st.reason
    if usable is not None:
        f = st.findings[0]
        assert f.code == "windows-no-boot-driver" and f.details["usable_buses"] == usable
        assert "hw_disk_bus=virtio" in (f.fix or "") and st.outcome == "kernel-panic"


def _with_boot_files(base: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """The fixture's NTFS volume plus \\bootmgr and \\Boot\\BCD (written through ntfs-3g,
    names in Windows' case), in an MBR disk made by sfdisk."""
    vol = dest / "ntfs.img"
    shutil.copy(base / "ntfs.img", vol)
    mnt = dest / "mnt"
    mnt.mkdir()
    run(["ntfs-3g", str(vol), str(mnt)], timeout=60)
    try:
        (mnt / "bootmgr").write_bytes(b"MZ" + bytes(510))
        (mnt / "Boot").mkdir()
        (mnt / "Boot" / "BCD").write_bytes(b"regf" + bytes(4092))
    finally:
        run(["umount", str(mnt)], timeout=60)
    disk = dest / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    run(["sfdisk", "-q", str(disk)], input="label: dos\nstart=2048, type=7\n", timeout=60)
    with open(disk, "r+b") as f:
        f.seek(2048 * 512)
        f.write(vol.read_bytes())
    return disk


def test_boot_manager_files(windows_disk: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with FileReader(str(windows_disk / "disk.img")) as disk:
        st = winboot.boot_manager(disk, inspect_layout(disk), "bios")
    assert st.verdict == "fails" and st.findings[0].code == "windows-bootmgr-missing"
    assert st.findings[0].details["looked"] == ["partition 1"]
    fixed = _with_boot_files(windows_disk, tmp_path)
    # ground truth: ntfsprogs' own listing of the volume
    listed = run(["ntfsls", str(tmp_path / "ntfs.img")], timeout=60).stdout \
        if shutil.which("ntfsls") else ""
    with FileReader(str(fixed)) as disk:
        layout = inspect_layout(disk)
        assert winboot.boot_manager(disk, layout, "bios").verdict == "ok"
        assert winboot.boot_manager(disk, layout, "uefi").verdict == "fails"
    if listed:
        assert "bootmgr" in listed and "Boot" in listed
