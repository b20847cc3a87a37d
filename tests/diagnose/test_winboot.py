"""Windows' boot driver for the chosen bus (diskkit/diagnose/winboot.py) on a SYSTEM hive
written by hivexregedit (tests/guest/test_os_windows.py's disk: viostor Start=0 in the current
control set 002, 3 in 001; vioscsi Start=3; no storahci), checked against hivexregedit's
export. No real Windows installation is booted here."""

from __future__ import annotations

import pathlib

import pytest

from diskkit.diagnose import winboot
from diskkit.guest import inspect_guest
from diskkit.layout.inspect import inspect_layout
from diskkit.readers.raw import FileReader
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
