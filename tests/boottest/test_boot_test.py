"""boot-test under real firmware (SeaBIOS, OVMF) in qemu/TCG: outcomes, buses, read-only,
the timeout, the screenshot, no qemu left behind, unsafe images refused."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import struct
import subprocess
import sys
from typing import Any

import pytest

from diskkit.boottest import boot_test
from diskkit.errors import ImageError
from diskkit.runner import run

DISKKIT = [sys.executable, "-m", "diskkit"]


def _qemu_of_ours(samples: dict[str, Any]) -> list[str]:
    """Command lines of running boot-test VMs (qemu started with -name diskkit-boot-test) of
    THIS session: their -drive names a file of this session's sample directory (other test
    sessions on the machine boot their own images at the same time)."""
    where = os.path.dirname(next(iter(samples.values()))["path"]).encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"diskkit-boot-test" in cmd and cmd[0].endswith(b"qemu-system-x86_64") \
                and where in b" ".join(cmd):
            found.append(b" ".join(cmd).decode(errors="replace"))
    return found


def _sha(path: str) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("bus", ["ide", "sata", "scsi"])
def test_every_bus_reaches_grub(boot_samples: dict[str, Any], bus: str) -> None:
    o = boot_test(boot_samples["boot-grub-mbr.img"]["path"], "raw", bus=bus, timeout=90)
    assert (o.outcome, o.loader) == ("bootloader-reached", "grub"), o.screen
    assert "DISKKIT-BOOT-OK" in o.console  # our grub.cfg ran (echoed to the serial port)
    assert not _qemu_of_ours(boot_samples)


def test_image_is_never_written(boot_samples: dict[str, Any], tmp_path: pathlib.Path) -> None:
    path = boot_samples["boot-no-bootloader.img"]["path"]
    before = (_sha(path), os.stat(path).st_mtime_ns)
    o = boot_test(path, "raw", timeout=60)
    assert o.outcome == "boot-code-ran"
    assert (_sha(path), os.stat(path).st_mtime_ns) == before
    assert not _qemu_of_ours(boot_samples)


def test_timeout_is_honoured_and_unsettled_code_is_timeout(boot_samples: dict[str, Any],
                                                           ) -> None:
    # The zero boot code needs 6 s of quiet to be called boot-code-ran: 2 s is not enough.
    o = boot_test(boot_samples["boot-no-bootloader.img"]["path"], "raw", timeout=2)
    assert o.outcome == "timeout" and o.booted is None
    assert o.seconds < 2 + 15  # qemu is stopped at the deadline (plus its shutdown)
    assert not _qemu_of_ours(boot_samples)


def test_screenshot_is_a_png_of_the_screen(boot_samples: dict[str, Any],
                                           tmp_path: pathlib.Path) -> None:
    shot = tmp_path / "screen.png"
    o = boot_test(boot_samples["boot-blank-volume.raw"]["path"], "raw", screenshot=str(shot),
                  timeout=60)
    assert o.outcome == "no-bootable-device"
    assert "Boot failed: not a bootable disk" in o.messages
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (720, 400)  # VGA text mode 80x25 with 9x16 glyphs
    # The VGA text buffer (pmemsave 0xB8000) holds what SeaBIOS printed.
    assert "No bootable device." in o.screen


def test_cli_json_and_exit_codes(boot_samples: dict[str, Any]) -> None:
    blank = boot_samples["boot-blank-volume.raw"]["path"]
    r = subprocess.run([*DISKKIT, "boot-test", blank, "-f", "raw", "--json", "--timeout",
                        "60"], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert data["outcome"] == "no-bootable-device" and data["booted"] is False
    assert data["firmware"] == "bios" and data["accel"] == "tcg"
    iso = boot_samples["boot-plain-iso-volume.raw"]["path"]
    r = subprocess.run([*DISKKIT, "boot-test", iso, "--as", "cdrom", "--bus", "ide"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bootloader-reached (isolinux)" in r.stdout and "ISOLINUX" in r.stdout
    assert not _qemu_of_ours(boot_samples)


def test_uefi_without_loader_falls_to_nothing(boot_samples: dict[str, Any]) -> None:
    o = boot_test(boot_samples["boot-no-bootloader.img"]["path"], "raw", firmware="uefi",
                  timeout=90)
    assert o.outcome == "no-bootable-device", o.messages
    assert any(m.startswith("BdsDxe:") for m in o.messages)


def test_unsafe_image_is_not_handed_to_qemu(tmp_path: pathlib.Path) -> None:
    img = tmp_path / "backing.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw",
         str(img), "1M"], timeout=30)
    with pytest.raises(ImageError) as exc:
        boot_test(str(img), timeout=10)
    assert "qcow2-backing-file" in exc.value.message
    # As raw bytes it is harmless: qemu reads the file itself, and finds no 55 AA.
    assert boot_test(str(img), "raw", timeout=60).outcome == "no-bootable-device"


def test_qcow2_opened_as_qcow2_boots(boot_samples: dict[str, Any], tmp_path: pathlib.Path,
                                     ) -> None:
    q = tmp_path / "grub.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", boot_samples["boot-grub-mbr.img"]
         ["path"], str(q)], timeout=60)
    o = boot_test(str(q), timeout=90)  # detected: qcow2, checked safe
    assert (o.format, o.outcome) == ("qcow2", "bootloader-reached")
