"""The boot chain on the real Debian 12 images (tests/fixtures/debian.py): for every variant,
diagnose's ``reaches``, ``outcome`` and ``will_boot`` equal what the image does when booted to
its end (the shared ``debian_boots`` pool: each image booted once per session, two at a
time, the same boots tests/boottest/test_debian_boot.py looks at). The fixes diagnose prints
for the UUID, fstab and initramfs (no virtio) cases are run as printed on a copy (qemu-img,
guestfish, virt-customize: LIBGUESTFS_BACKEND=direct, TCG) and the copy boots to login."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest

from diskkit.diagnose import diagnose
from diskkit.runner import run
from diskkit.verify import compare
from sample_images.recipes import debian as recipe

NAMES = list(recipe.VARIANTS)

#: What diagnose must name as the cause (the stage it fails at and the finding code).
CAUSES = {
    "uuid-changed": ("initramfs", "root-device-not-found"),
    "no-virtio": ("initramfs", "initramfs-missing-driver"),
    "lvm-no-hook": ("initramfs", "initramfs-missing-lvm"),
    "fstab-missing": ("init", "fstab-device-missing"),
    "xfs-grub-unreadable": ("boot-loader", "grub-unknown-filesystem"),
}


def _diagnose(image: Any, bus: str = "virtio") -> Any:
    return diagnose(str(image.path), "qcow2", firmware=image.firmware, bus=bus)


@pytest.mark.parametrize("name", NAMES)
def test_chain_names_the_cause(debian_images: Any, name: str) -> None:
    """Without booting: the predicted outcome is the one the variant was built to reach,
    the failing stage and its finding are the right ones, every stage has a verdict."""
    image = debian_images.get(name)
    d = _diagnose(image)
    assert d.followed is True
    assert [s.name for s in d.stages] == ["firmware", "boot-code", "boot-loader", "kernel",
                                          "initramfs", "root-filesystem", "init", "login"]
    assert d.outcome == image.expected_boot, (d.reason, [s.to_dict() for s in d.stages])
    assert d.will_boot is (image.expected_boot == "login")
    if name in CAUSES:
        stage, code = CAUSES[name]
        failed = [s for s in d.stages if s.verdict == "fails"]
        assert [s.name for s in failed] == [stage]
        assert d.findings[0].code == code and d.findings[0].fix
        assert d.to_dict()["cause"] == code
    else:
        assert all(s.verdict == "ok" for s in d.stages), [s.to_dict() for s in d.stages]
    data = d.to_json()
    assert data["reaches"] == d.reaches and data["bus"] == "virtio"


def test_uuid_changed_shows_grub_search_and_old_uuid(debian_uuid_changed: Any) -> None:
    d = _diagnose(debian_uuid_changed)
    loader = next(s for s in d.stages if s.name == "boot-loader")
    assert loader.verdict == "ok"  # GRUB's search fails, the preset root= is used
    assert any(f"no such device: {recipe.ROOT_UUID}" in e for e in loader.evidence)
    fix = d.findings[0]
    assert f"set-uuid /dev/sda1 {recipe.ROOT_UUID}" in fix.fix
    assert f"tune2fs -U {recipe.ROOT_UUID}" in fix.fix


@pytest.mark.parametrize("name", ["base", "no-virtio"])
@pytest.mark.parametrize("bus", ["virtio", "scsi", "sata", "ide"])
def test_bus_drivers_against_lsinitramfs(debian_images: Any, name: str, bus: str) -> None:
    """The initramfs stage passes on ``bus`` exactly when lsinitramfs (run in the image's
    chroot at build time) or modules.builtin lists every driver that bus needs; the fix names
    the bus property only for buses whose drivers are all there."""
    from diskkit.diagnose.rootdev import BUS_DRIVERS

    image = debian_images.get(name)
    facts = image.facts
    have = set(facts["modules_builtin"])
    for listing in facts["initramfs"].values():
        have |= {m.replace("-", "_") for m in listing["modules"]}
    d = _diagnose(image, bus)
    assert d.bus == bus
    stage = next(s for s in d.stages if s.name == "initramfs")
    expected = all(drv in have for drv in BUS_DRIVERS[bus])
    assert (stage.verdict == "ok") is expected, (stage.reason, sorted(have & {
        "ahci", "ata_piix", "sd_mod", "virtio_blk", "virtio_pci", "virtio_scsi"}))
    if not expected:
        f = d.findings[0]
        assert f.code == "initramfs-missing-driver"
        for other in f.details["usable_buses"]:
            assert all(drv in have for drv in BUS_DRIVERS[other])
            assert f"hw_disk_bus={other}" in f.fix


# --- against the real boots -------------------------------------------------------------


@pytest.fixture(scope="module")
def all_booting(debian_images: Any, debian_boots: Any) -> dict[str, Any]:
    """Every variant, its boot started in the shared pool (they overlap two at a time)."""
    images = {name: debian_images.get(name) for name in NAMES}
    debian_boots.submit(*images.values())
    return images


# --- the printed fixes, applied and booted ------------------------------------------------

FIXED = ("uuid-changed", "fstab-missing", "no-virtio")
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./-]+")


def _apply(image: Any, workdir: pathlib.Path) -> pathlib.Path:
    """Run the commands of diagnose's first finding as printed (IMAGE = the shared image,
    read only by qemu-img convert; FIXED.qcow2 in ``workdir``)."""
    d = _diagnose(image)
    commands = d.findings[0].details["commands"]
    assert commands[0].startswith("qemu-img convert -O qcow2 ")
    assert _SAFE_PATH.fullmatch(str(image.path))
    for cmd in commands:
        run(["bash", "-c", cmd.replace("IMAGE", str(image.path))], timeout=1800,
            cwd=str(workdir))
    return workdir / "FIXED.qcow2"


@pytest.fixture(scope="module")
def fixed_boots(all_booting: dict[str, Any], debian_images: Any, debian_boots: Any,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each fixed copy, its boot started as soon as its fix is applied (the variants' own
    boots are started first, so the fixes are applied while they run)."""
    from tests.fixtures.debian import DebianImage

    out = {}
    for name in FIXED:
        image = debian_images.get(name)
        fixed = _apply(image, tmp_path_factory.mktemp(f"fix-{name}"))
        copy = DebianImage(f"{name}-fixed", fixed, recipe.VARIANTS["base"])
        debian_boots.submit(copy)
        out[name] = copy
    return out


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the first one applies three fixes (TCG appliance) while 13 boot
@pytest.mark.parametrize("name", FIXED)
def test_pasted_fix_boots_to_login(fixed_boots: dict[str, Any], debian_boots: Any,
                                   name: str) -> None:
    copy = fixed_boots[name]
    d = _diagnose(copy)
    assert (d.will_boot, d.outcome) == (True, "login"), (d.reason, d.findings[:1])
    boot = debian_boots.result(copy)
    assert (boot.outcome, boot.stage) == ("login", "login"), (boot.outcome, boot.evidence)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # waits for its image's turn in the shared two-at-a-time pool
@pytest.mark.parametrize("name", NAMES)
def test_diagnosis_equals_the_boot(all_booting: dict[str, Any], debian_boots: Any,
                                   name: str) -> None:
    image = all_booting[name]
    d = _diagnose(image)
    boot = debian_boots.result(image)
    v = compare(d, boot)
    assert (d.reaches, d.outcome, d.will_boot) == (boot.stage, boot.outcome, boot.booted), (
        f"DISAGREEMENT on {name}: diagnose reaches {d.reaches} ({d.outcome}): {d.reason}; "
        f"boot: {boot.outcome} at {boot.stage}: {boot.evidence}")
    assert v.agree is True and v.stages["boot_stage"] == boot.stage
