"""The short fuzz run of ``make test`` (about a minute) and the regression corpus.

Hypothesis draws mutations of real images built at test time (tests/fuzz/harness.py) and runs
every parser, and the in-process ``info``/``diagnose`` pipeline, on them: any exception other
than a DiskkitError (and diskkit's own InternalError) fails, and so does a case slower than the
deadline (a hang). The long run is ``make fuzz`` (bench/fuzz.py; figures in docs/security.md).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diskkit.formats.detect import detect
from diskkit.readers.base import BytesReader
from tests.fuzz.harness import SEEDS, Case, build_seeds, corpus, mutations, run_case

SHORT = settings(max_examples=1000, deadline=timedelta(seconds=10), derandomize=False,
                 database=None, suppress_health_check=list(HealthCheck))
PIPELINE = settings(max_examples=60, deadline=timedelta(seconds=30), database=None,
                    suppress_health_check=list(HealthCheck))
#: What each seed is, by qemu's and diskkit's reading (checked against the tools' own output).
EXPECTED = {"mbr": "raw", "gpt": "raw", "grub": "raw", "iso": "iso", "lvm": "raw",
            "qcow2": "qcow2", "vmdk": "vmdk", "vmdk-stream": "vmdk", "vhd": "vhd",
            "vhdx": "vhdx", "vdi": "vdi"}
NATIVE = ["mbr", "gpt", "grub", "iso", "lvm", "qcow2"]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return build_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


def test_seeds_are_what_they_claim(seeds) -> None:
    assert set(seeds) == set(SEEDS)
    for name, fmt in EXPECTED.items():
        assert detect(BytesReader(seeds[name])).format == fmt, name


@pytest.mark.parametrize(("name", "case"), corpus(), ids=[n for n, _ in corpus()])
def test_corpus(seeds, name: str, case: Case) -> None:
    """Past crashes stay fixed (each file says what it used to do)."""
    started = time.monotonic()
    run_case(case, seeds)
    assert time.monotonic() - started < 30, f"{name}: slower than 30 s"


def test_fixup_reaches_past_checksums(seeds) -> None:
    """The LVM checksum fix-up works: a mutated VG name is parsed, not refused by its CRC."""
    from diskkit.layout import inspect_layout

    data = seeds["lvm"]
    i = data.index(b"vg0 {")
    case = Case("lvm", ((i, b"vgX"),), fixup=True)
    layout = inspect_layout(BytesReader(case.apply(seeds)))
    assert "vgX" in str(layout.to_dict())


@SHORT
@given(st.data())
def test_fuzz_parsers(seeds, data) -> None:
    name = data.draw(st.sampled_from(sorted(SEEDS)))
    case = mutations(data.draw, st, name, seeds[name])
    run_case(case, seeds)


@PIPELINE
@given(st.data())
def test_fuzz_pipeline(seeds, data) -> None:
    name = data.draw(st.sampled_from(NATIVE))
    case = mutations(data.draw, st, name, seeds[name])
    run_case(Case(case.seed, case.edits, case.truncate, "pipeline", fixup=case.fixup), seeds)
