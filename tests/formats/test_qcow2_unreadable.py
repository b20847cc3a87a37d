"""qcow2 headers qemu cannot read (a version other than 2/3, garbled fields): detection still
says qcow2 and reports a blocking finding (``check`` exits 1), qemu-img refuses the same
files, and the reader refuses them with the same code. Built on a real qemu-img image."""

from __future__ import annotations

import json
import pathlib
import shutil
import struct
import subprocess
import sys

import pytest

from diskkit.errors import CommandError, ImageError
from diskkit.readers.qcow2 import Qcow2Reader
from diskkit.readers.raw import FileReader
from tests.formats.conftest import detect_path
from tests.helpers import create, qemu_img, qemu_img_info, write_at

DISKKIT = str(pathlib.Path(sys.executable).parent / "diskkit")

#: name -> (offset, bytes written over a real qcow2 v3 header, code, evidence note)
CASES = {
    "v4": (4, struct.pack(">I", 4), "qcow2-bad-version", "version"),
    "cluster-bits-40": (20, struct.pack(">I", 40), "qcow2-bad-header", "cluster_bits"),
    "header-length-100": (100, struct.pack(">I", 100), "qcow2-bad-header", "header_length"),
}


@pytest.fixture(scope="module")
def garbled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("qcow2-unreadable")
    base = create(d / "base.qcow2", "qcow2", "16M", "compat=1.1")
    out = {}
    for name, (offset, data, _code, _note) in CASES.items():
        p = d / f"{name}.qcow2"
        shutil.copy(base, p)
        write_at(p, offset, data)
        out[name] = p
    # an extension header whose length runs past the first cluster (64 KiB)
    p = d / "extension.qcow2"
    shutil.copy(base, p)
    header_length = struct.unpack(">I", base.read_bytes()[100:104])[0]
    write_at(p, header_length, struct.pack(">II", 0x12345678, 1 << 20))
    out["extension"] = p
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_detection_reports_a_finding(garbled, name):
    offset, data, code, note = CASES[name]
    d = detect_path(garbled[name])
    assert d.format == "qcow2" and d.formats_matched == ("qcow2",)
    assert d.virtual_size is None
    assert [f.code for f in d.findings] == [code]
    f = d.findings[0]
    assert f.blocking and str(f.severity) == "error" and f.fix
    assert (f.evidence[0].note, f.evidence[0].offset, f.evidence[0].data) == (note, offset,
                                                                               data)
    assert not d.safe
    # qemu-img refuses the very same file: the finding is not a false alarm
    with pytest.raises(CommandError):
        qemu_img_info(garbled[name], "qcow2")


def test_extension_past_the_header_area(garbled):
    p = garbled["extension"]
    d = detect_path(p)
    assert d.format == "qcow2" and [f.code for f in d.findings] == ["qcow2-bad-header"]
    with pytest.raises(CommandError):
        qemu_img_info(p, "qcow2")


@pytest.mark.parametrize("name", [*CASES, "extension"])
def test_reader_still_refuses(garbled, name):
    code = CASES[name][2] if name in CASES else "qcow2-bad-header"
    with FileReader(str(garbled[name])) as r, pytest.raises(ImageError) as exc:
        Qcow2Reader(r)
    assert exc.value.code == code


def test_legacy_qcow_version_1_built_by_qemu(tmp_path):
    """qemu-img's own "qcow" (version 1) shares the magic: detection names it qcow (its
    own format, with qemu's virtual size), refused with the conversion qemu-img can do."""
    p = tmp_path / "legacy.qcow"
    qemu_img("create", "-q", "-f", "qcow", p, "16M")
    assert qemu_img_info(p, "qcow")["virtual-size"] == 16 << 20
    d = detect_path(p)
    assert d.format == "qcow" and [f.code for f in d.findings] == ["qcow1-image"]
    assert d.details["version"] == 1 and d.virtual_size == 16 << 20
    assert "-f qcow -O qcow2" in d.findings[0].fix


def test_truncated_header_is_still_unreadable(garbled, tmp_path):
    p = tmp_path / "short.qcow2"
    p.write_bytes(garbled["v4"].read_bytes()[:64])
    with pytest.raises(ImageError):
        detect_path(p)


def _check(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DISKKIT, "check", str(path), "--json"], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("name", ["v4", "cluster-bits-40"])
def test_cli_check_exits_1_with_the_finding(garbled, name):
    r = _check(garbled[name])
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["format"] == "qcow2" and out["safe"] is False
    assert CASES[name][2] in {f["code"] for f in out["findings"]}
    ev = next(f for f in out["findings"] if f["code"] == CASES[name][2])["evidence"][0]
    assert ev["offset"] == CASES[name][0] and ev["bytes"] == CASES[name][1].hex()


def test_cli_check_truncated_exits_1(garbled, tmp_path):
    """A damaged image is a verdict (exit 1, image-unreadable), not bad input (issue 14)."""
    p = tmp_path / "short.qcow2"
    p.write_bytes(garbled["v4"].read_bytes()[:64])
    r = _check(p)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    f = next(f for f in out["findings"] if f["code"] == "image-unreadable")
    ev = f["evidence"][0]
    data = bytes.fromhex(ev["bytes"])
    assert data[:4] == b"QFI\xfb" and data == p.read_bytes()[ev["offset"]:][:len(data)]
