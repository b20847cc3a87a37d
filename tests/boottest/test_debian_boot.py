"""Every Debian 12 image booted to its end (boot-test ``until="login"``, SeaBIOS or OVMF,
virtio disk, TCG), each outcome checked with its evidence. The boots are shared
(tests/fixtures/debian.py ``debian_boots``: two at a time, once per image per session)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sample_images.recipes import debian as recipe

pytestmark = pytest.mark.slow

NAMES = list(recipe.VARIANTS)


#: The image each named test looks at.
VARIANT_OF = {
    "test_login_on_serial_and_vga": "base",
    "test_no_console_logs_in_on_vga_only": "no-console",
    "test_uefi_boots_under_ovmf": "uefi",
    "test_changed_uuid_names_the_old_one": "uuid-changed",
    "test_initramfs_without_virtio": "no-virtio",
    "test_lvm_root_without_hook": "lvm-no-hook",
    "test_fstab_missing_filesystem": "fstab-missing",
    "test_grub_cannot_read_xfs": "xfs-grub-unreadable",
}


@pytest.fixture(scope="module")
def booted(request: pytest.FixtureRequest, debian_images: Any,
           debian_boots: Any) -> dict[str, Any]:
    """Build the images the selected tests of this module need, then start all their boots
    at once (they overlap two at a time)."""
    wanted: dict[str, None] = {}
    for item in request.session.items:
        if getattr(item, "module", None) is not request.module:
            continue
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("name") if callspec else None
        name = name or VARIANT_OF.get(getattr(item, "originalname", ""))
        if name:
            wanted[name] = None
    started = time.monotonic()
    images = {name: debian_images.get(name) for name in wanted}
    debian_boots.submit(*images.values())
    return {"images": images, "started": started}


@pytest.mark.parametrize("name", NAMES)
def test_boot_outcome(booted: dict[str, Any], debian_boots: Any, name: str) -> None:
    image = booted["images"][name]
    o = debian_boots.result(image)
    detail = (o.outcome, o.stage, o.evidence, o.screen[-800:])
    assert o.outcome == image.expected_boot, detail
    assert o.as_expected is True and o.accel == "tcg"
    assert o.booted is (image.expected_boot == "login")
    print(f"{name}: {o.outcome} at {o.stage} in {o.seconds:.0f} s")


def _boot(booted: dict[str, Any], debian_boots: Any, name: str) -> Any:
    assert name in booted["images"], name
    return debian_boots.result(booted["images"][name])


def test_login_on_serial_and_vga(booted: dict[str, Any], debian_boots: Any) -> None:
    o = _boot(booted, debian_boots, "base")
    assert o.stage == "login" and o.loader == "grub"
    assert f"{recipe.HOSTNAME} login:" in o.evidence


def test_no_console_logs_in_on_vga_only(booted: dict[str, Any], debian_boots: Any) -> None:
    o = _boot(booted, debian_boots, "no-console")
    assert o.outcome == "login"
    assert f"{recipe.HOSTNAME} login:" in o.screen
    assert "login:" not in o.console  # no console=ttyS0: no serial getty, no kernel log


def test_uefi_boots_under_ovmf(booted: dict[str, Any], debian_boots: Any) -> None:
    o = _boot(booted, debian_boots, "uefi")
    assert o.firmware == "uefi" and o.outcome == "login"
    assert any(m.startswith("BdsDxe:") for m in o.messages)


def test_changed_uuid_names_the_old_one(booted: dict[str, Any], debian_boots: Any) -> None:
    o = _boot(booted, debian_boots, "uuid-changed")
    text = "\n".join(o.evidence)
    # GRUB's grub.cfg search fails first, then the initramfs gives up on root=UUID=old.
    assert f"error: no such device: {recipe.ROOT_UUID}." in text
    assert f"ALERT!  UUID={recipe.ROOT_UUID} does not exist." in text


def test_initramfs_without_virtio(booted: dict[str, Any], debian_boots: Any) -> None:
    o = _boot(booted, debian_boots, "no-virtio")
    assert f"ALERT!  UUID={recipe.ROOT_UUID} does not exist." in "\n".join(o.evidence)


def test_lvm_root_without_hook(booted: dict[str, Any], debian_boots: Any) -> None:
    o = _boot(booted, debian_boots, "lvm-no-hook")
    assert "ALERT!  /dev/mapper/debian--vg-root does not exist." in "\n".join(o.evidence)


def test_fstab_missing_filesystem(booted: dict[str, Any], debian_boots: Any) -> None:
    o = _boot(booted, debian_boots, "fstab-missing")
    text = "\n".join(o.evidence)
    assert "You are in emergency mode" in text or "root account is locked" in text
    assert "/srv/data" in text or recipe.MISSING_UUID in text


def test_grub_cannot_read_xfs(booted: dict[str, Any], debian_boots: Any) -> None:
    o = _boot(booted, debian_boots, "xfs-grub-unreadable")
    assert o.stage == "boot-loader"
    assert "error: unknown filesystem." in o.evidence


def test_restoring_the_uuid_makes_it_boot(debian_images: Any, debian_boots: Any,
                                          tmp_path: Any) -> None:
    """Ground truth for the uuid-changed variant: its only fault is the UUID. Put the old
    one back (tune2fs -U on a private raw copy) and the same disk boots to login."""
    from diskkit.runner import run
    from tests.fixtures.debian import DebianImage

    image = debian_images.get("uuid-changed")
    raw = tmp_path / "fixed.raw"
    run(["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", str(image.path), str(raw)],
        timeout=300)
    dev = run(["losetup", "-f", "--show", "--offset", str(1 << 20), str(raw)],
              timeout=30).stdout.strip()
    try:
        run(["tune2fs", "-U", recipe.ROOT_UUID, dev], timeout=60)
    finally:
        run(["losetup", "-d", dev], timeout=30, check=False)
    fixed = DebianImage("uuid-restored", raw, recipe.VARIANTS["base"])
    o = debian_boots.result(fixed)
    assert (o.outcome, o.format) == ("login", "raw"), (o.outcome, o.evidence)


def test_cli_until_login_exit_codes(debian_images: Any) -> None:
    """`diskkit boot-test --until login`: exit 1 when the guest stops before login, 0 when
    it ends as --expect says; the JSON carries the stage and the evidence."""
    import json
    import subprocess
    import sys

    img = str(debian_images.get("xfs-grub-unreadable").path)
    cmd = [sys.executable, "-m", "diskkit", "boot-test", img, "--until", "login",
           "--timeout", "300"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "grub-error" in r.stdout and "evidence: error: unknown filesystem." in r.stdout
    r = subprocess.run([*cmd, "--expect", "grub-error", "--json"], capture_output=True,
                       text=True, timeout=400, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert (data["outcome"], data["stage"], data["as_expected"]) == ("grub-error",
                                                                    "boot-loader", True)
    assert "error: unknown filesystem." in data["evidence"]
