"""Hostile sources are refused before qemu-img ever opens them; a declared format that
disagrees with the image is refused; --allow-unsafe is the explicit way through."""

from __future__ import annotations

import json
import pathlib

from tests.convert.conftest import diskkit
from tests.helpers import create, qemu_img


def _no_output(tmp_path: pathlib.Path, name: str) -> None:
    assert not (tmp_path / name).exists()
    assert not list(tmp_path.glob(".*diskkit-partial*"))


def test_qcow2_backing_file_naming_etc_passwd(tmp_path: pathlib.Path) -> None:
    evil = create(tmp_path / "evil.qcow2", "qcow2", "16M", "backing_file=/etc/passwd",
                  "backing_fmt=raw")
    r = diskkit("convert", evil, tmp_path / "out.raw", "-O", "raw", "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "refused"
    assert doc["findings"] and all(f["severity"] in ("error", "critical")
                                   for f in doc["findings"])
    assert "/etc/passwd" in json.dumps(doc["findings"])
    _no_output(tmp_path, "out.raw")
    # The text form names the finding too.
    r = diskkit("convert", evil, tmp_path / "out.raw", "-O", "raw")
    assert r.returncode == 1 and "refused" in r.stdout


def test_vmdk_extent_naming_a_host_file(tmp_path: pathlib.Path) -> None:
    vmdk = create(tmp_path / "flat.vmdk", "vmdk", "1M", "subformat=monolithicFlat")
    text = vmdk.read_text().replace('"flat-flat.vmdk"', '"/etc/passwd"')
    vmdk.write_text(text)
    r = diskkit("convert", vmdk, tmp_path / "out.qcow2", "-O", "qcow2", "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "refused" and "/etc/passwd" in json.dumps(doc["findings"])
    _no_output(tmp_path, "out.qcow2")


def test_declared_raw_but_really_qcow2(tmp_path: pathlib.Path) -> None:
    """CVE-2024-40767's shape: the deployer says raw, the bytes say qcow2."""
    img = create(tmp_path / "disk.img", "qcow2", "16M")
    r = diskkit("convert", img, tmp_path / "out.raw", "-O", "raw", "-f", "raw")
    assert r.returncode == 2 and "format-mismatch" in r.stderr, r.stderr
    _no_output(tmp_path, "out.raw")
    r = diskkit("convert", img, tmp_path / "out.raw", "-O", "raw", "-f", "qcow2")
    assert r.returncode == 0, r.stderr


def test_allow_unsafe_converts_a_backed_image(tmp_path: pathlib.Path) -> None:
    """With --allow-unsafe the backing chain is followed: the output holds the base's data."""
    base = tmp_path / "base.raw"
    base.write_bytes(b"B" * (1 << 20))
    top = create(tmp_path / "top.qcow2", "qcow2", "1M", f"backing_file={base}",
                 "backing_fmt=raw")
    assert diskkit("convert", top, tmp_path / "o.raw", "-O", "raw").returncode == 1
    r = diskkit("convert", top, tmp_path / "o.raw", "-O", "raw", "--allow-unsafe")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.raw").read_bytes() == base.read_bytes()
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "raw", base,
                                              tmp_path / "o.raw")


def test_bad_usage_is_one_line(tmp_path: pathlib.Path) -> None:
    r = diskkit("convert", tmp_path / "missing.raw", tmp_path / "o.raw", "-O", "raw")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = diskkit("convert", tmp_path / "missing.raw", tmp_path / "o.raw", "-O", "nosuch")
    assert r.returncode == 2 and "unknown-format" in r.stderr
    src = tmp_path / "s.raw"
    src.write_bytes(b"\0" * 65536)
    r = diskkit("convert", src, tmp_path / "o.raw", "-O", "raw", "-o", "backing_file=/x")
    assert r.returncode == 2 and "bad-option" in r.stderr
    assert not (tmp_path / "o.raw").exists()
