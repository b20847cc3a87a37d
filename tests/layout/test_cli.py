"""``diskkit info`` shows the layout: JSON keys, the bar, and ``--svg``; through qcow2 too."""

from __future__ import annotations

import json
import pathlib
import sys
import xml.etree.ElementTree as ET

import pytest

from diskkit.runner import run
from tests.fixtures.lvm_images import ROOT_UUID, LvmImages
from tests.helpers import qemu_img
from tests.layout.tools import sfdisk_json

DISKKIT = [sys.executable, "-m", "diskkit"]


def _info(*args: str) -> dict:
    return json.loads(run([*DISKKIT, "info", *args, "--json"], timeout=120).stdout)


def test_info_json_has_layout(lvm_images: LvmImages) -> None:
    out = _info(str(lvm_images.root))
    assert out["partition_table"] == "mbr"
    ref = sfdisk_json(lvm_images.root)
    assert [(p["number"], p["start"], p["size"], p["bootable"]) for p in out["partitions"]] == [
        (p["number"], p["start_bytes"], p["size_bytes"], p.get("bootable", False))
        for p in ref["partitions"]]
    fss = {f["location"]: f for f in out["filesystems"]}
    assert fss["lv ubuntu-vg/root"]["uuid"] == ROOT_UUID
    assert fss["partition 1"]["label"] == "boot"
    assert [vg["name"] for vg in out["lvm"]["vgs"]] == ["ubuntu-vg"]


def test_info_reads_layout_through_qcow2(lvm_images: LvmImages, tmp_path: pathlib.Path) -> None:
    # the qcow2 reader and parser come from the formats engineer: run once they exist
    pytest.importorskip("diskkit.readers.qcow2")
    pytest.importorskip("diskkit.formats.qcow2")
    q = tmp_path / "root.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", lvm_images.root, q)
    raw, qcow = _info(str(lvm_images.root)), _info(str(q))
    assert qcow["format"] == "qcow2"
    for key in ("partition_table", "partitions", "filesystems", "lvm"):
        assert qcow[key] == raw[key]


def test_info_draws_bar_and_svg(lvm_images: LvmImages, tmp_path: pathlib.Path) -> None:
    svg = tmp_path / "layout.svg"
    res = run([*DISKKIT, "info", str(lvm_images.multi), "--svg", str(svg)], timeout=120,
              env={"COLUMNS": "100"})
    assert "disk (gpt" in res.stdout and "VG datavg" in res.stdout
    assert "span: ext4 span 100.0 MiB" in res.stdout
    root = ET.parse(svg).getroot()
    rects = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.find(
        "{http://www.w3.org/2000/svg}title") is not None]
    titles = [r.find("{http://www.w3.org/2000/svg}title").text for r in rects]
    assert any(t.startswith("1: LVM2_member") for t in titles)
    assert any(t.startswith("span: ext4") for t in titles)
    # to scale: partitions 1 and 2 are the same size, so are their boxes
    w = {t.split(":")[0]: float(r.get("width")) for t, r in zip(titles, rects, strict=True)}
    assert abs(w["1"] - w["2"]) < 0.01
    assert abs(w["1"] / 800 - 75 / 160) < 0.01


def test_svg_to_unwritable_path_is_one_line_error(lvm_images: LvmImages) -> None:
    res = run([*DISKKIT, "info", str(lvm_images.root), "--svg", "/nonexistent/dir/x.svg"],
              timeout=120, check=False)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert "cannot write the SVG" in res.stderr


def test_bar_fits_narrow_terminals(lvm_images: LvmImages) -> None:
    from rich.console import Console

    from diskkit.cli.render import print_bar
    from tests.layout.tools import inspect

    for image in (lvm_images.root, lvm_images.multi, lvm_images.bare):
        layout = inspect(image)
        for width in (20, 43, 100):
            con = Console(record=True, width=width + 2, color_system=None)
            print_bar(layout, con, width=width)
            lines = con.export_text().splitlines()
            bars = [lines[i + 1] for i, ln in enumerate(lines) if ln.startswith(("disk", "VG"))]
            assert bars and all(len(b) == width for b in bars)
