"""The room check's in-process bound (plan.bound_in_process) never asks for less than qemu-img
measure says the qcow2 output needs, nor much more, on sources of every shape; for raw
outputs it covers the data qemu-img map lists."""

from __future__ import annotations

import json
import os
import pathlib
import random

import pytest

from diskkit.convert import plan
from tests.helpers import qemu_img

MIB, GIB, TIB = 1 << 20, 1 << 30, 1 << 40


def _raw(path: pathlib.Path, size: int, runs: list[tuple[int, int]]) -> pathlib.Path:
    with open(path, "wb") as f:
        f.truncate(size)
        for off, n in runs:
            f.seek(off)
            f.write(os.urandom(n))
    return path


def _shapes(d: pathlib.Path) -> dict[str, pathlib.Path]:
    rng = random.Random(5)
    scattered = [(rng.randrange(0, TIB // 4096) * 4096, 4096) for _ in range(300)]
    return {
        "empty-1g": _raw(d / "empty.raw", GIB, []),
        "full-24m": _raw(d / "full.raw", 24 * MIB, [(0, 24 * MIB)]),
        "odd-size": _raw(d / "odd.raw", 100 * MIB + 12 * 1024,
                         [(MIB + 7, 3 * MIB), (100 * MIB, 12 * 1024)]),
        "scattered-1t": _raw(d / "scattered.raw", TIB, sorted(scattered)),
        "runs-2g": _raw(d / "runs.raw", 2 * GIB, [(i * 64 * MIB, 4 * MIB) for i in range(32)]),
    }


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    return _shapes(tmp_path_factory.mktemp("room"))


@pytest.mark.parametrize("shape", ["empty-1g", "full-24m", "odd-size", "scattered-1t",
                                   "runs-2g"])
@pytest.mark.parametrize("src_fmt", ["raw", "qcow2"])
def test_bound_covers_qemu_img_measure(shapes: dict[str, pathlib.Path], tmp_path: pathlib.Path,
                                       shape: str, src_fmt: str) -> None:
    src = shapes[shape]
    if src_fmt == "qcow2":
        q = tmp_path / "src.qcow2"
        qemu_img("convert", "-f", "raw", "-O", "qcow2", src, q)
        src = q
    facts = plan.inspect_source(str(src))
    bound = plan.bound_in_process(facts, "qcow2")
    assert bound is not None
    theirs = json.loads(qemu_img("measure", "--output=json", "-f", src_fmt, "-O", "qcow2", src))
    # the real conversion fits in the bound (qemu-img measure counts an L2 table for every
    # 512 MiB of the virtual disk; a conversion writes only those the data needs, so the
    # bound may be below measure's figure, never below what the output takes)
    out = tmp_path / "out.qcow2"
    qemu_img("convert", "-f", src_fmt, "-O", "qcow2", src, out)
    assert out.stat().st_blocks * 512 <= bound.required
    assert os.path.getsize(out) <= bound.required
    assert bound.required <= theirs["required"] * 1.01 + 2 * MIB
    assert theirs["fully-allocated"] <= bound.fully_allocated \
        <= theirs["fully-allocated"] * 1.01 + 2 * MIB
    # raw output: at least every byte qemu-img map lists as data
    raw_bound = plan.bound_in_process(facts, "raw")
    assert raw_bound is not None
    mapped = json.loads(qemu_img("map", "--output=json", "-f", src_fmt, src))
    assert raw_bound.required >= sum(e["length"] for e in mapped if e["data"] and not
                                     e.get("zero"))


def test_no_bound_where_diskkit_does_not_read_the_source(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "s.vdi"
    qemu_img("create", "-f", "vdi", src, "16M")
    assert plan.bound_in_process(plan.inspect_source(str(src)), "qcow2") is None
