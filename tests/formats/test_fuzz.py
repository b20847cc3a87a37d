"""Property-based fuzz of every parser: random and mutated headers give a Detection or a
DiskkitError, never another exception, and never read past the detection budget."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diskkit.errors import DiskkitError
from diskkit.formats import detect as detect_mod
from diskkit.formats.base import EXTRA_BUDGET, HEAD_SIZE, TAIL_SIZE, Source
from diskkit.formats.detect import detect
from diskkit.readers.base import BytesReader
from tests.formats.conftest import CountingReader

MAGICS = [b"QFI\xfb\x00\x00\x00\x03", b"QED\x00", b"KDMV\x01\x00\x00\x00", b"vhdxfile",
          b"conectix", b"LUKS\xba\xbe\x00\x01", b"LUKS\xba\xbe\x00\x02", b"\x1f\x8b\x08",
          b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"BZh91AY&SY", b"PK\x03\x04",
          b"# Disk DescriptorFile\nversion=1\ncreateType=\"x\"\n"]
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _every_probe(data: bytes) -> tuple[str, ...] | None:
    """The formats every probe matches when all run (no dispatch), or None on an error."""
    src = Source.from_bytes(data)
    try:
        return tuple(m.format for _n, spec in detect_mod.PROBES
                     if (m := detect_mod._probe(spec)(src)) is not None)
    except DiskkitError:
        return None


def test_dispatch_covers_every_probe():
    names = {n for n, _ in detect_mod.PROBES}
    assert names == set(detect_mod.AT_ZERO.values()) | set(detect_mod.ALWAYS)


def _run(data: bytes) -> None:
    reader = CountingReader(BytesReader(data))
    try:
        d = detect(reader)
    except DiskkitError:
        assert _every_probe(data) is None  # the dispatch skipped no probe that would fail
    else:
        # the first-bytes dispatch loses nothing: running every probe matches the same
        assert d.formats_matched == _every_probe(data)
        assert d.format in detect_mod.FORMATS
        assert d.virtual_size is None or d.virtual_size >= 0
        for f in d.findings:
            f.to_dict()
        d.to_dict()
    assert reader.total <= HEAD_SIZE + TAIL_SIZE + EXTRA_BUDGET
    if len(data) <= HEAD_SIZE:  # a file the head holds whole is read once, tail included
        assert len(reader.reads) == (1 if data else 0)


@FUZZ
@given(st.sampled_from(MAGICS), st.binary(max_size=4096), st.integers(0, 300_000))
def test_random_headers(magic, body, pad):
    _run(magic + body + b"\0" * pad)


@FUZZ
@given(st.binary(max_size=2048), st.integers(0, 70_000))
def test_random_iso_and_vhd_tail(body, where):
    data = bytearray(70_000)
    data[32768:32774] = b"\x01CD001"
    data[where:where + len(body)] = body
    data[-512:-504] = b"conectix"
    _run(bytes(data[:70_000]))


def _seeds(corpus: pathlib.Path) -> list[bytes]:
    out = []
    for p in sorted(corpus.iterdir()):
        if p.is_file():
            with open(p, "rb") as f:
                out.append(f.read(HEAD_SIZE + 4096))
    return out


@pytest.fixture(scope="module")
def seeds(corpus):
    return _seeds(corpus)


@FUZZ
@given(data=st.data())
def test_mutated_real_headers(seeds, data):
    seed = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 12))):
        pos = data.draw(st.integers(0, min(len(seed) - 1, 600)))
        chunk = data.draw(st.binary(min_size=1, max_size=8))
        seed[pos:pos + len(chunk)] = chunk
    cut = data.draw(st.integers(0, len(seed)))
    _run(bytes(seed[:cut]))
