"""Crashes become ImageErrors or findings, and bad targets are refused at once.

- pycdlib raising struct.error (or anything else) out of ``boot.eltorito.inspect_iso`` on a
  damaged El Torito catalog (an ISO made by xorriso, four catalog bytes changed);
- a number of 5,000 digits in a VMDK descriptor (Python refuses to convert more than 4,300):
  ``check`` exits 1 with a finding, never 70;
- a FIFO, a socket and /dev/null as the target: refused at once (exit 2), never blocking;
- an empty and a 100-byte file: findings in ``check`` (exit 1), not "safe".
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from diskkit.boot.eltorito import catalog_entry_count, inspect_iso
from diskkit.readers.base import BytesReader
from diskkit.runner import run


def _diskkit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diskkit", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    d = tmp_path_factory.mktemp("iso")
    root = d / "root"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "boot.img").write_bytes(bytes(2048))
    (root / "hello.txt").write_text("hi\n")
    out = d / "base.iso"
    run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(out), "-R", "-J", "-b",
         "boot/boot.img", "-no-emul-boot", "-boot-load-size", "4", str(root)], timeout=60)
    return out


def _catalog(data: bytes) -> int:
    vd = data[17 * 2048:18 * 2048]
    assert vd[7:30] == b"EL TORITO SPECIFICATION"
    return int.from_bytes(vd[0x47:0x4B], "little") * 2048


def test_pycdlib_struct_error_is_contained(iso, tmp_path) -> None:
    data = bytearray(iso.read_bytes())
    cat = _catalog(bytes(data))
    # Found by mutation (tests/fuzz): the default entry's sector count and the section
    # header's entry count changed make pycdlib's unpack_from run off its buffer.
    for off, value in ((41, 55), (44, 212), (95, 187), (112, 44)):
        data[cat + off] = value
    got = inspect_iso(BytesReader(bytes(data)))
    assert got.error is not None
    bad = tmp_path / "bad.iso"
    bad.write_bytes(bytes(data))
    res = _diskkit("info", str(bad), "--json")
    assert res.returncode in (0, 1), res.stderr
    json.loads(res.stdout)


def test_eltorito_entry_count_is_bounded_before_pycdlib(iso, tmp_path) -> None:
    data = bytearray(iso.read_bytes())
    cat = _catalog(bytes(data))
    assert catalog_entry_count(BytesReader(bytes(data))) == 1  # xorriso: the default only
    # A final section header (0x91) claiming 65,535 EFI entries.
    data[cat + 64:cat + 68] = bytes([0x91, 0xEF]) + (65535).to_bytes(2, "little")
    started = time.monotonic()
    got = inspect_iso(BytesReader(bytes(data)))
    assert time.monotonic() - started < 5
    assert got.error and "work bound" in got.error
    # Through the CLI, under an address-space limit: a work-bound-hit finding, small JSON.
    from tests.security.craft import run_limited

    bad = tmp_path / "many.iso"
    bad.write_bytes(bytes(data))
    res = run_limited("info", str(bad), "--json", timeout=60)
    assert res.returncode in (0, 1), res.stderr
    assert '"work-bound-hit"' in res.stdout
    assert len(res.stdout) < 1 << 20 and res.peak_rss < 400 << 20


def test_vmdk_descriptor_with_5000_digits(tmp_path) -> None:
    desc = tmp_path / "big.vmdk"
    desc.write_text("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
                    'createType="monolithicFlat"\n\nRW ' + "9" * 5000 + ' FLAT "flat.img" 0\n')
    res = _diskkit("check", str(desc), "--json")
    assert res.returncode == 1, res.stderr
    codes = {f["code"] for f in json.loads(res.stdout)["findings"]}
    assert "vmdk-bad-descriptor" in codes


@pytest.mark.parametrize("command", ["info", "check", "diagnose", "convert"])
def test_fifo_target_is_refused_at_once(tmp_path, command) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = [command, str(fifo)] + ([str(tmp_path / "out.qcow2"), "-O", "qcow2"]
                                   if command == "convert" else [])
    started = time.monotonic()
    res = _diskkit(*args, timeout=30)
    assert time.monotonic() - started < 20
    assert res.returncode == 2, res.stderr
    assert "not-a-disk-file" in res.stderr
    assert "Traceback" not in res.stderr


def test_socket_and_char_device_targets_are_refused(tmp_path) -> None:
    sock_path = tmp_path / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        for target in (str(sock_path), "/dev/null", "/dev/zero"):
            res = _diskkit("check", target, timeout=30)
            assert res.returncode == 2, (target, res.stderr)
            assert "not-a-disk-file" in res.stderr
    finally:
        s.close()


@pytest.mark.parametrize(("size", "code"), [(0, "empty-image"), (100, "image-too-small")])
def test_empty_and_tiny_files_are_findings(tmp_path, size, code) -> None:
    f = tmp_path / "img"
    f.write_bytes(os.urandom(size))
    res = _diskkit("check", str(f), "--json")
    assert res.returncode == 1, res.stderr
    codes = {x["code"] for x in json.loads(res.stdout)["findings"]}
    assert code in codes
