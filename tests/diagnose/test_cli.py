"""``diskkit diagnose`` from the command line: exit codes (0 will boot, 1 will not, 4 cannot
tell), the JSON shape, --verify agreeing with a real boot, "cannot tell" never hidden."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

from diskkit.boottest import boot_test
from diskkit.diagnose import Verification, agreement, diagnose
from diskkit.runner import run

DISKKIT = [sys.executable, "-m", "diskkit"]


def _diskkit(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DISKKIT, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_exit_codes_and_json(boot_samples: dict[str, Any]) -> None:
    ok = _diskkit("diagnose", boot_samples["boot-grub-gpt.img"]["path"], "--json")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["will_boot"] is True and data["cause"] is None and data["firmware"] == "bios"
    assert data["facts"]["partition_table"] == "gpt"
    bad = _diskkit("diagnose", boot_samples["boot-qcow2-as-raw.raw"]["path"], "-f", "raw",
                   "--json")
    assert bad.returncode == 1
    data = json.loads(bad.stdout)
    assert (data["will_boot"], data["cause"], data["format"]) == (False,
                                                                           "container-as-raw",
                                                                           "qcow2")
    ev = data["findings"][0]["evidence"]
    assert data["open_format"] == "raw"
    assert ev[0]["offset"] == 0 and bytes.fromhex(ev[0]["bytes"])[:4] == b"QFI\xfb"
    assert ev[1]["offset"] == 0x1FE and ev[1]["bytes"] != "55aa"
    # the conversion opens no backing file the image may name (docs/security.md)
    assert """qemu-img convert -O raw 'json:{"driver": "qcow2", "backing": null""" in \
        data["findings"][0]["fix"]


def test_human_output_has_cause_evidence_fix(boot_samples: dict[str, Any]) -> None:
    r = _diskkit("diagnose", boot_samples["boot-uefi-only.img"]["path"])
    assert r.returncode == 1
    out = " ".join(r.stdout.split())
    assert "WILL NOT BOOT" in out and "uefi-only-image" in out
    assert "hw_firmware_type=uefi" in out and "evidence" in out


def test_unknown_boot_code_is_cannot_tell_and_verify_does_not_hide_it(
        tmp_path: pathlib.Path) -> None:
    img = tmp_path / "loop.img"
    run(["truncate", "-s", "8M", str(img)], timeout=10)
    with open(img, "r+b") as f:  # "jmp $" (eb fe): code nobody knows, signature present
        f.write(b"\xeb\xfe" + b"\x90" * 8)
        f.seek(510)
        f.write(b"\x55\xaa")
    r = _diskkit("diagnose", str(img), "--json")
    assert r.returncode == 4
    assert json.loads(r.stdout)["will_boot"] is None
    r = _diskkit("diagnose", str(img), "--verify", "--json", "--timeout", "60")
    assert r.returncode == 4
    v = json.loads(r.stdout)["verify"]
    assert v["agree"] is None and v["outcome"] == "boot-code-ran"


def test_verify_agrees(boot_samples: dict[str, Any]) -> None:
    r = _diskkit("diagnose", boot_samples["boot-vmdk-as-raw.raw"]["path"], "-f", "raw",
                 "--verify")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "verify: AGREE" in r.stdout and "no-bootable-device" in r.stdout


def test_a_disagreement_is_reported(boot_samples: dict[str, Any]) -> None:
    # A real prediction (blank volume: will not boot) next to a real boot of another disk
    # (GRUB reached): the comparison must say they disagree, in the JSON too.
    d = diagnose(boot_samples["boot-blank-volume.raw"]["path"], "raw")
    b = boot_test(boot_samples["boot-grub-mbr.img"]["path"], "raw", timeout=90)
    v = Verification(d, b, agreement(d.will_boot, b.booted))
    assert v.agree is False and v.to_dict()["verify"]["agree"] is False
    assert agreement(None, True) is None and agreement(True, None) is None


def test_blank_terabyte_reads_only_allocated_extents(boot_samples: dict[str, Any]) -> None:
    d = diagnose(boot_samples["boot-blank-volume.raw"]["path"], "raw")
    assert d.facts["disk_size"] == 1 << 40 and d.facts["allocated_bytes"] == 0
    assert d.will_boot is False and d.findings[0].code == "blank-disk"


def test_cdrom_and_firmware_options_are_checked(boot_samples: dict[str, Any]) -> None:
    r = _diskkit("diagnose", boot_samples["boot-grub-mbr.img"]["path"], "--firmware", "efi")
    assert r.returncode == 2 and "bad-option" in r.stderr
    r = _diskkit("diagnose", boot_samples["boot-grub-mbr.img"]["path"], "--as", "cdrom",
                 "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["cause"] == "cdrom-not-bootable"
