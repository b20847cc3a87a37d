"""Every boot sample: diagnose's verdict equals a real firmware boot's outcome (SeaBIOS or
OVMF under qemu/TCG), the expected finding codes are present, and each finding carries its
evidence and fix. The boots run once per session, two at a time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from diskkit.boottest import boot_test
from diskkit.diagnose import agreement, diagnose
from sample_images.recipes.boot import RECIPES


def _cases() -> list[tuple[str, dict[str, Any]]]:
    """(sample name, case): the default case (SeaBIOS, virtio disk) and each variant."""
    out = []
    for r in RECIPES:
        base = {k: v for k, v in r.expected.items() if k != "variants"}
        out.append((r.name, {"firmware_type": "bios", "as": "disk", **base}))
        for v in r.expected.get("variants", []):
            out.append((r.name, {"firmware_type": "bios", "as": "disk", **v}))
    return out


CASES = _cases()
IDS = [f"{n}-{c['firmware_type']}-{c['as']}" for n, c in CASES]


@pytest.fixture(scope="session")
def boots(boot_samples: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The firmware boot of every case (id -> BootOutcome), two qemu at a time."""
    def one(item: tuple[str, tuple[str, dict[str, Any]]]) -> tuple[str, Any]:
        case_id, (name, case) = item
        media = case["as"]
        return case_id, boot_test(boot_samples[name]["path"], "raw",
                                  firmware=case["firmware_type"], media=media,
                                  bus="ide" if media == "cdrom" else "virtio", timeout=90)
    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, zip(IDS, CASES, strict=True)))


@pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
def test_diagnosis_matches_expected(boot_samples, name: str, case: dict[str, Any]) -> None:
    d = diagnose(boot_samples[name]["path"], "raw", firmware=case["firmware_type"],
                 media=case["as"])
    assert d.will_boot is case["will_boot"], (d.reason, [f.code for f in d.findings])
    codes = [f.code for f in d.findings]
    for code in case["codes"]:
        assert code in codes
    if d.will_boot is False:
        cause = d.findings[0]
        assert cause.code in case["codes"], "the cause must come first"
        assert cause.fix and cause.evidence
        assert d.to_dict()["cause"] == cause.code


@pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
def test_firmware_agrees(boot_samples, boots, name: str, case: dict[str, Any]) -> None:
    d = diagnose(boot_samples[name]["path"], "raw", firmware=case["firmware_type"],
                 media=case["as"])
    boot = boots[IDS[CASES.index((name, case))]]
    assert boot.outcome == case["firmware"], (boot.messages, boot.screen[-300:])
    assert agreement(d.will_boot, boot.booted) is True, (
        f"DISAGREEMENT: diagnose says will_boot={d.will_boot} ({d.reason}); firmware: "
        f"{boot.outcome} {boot.messages}")
