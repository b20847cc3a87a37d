"""The inspection pipeline (diskkit.pipeline.Inspection): one open per target, each stage
computed once, unsafe images refused with the reason, everything closed at the end; checked
against qemu-img (map, info) on images built here."""

from __future__ import annotations

import json
import pathlib

import pytest

from diskkit.errors import ImageError, UserError
from diskkit.pipeline import Inspection, hypervisor_format
from diskkit.runner import run

MiB = 1 << 20


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("pipeline")
    raw = d / "disk.raw"
    run(["truncate", "-s", str(16 * MiB), str(raw)])
    run(["sfdisk", "-q", str(raw)], input="label: gpt\nstart=2048, size=20480, type=L\n")
    part = d / "p.ext4"
    run(["mkfs.ext4", "-q", "-F", "-L", "data", str(part), "10M"])
    with open(raw, "r+b") as out:
        out.seek(2048 * 512)
        out.write(part.read_bytes())
    q = d / "disk.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(q)], timeout=120)
    child = d / "child.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(q), "-F", "qcow2", str(child)],
        timeout=60)
    return {"raw": raw, "qcow2": q, "child": child}


def test_stages_are_computed_once_and_match_qemu(images: dict[str, pathlib.Path]) -> None:
    q = images["qcow2"]
    info = json.loads(run(["qemu-img", "info", "--output=json", str(q)], timeout=60).stdout)
    mapped = json.loads(run(["qemu-img", "map", "-f", "qcow2", "--output=json", str(q)],
                            timeout=60).stdout)
    with Inspection(str(q)) as insp:
        assert insp.detection is insp.detection
        assert insp.format == info["format"] == "qcow2"
        assert insp.detection.virtual_size == info["virtual-size"]
        disk = insp.disk
        assert disk is not None and disk is insp.disk and disk.size == info["virtual-size"]
        assert insp.layout is insp.layout and insp.layout is not None
        assert insp.layout.table == "gpt"
        assert [f.label for f in insp.layout.filesystems] == ["data"]
        ext = insp.extents
        assert ext is not None and ext.complete and ext is insp.extents
        assert ext.allocated == sum(m["length"] for m in mapped if m["data"])
        assert insp.boot is insp.boot
        assert insp.safe and insp.report().to_json()["partitions"][0]["number"] == 1
    with pytest.raises(OSError):  # closed: the file descriptor is gone
        disk.read(0, 512)


def test_unsafe_image_has_no_disk_and_says_why(images: dict[str, pathlib.Path]) -> None:
    with Inspection(str(images["child"])) as insp:
        assert not insp.safe
        assert insp.disk is None and insp.layout is None and insp.boot is None
        exc = insp.error("layout")
        assert isinstance(exc, ImageError) and exc.code == "unsafe-image"
        assert "qcow2-backing-file" in str(exc)


def test_hypervisor_view(images: dict[str, pathlib.Path]) -> None:
    """Told raw, a hypervisor reads a qcow2's header as sector 0 (diagnose's view)."""
    with Inspection(str(images["qcow2"]), "raw", hypervisor=True) as insp:
        assert insp.format == "raw"
        assert insp.disk is insp.container
        assert insp.disk.read(0, 4) == b"QFI\xfb"
    with Inspection(str(images["raw"]), hypervisor=True) as insp:
        assert hypervisor_format(insp.target, insp.detection, None) == "raw"
        assert insp.layout is not None and insp.layout.table == "gpt"


def test_a_missing_file_is_one_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(UserError):
        Inspection(str(tmp_path / "nope.qcow2"))


def test_extents_of_a_large_sparse_disk(tmp_path: pathlib.Path) -> None:
    """A 1 TiB qcow2 with two written clusters: the pass walks it window by window and
    finds exactly what qemu-img map finds."""
    q = tmp_path / "big.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(q), "1T"], timeout=60)
    run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", "-c",
         "write -P 0xa5 700G 64k", str(q)], timeout=60)
    mapped = json.loads(run(["qemu-img", "map", "-f", "qcow2", "--output=json", str(q)],
                            timeout=60).stdout)
    with Inspection(str(q)) as insp:
        ext = insp.extents
        assert ext is not None and ext.complete
        assert ext.allocated == sum(m["length"] for m in mapped if m["data"]) == 128 << 10
        assert [(e.offset, e.length) for e in ext.data] == \
            [(m["start"], m["length"]) for m in mapped if m["data"]]
