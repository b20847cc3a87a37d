"""diskkit's own verification (diskkit/convert/verify.py) against qemu-img compare: it finds
the same first differing offset on outputs corrupted after the copy (inside the data, and
where the source has only zeros), a changed size, and nothing on a good output; the command
reports which method it used; the write-back helper really asks the kernel."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import time

import pytest

from diskkit.convert import Request, convert, verify
from diskkit.convert.writeback import Writeback, start_writeback
from tests.convert.conftest import VARIANTS, diskkit
from tests.helpers import qemu_img

#: (source variant, output qemu format, the method diskkit picks for it)
PAIRS = [
    ("raw", "qcow2", "digest"),
    ("qcow2", "raw", "digest"),
    ("vmdk-stream", "qcow2", "digest"),
    ("vmdk-sparse", "raw", "digest"),
    ("qcow2", "vhdx", "digest"),
    ("qcow2-compressed", "vmdk", "digest"),
    ("vhdx", "vmdk", "digest"),
]


def _qemu_compare(src: pathlib.Path, src_fmt: str, out: pathlib.Path, out_fmt: str) -> str:
    """qemu-img compare's own message (the ground truth)."""
    res = subprocess.run(["qemu-img", "compare", "-f", src_fmt, "-F", out_fmt, str(src),
                          str(out)], capture_output=True, text=True, timeout=120, check=False)
    return (res.stdout + res.stderr).strip().splitlines()[-1]


def _diskkit_verdict(src: pathlib.Path, src_fmt: str, out: pathlib.Path, out_fmt: str,
                     how: str) -> tuple[bool, str]:
    open_src = verify.opener(str(src), src_fmt)
    open_out = verify.opener(str(out), out_fmt)
    assert open_src is not None and open_out is not None and how == "digest"
    digest = verify.SourceDigest(open_src)
    digest.start()
    return verify.compare_digests(open_src, digest, open_out)


#: The sources of these tests: 64 MiB with data only in [1, 3) MiB and [40, 41) MiB, so
#: the 4 MiB pieces from 4 to 40 MiB hold no data in any of its formats.
SIZE, RUNS = 64 << 20, ((1 << 20, 2 << 20), (40 << 20, 1 << 20))
DATA_AT, HOLE_AT = (1 << 20) + 4096 + 512, (20 << 20) + 12345 * 512


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("verify-sources")
    raw = d / "raw"
    with open(raw, "wb") as f:
        f.truncate(SIZE)
        for off, n in RUNS:
            f.seek(off)
            f.write(os.urandom(n))
    out = {"raw": raw}
    for name, (fmt, args) in VARIANTS.items():
        if name != "raw":
            out[name] = d / name
            qemu_img("convert", "-f", "raw", "-O", fmt, *args, raw, out[name])
    return out


@pytest.mark.parametrize(("variant", "out_fmt", "how"), PAIRS,
                         ids=[f"{a}-{b}" for a, b, _ in PAIRS])
def test_finds_what_qemu_img_compare_finds(sources: dict[str, pathlib.Path],
                                           tmp_path: pathlib.Path, variant: str, out_fmt: str,
                                           how: str) -> None:
    src, src_fmt = sources[variant], VARIANTS[variant][0]
    assert verify.method(src_fmt, out_fmt, "file", False) == how
    out = tmp_path / f"out.{out_fmt}"
    qemu_img("convert", "-f", src_fmt, "-O", out_fmt, src, out)
    same, message = _diskkit_verdict(src, src_fmt, out, out_fmt, how)
    assert same, message
    assert "identical" in _qemu_compare(src, src_fmt, out, out_fmt)

    for at in (DATA_AT, HOLE_AT):
        bad = tmp_path / f"bad.{out_fmt}"
        qemu_img("convert", "-f", out_fmt, "-O", out_fmt, out, bad)
        subprocess.run(["qemu-io", "-f", out_fmt, "-c", f"write -P 0x5a {at} 512", str(bad)],
                       check=True, capture_output=True, timeout=60)
        want = _qemu_compare(src, src_fmt, bad, out_fmt)
        assert re.search(r"mismatch at offset \d+", want), want
        same, message = _diskkit_verdict(src, src_fmt, bad, out_fmt, how)
        assert not same
        assert re.search(r"offset (\d+)", message)[1] == re.search(r"offset (\d+)", want)[1]
        bad.unlink()


def test_a_changed_size_fails(images: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    """qemu-img compare only warns when the longer image's tail reads as zeros: diskkit
    fails (a disk that grew is not the same disk)."""
    out = tmp_path / "grown.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", images["raw"], out)
    qemu_img("resize", "-f", "qcow2", out, "+1M")
    same, message = _diskkit_verdict(images["raw"], "raw", out, "qcow2", "digest")
    assert not same and "sizes differ" in message


@pytest.mark.parametrize(("variant", "out_fmt", "how"), [
    ("raw", "qcow2", "digest"), ("vmdk-stream", "qcow2", "digest"),
    ("qcow2", "vhdx", "digest"), ("vdi", "qcow2", "qemu-img"), ("vhd", "raw", "qemu-img")])
def test_the_command_says_how_it_verified(images: dict[str, pathlib.Path],
                                          tmp_path: pathlib.Path, variant: str, out_fmt: str,
                                          how: str) -> None:
    r = diskkit("convert", images[variant], tmp_path / "o", "-O", out_fmt, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verified"] is True and doc["verify_method"] == how
    assert "identical" in _qemu_compare(images[variant], VARIANTS[variant][0],
                                        tmp_path / "o", out_fmt)


def test_strict_verification_is_qemu_img_compare_s(images: dict[str, pathlib.Path],
                                                   tmp_path: pathlib.Path) -> None:
    """With ``strict_verify`` (allocation must match too) qemu-img compare -s decides."""
    res = convert(Request(str(images["qcow2"]), str(tmp_path / "o.qcow2"), "qcow2",
                          strict_verify=True), quiet=True)
    assert res.verified and res.verify_method == "qemu-img"


def test_writeback_asks_the_kernel(tmp_path: pathlib.Path) -> None:
    """sync_file_range(SYNC_FILE_RANGE_WRITE) is reached (it returns 0 on a regular file),
    and the thread keeps asking while the file exists, waiting for it to appear."""
    path = tmp_path / "growing"
    with Writeback(str(path), interval=0.01) as wb:
        with open(path, "wb") as f:
            for _ in range(20):
                f.write(os.urandom(1 << 20))
                f.flush()
                fd = f.fileno()
                assert start_writeback(fd)
        deadline = time.monotonic() + 30
        while wb.requests < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert wb.requests >= 3 and not wb.is_alive()


def test_ctrl_c_waits_for_the_workers() -> None:
    """Ctrl-C while the verifying threads run: they stop after their piece in hand and are
    all gone before the interrupt reaches the caller (who then closes what they read)."""
    import signal
    import threading

    def body(w: int, failed: list[BaseException]) -> None:
        deadline = time.monotonic() + 10
        while not failed and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the piece in hand

    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        verify.spread(body, 2, "dk-test-spread")
    assert time.monotonic() - started < 5  # the interrupt, not the workers' deadline
    assert not [t for t in threading.enumerate()
                if t.name.startswith("dk-test-spread") and t.is_alive()]
