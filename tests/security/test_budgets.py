"""Every crafted image is answered within seconds and a few hundred MB, and a parser that stops
at a work bound says so (``work-bound-hit``). Each image is built at test time
(tests/security/craft.py); each command runs as a separate process with an address-space
limit and a timeout."""

from __future__ import annotations

import json
import time

import pytest

from diskkit.errors import ImageError
from diskkit.layout.lvm_text import MAX_TOKENS, parse_text
from diskkit.runner import run
from tests.security import craft

#: What "a few hundred MB" means here: the peak RSS of one CLI run.
MAX_RSS = 400 << 20


def _codes(report: dict) -> set[str]:
    out: set[str] = set()

    def walk(x: object) -> None:
        if isinstance(x, dict):
            if isinstance(x.get("code"), str) and "severity" in x:
                out.add(x["code"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(report)
    return out


def _info(path) -> tuple[dict, craft.Limited]:
    res = craft.run_limited("info", str(path), "--json", timeout=90)
    assert res.returncode in (0, 1), res.stderr
    assert res.peak_rss < MAX_RSS, res.peak_rss
    return json.loads(res.stdout), res


# --- LVM ---------------------------------------------------------------------------------

def test_lvm_tokenizer_is_linear() -> None:
    """1 MiB of ``a = 1`` took 119 s (a quadratic rescan per token); 256 KiB (under the token
    bound) now parses in well under a second, and 1 MiB stops at the bound at once."""
    quarter = "a = 1\n" * (256 * 1024 // 6)
    started = time.monotonic()
    doc = parse_text(quarter)
    assert doc == {"a": 1}
    assert time.monotonic() - started < 3
    started = time.monotonic()
    with pytest.raises(ImageError) as exc:
        parse_text("a = 1\n" * ((1 << 20) // 6))
    assert exc.value.code == "work-bound-hit"
    assert time.monotonic() - started < 5
    assert MAX_TOKENS < ((1 << 20) // 6) * 3


def test_lvm_metadata_of_a_million_tokens(tmp_path) -> None:
    img = craft.lvm_pv(tmp_path / "pv.img", b"a = 1\n" * ((1 << 20) // 6))
    report, res = _info(img)
    assert res.seconds < 30
    assert "work-bound-hit" in _codes(report)


@pytest.mark.parametrize("number", ["9" * 5000, "-" + "9" * 5000])
def test_lvm_number_of_5000_digits_is_a_finding(tmp_path, number) -> None:
    img = craft.lvm_pv(tmp_path / "pv.img", craft.vg_text(extent_size=number))
    report, _ = _info(img)
    assert "lvm-metadata-unreadable" in _codes(report)
    res = craft.run_limited("check", str(img), "--json")
    assert res.returncode != 70, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("field", ["stripe_extent", "extent_size"])
def test_negative_lvm_numbers_are_findings(tmp_path, field) -> None:
    img = craft.lvm_pv(tmp_path / "pv.img", craft.vg_text(**{field: "-5"}))
    report, _ = _info(img)
    assert "lvm-metadata-unreadable" in _codes(report)
    res = craft.run_limited("diagnose", str(img), "--json")
    assert res.returncode != 70, res.stderr


def test_a_sane_crafted_pv_parses(tmp_path) -> None:
    """Control: the same builder with sane numbers gives a VG (so the findings above come
    from the hostile numbers, not from a broken builder)."""
    img = craft.lvm_pv(tmp_path / "pv.img", craft.vg_text())
    report, _ = _info(img)
    assert "lvm-metadata-unreadable" not in _codes(report)
    assert "vg0" in json.dumps(report)


# --- GRUB core.img ------------------------------------------------------------------------

def test_grub_core_of_zeros_is_bounded(tmp_path) -> None:
    img = craft.grub_zero_payload(tmp_path / "grub.img")
    report, res = _info(img)
    assert res.seconds < 60, res.seconds
    assert "work-bound-hit" in _codes(report)


# --- GPT: 32,768 ESP entries on one FAT ---------------------------------------------------

def test_gpt_with_32768_esps_on_one_fat(tmp_path) -> None:
    fat = tmp_path / "fat.img"
    run(["mkfs.vfat", "-C", str(fat), "8192"], timeout=30)
    run(["mmd", "-i", str(fat), "::/EFI", "::/EFI/BOOT"], timeout=30)
    img = craft.gpt_many_esps(tmp_path / "gpt.img", fat)
    # sgdisk (not diskkit) agrees the table is what it claims.
    out = run(["sgdisk", "-p", str(img)], timeout=60, check=False).stdout
    assert "32768" in out or "Number" in out
    report, res = _info(img)
    assert res.seconds < 60, res.seconds
    assert "work-bound-hit" in _codes(report)
    assert len(json.dumps(report)) < 20 << 20


# --- diagnose's blank check ----------------------------------------------------------------

@pytest.mark.parametrize("pattern", [0x41, 0])
def test_blank_check_stops_at_the_first_data(tmp_path, pattern) -> None:
    """Data: not blank at the first cluster. Zeros: blank after the read budget (64 MiB),
    not after walking 8 million extents."""
    img = craft.qcow2_fragmented(tmp_path / "frag.qcow2", pattern=pattern)
    assert img.stat().st_size < 1 << 20
    res = craft.run_limited("diagnose", str(img), "--json", timeout=90)
    assert res.returncode != 70, res.stderr
    assert res.seconds < 30, res.seconds
    assert res.peak_rss < MAX_RSS, f"{res.peak_rss >> 20} MiB"
    if res.returncode == 2:  # the qcow2 reader may refuse shared tables: a fine answer
        assert "qcow2-unreadable" in res.stderr
        return
    facts = json.loads(res.stdout)["facts"]
    assert facts["blank"] is (pattern == 0)


def test_validate_keeps_only_the_tail_of_a_tools_stderr(tmp_path) -> None:
    """qemu-img check prints 1.5 GB of "ERROR: overflow cluster" lines for this 400 KB file;
    validate must answer (image-corrupt, exit 1) without holding them (the runner keeps the
    tail of stderr only)."""
    img = craft.qcow2_fragmented(tmp_path / "frag.qcow2", pattern=0x41)
    res = craft.run_limited("validate", str(img), "--json", timeout=120)
    assert res.returncode == 1, res.stderr
    assert res.peak_rss < MAX_RSS, f"{res.peak_rss >> 20} MiB"
    codes = {f["code"] for f in json.loads(res.stdout)["upload"]["findings"]}
    assert "image-corrupt" in codes


# --- MBR: a 300-EBR chain -----------------------------------------------------------------

def test_ebr_chain_is_bounded_with_a_finding(tmp_path) -> None:
    img = craft.ebr_chain(tmp_path / "ebr.img")
    # sfdisk (not diskkit) follows the same chain as far as its own cap (60 partitions).
    out = run(["sfdisk", "--dump", str(img)], timeout=60, check=False).stdout
    assert out.count("type=83") >= 50
    report, res = _info(img)
    assert res.seconds < 30
    assert "work-bound-hit" in _codes(report)
    assert "mbr-ebr-loop" not in _codes(report)  # not a loop: a long chain
