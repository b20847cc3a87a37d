"""Batch conversions from a JSON or CSV manifest: N at a time, a result per item, a summary,
and a second run that skips what is already converted and verified."""

from __future__ import annotations

import json
import os
import pathlib

from tests.convert.conftest import diskkit
from tests.helpers import create, qemu_img


def _identical(a: pathlib.Path, fa: str, b: pathlib.Path, fb: str) -> bool:
    return "Images are identical" in qemu_img("compare", "-f", fa, "-F", fb, a, b)


def test_json_manifest_runs_and_resumes(images: dict[str, pathlib.Path],
                                        tmp_path: pathlib.Path) -> None:
    evil = create(tmp_path / "evil.vmdk", "vmdk", "1M", "subformat=monolithicFlat")
    evil.write_text(evil.read_text().replace('"evil-flat.vmdk"', '"/etc/shadow"'))
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([
        {"source": str(images["vmdk-stream"]), "target": "a.qcow2", "format": "qcow2"},
        {"source": str(images["vhdx"]), "target": "b.raw", "format": "raw",
         "source_format": "vhdx"},
        {"source": str(images["vdi"]), "target": "c.vhd", "format": "vhd"},
        {"source": str(evil), "target": "d.raw", "format": "raw"},
        {"source": "missing.raw", "target": "e.raw", "format": "raw"},
    ]))
    r = diskkit("convert", "--manifest", manifest, "--jobs", "2", "--json")
    assert r.returncode == 1, r.stderr  # one refused, one failed
    doc = json.loads(r.stdout)
    status = [o["status"] for o in doc["items"]]
    assert status == ["converted", "converted", "converted", "refused", "failed"]
    assert doc["summary"] == {"converted": 3, "skipped": 0, "refused": 1, "failed": 1}
    assert doc["items"][4]["error"]["code"] == "not-found"
    assert all(o["verified"] for o in doc["items"][:3])
    base = images["raw"]
    assert _identical(base, "raw", tmp_path / "a.qcow2", "qcow2")
    assert _identical(base, "raw", tmp_path / "b.raw", "raw")
    assert _identical(base, "raw", tmp_path / "c.vhd", "vpc")
    assert not (tmp_path / "d.raw").exists()

    # Second run: the three done are skipped, not redone.
    mtime = (tmp_path / "a.qcow2").stat().st_mtime_ns
    r = diskkit("convert", "--manifest", manifest, "--json")
    doc = json.loads(r.stdout)
    assert [o["status"] for o in doc["items"]][:3] == ["skipped"] * 3
    assert (tmp_path / "a.qcow2").stat().st_mtime_ns == mtime

    # A target changed since is not trusted: it is converted again (--force to replace).
    os.truncate(tmp_path / "b.raw", 4096)
    r = diskkit("convert", "--manifest", manifest, "--json", "--force")
    doc = json.loads(r.stdout)
    assert [o["status"] for o in doc["items"]][:3] == ["skipped", "converted", "skipped"]
    assert _identical(base, "raw", tmp_path / "b.raw", "raw")


def test_csv_manifest_text_output(images: dict[str, pathlib.Path],
                                  tmp_path: pathlib.Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("source,target,format\n"
                        f"{images['qcow2']},x.vdi,vdi\n"
                        f"{images['vmdk-sparse']},y.vhdx,vhdx\n")
    r = diskkit("convert", "--manifest", manifest, "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert "2 converted" in r.stdout and "0 failed" in r.stdout
    assert _identical(images["raw"], "raw", tmp_path / "x.vdi", "vdi")
    assert _identical(images["raw"], "raw", tmp_path / "y.vhdx", "vhdx")
    r = diskkit("convert", "--manifest", manifest)
    assert r.returncode == 0 and "2 skipped" in r.stdout


def test_bad_manifest(tmp_path: pathlib.Path) -> None:
    m = tmp_path / "bad.json"
    m.write_text('[{"source": "a"}]')
    r = diskkit("convert", "--manifest", m)
    assert r.returncode == 2 and "bad-manifest" in r.stderr
    m.write_text("{not json")
    r = diskkit("convert", "--manifest", m)
    assert r.returncode == 2 and "bad-manifest" in r.stderr
