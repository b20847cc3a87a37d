"""Progress parsing, fed the real output of ``qemu-img convert -p`` in every chunking."""

from __future__ import annotations

import pathlib

import pytest

from diskkit.convert import Request, convert
from diskkit.convert.qemuimg import parse_progress
from diskkit.runner import run


@pytest.fixture(scope="module")
def qemu_output(images: dict[str, pathlib.Path], tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("progress") / "o.qcow2"
    res = run(["qemu-img", "convert", "-p", "-f", "vmdk", "-O", "qcow2", images["vmdk-sparse"],
               out], timeout=120, binary=True)
    return res.stdout


@pytest.mark.parametrize("chunk", [1, 3, 7, 16, 64, 4096])
def test_parse_in_chunks(qemu_output: bytes, chunk: int) -> None:
    seen: list[float] = []
    pending = b""
    for i in range(0, len(qemu_output), chunk):
        pct, pending = parse_progress(pending + qemu_output[i:i + chunk])
        if pct is not None:
            seen.append(pct)
    assert seen and seen[-1] == 100.0
    assert seen == sorted(seen)
    # Every percentage qemu-img printed is seen when fed byte by byte.
    if chunk == 1:
        assert len(seen) == qemu_output.count(b"/100%)")


def test_parse_garbage() -> None:
    assert parse_progress(b"")[0] is None
    assert parse_progress(b"(abc/100%)\r(12.5/100%)\r(99")[0] == 12.5
    pct, tail = parse_progress(b"x" * 10000)
    assert pct is None and len(tail) <= 64


def test_engine_reports_progress(images: dict[str, pathlib.Path],
                                 tmp_path: pathlib.Path) -> None:
    seen: list[float] = []
    convert(Request(str(images["vhdx"]), str(tmp_path / "o.raw"), "raw"),
            on_progress=seen.append, quiet=True)
    assert seen and seen[-1] == 100.0 and seen == sorted(seen)


def test_engine_reports_bytes_rate_and_phase(images: dict[str, pathlib.Path],
                                             tmp_path: pathlib.Path) -> None:
    """Bytes done of the total (the guest size by qemu-img info), throughput and time left,
    then the finish phase (sync and verification) before the result."""
    from diskkit.convert.progress import FINISH, describe
    from tests.helpers import qemu_img_info

    seen = []
    res = convert(Request(str(images["qcow2"]), str(tmp_path / "o.raw"), "raw"),
                  on_update=seen.append, quiet=True)
    size = qemu_img_info(images["qcow2"], "qcow2")["virtual-size"]
    copying = [p for p in seen if p.phase != FINISH]
    assert copying and all(p.total_bytes == size for p in seen)
    done = [p.done_bytes for p in copying]
    assert done == sorted(done) and done[-1] == size
    assert copying[-1].rate and copying[-1].rate > 0 and copying[-1].eta == 0
    assert f"/ {size >> 20}.0 MiB" in describe(copying[-1])
    assert seen[-1].phase == FINISH and res.verified
