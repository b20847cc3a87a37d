"""LVM2 read without device-mapper, checked against lvm's own pvs/vgs/lvs report and blkid."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest

from diskkit.errors import ImageError, UserError
from diskkit.layout import inspect_layout, lv_reader
from diskkit.layout.filesystems import probe
from diskkit.layout.lvm_text import parse_text
from diskkit.readers.base import Reader
from diskkit.readers.raw import FileReader
from tests.fixtures.lvm_images import ROOT_UUID, LvmImages
from tests.layout.tools import blkid, inspect


def _check_report(layout, report: dict) -> None:
    assert layout.lvm is not None
    (vg,) = layout.lvm.vgs
    (ref_vg,) = report["vgs"]
    assert vg.name == ref_vg["vg_name"] and vg.uuid == ref_vg["vg_uuid"]
    assert vg.seqno == int(ref_vg["vg_seqno"])
    assert vg.extent_size == int(ref_vg["vg_extent_size"])
    assert sorted(p.uuid for p in vg.pvs) == sorted(p["pv_uuid"] for p in report["pvs"])
    assert {p.pe_start for p in vg.pvs} == {int(p["pe_start"]) for p in report["pvs"]}
    ref_lvs: dict[str, list[dict]] = {}
    for seg in report["lvs"]:
        ref_lvs.setdefault(seg["lv_name"], []).append(seg)
    assert sorted(lv.name for lv in vg.lvs) == sorted(ref_lvs)
    for lv in vg.lvs:
        segs = sorted(ref_lvs[lv.name], key=lambda s: int(s["seg_start"]))
        assert lv.uuid == segs[0]["lv_uuid"]
        assert lv.size == int(segs[0]["lv_size"])
        assert len(lv.segments) == len(segs)
        for mine, theirs in zip(lv.segments, segs, strict=True):
            assert mine.start_extent * vg.extent_size == int(theirs["seg_start"])
            assert mine.extent_count * vg.extent_size == int(theirs["seg_size"])
            assert len(mine.stripes) == int(theirs["stripes"])


def test_ubuntu_vg_matches_lvm_and_blkid(lvm_images: LvmImages) -> None:
    layout = inspect(lvm_images.root)
    _check_report(layout, lvm_images.report["root"])
    by_loc = {f.location: f for f in layout.filesystems}
    assert by_loc["partition 2"].type == "LVM2_member"
    assert by_loc["partition 2"].uuid == lvm_images.report["root"]["pvs"][0]["pv_uuid"]
    root = by_loc["lv ubuntu-vg/root"]
    assert (root.type, root.label, root.uuid) == ("ext4", "rootfs", ROOT_UUID)
    swap = by_loc["lv ubuntu-vg/swap_1"]
    assert (swap.type, swap.label) == ("swap", "swap")
    for fs in (by_loc["partition 1"], root, swap, by_loc["partition 2"]):
        ref = blkid(lvm_images.root, fs.offset, fs.size)
        assert (fs.type, fs.uuid, fs.label) == (ref["TYPE"], ref.get("UUID"), ref.get("LABEL"))
    assert layout.findings == ()


def test_lv_spanning_two_pvs(lvm_images: LvmImages) -> None:
    layout = inspect(lvm_images.multi)
    _check_report(layout, lvm_images.report["multi"])
    span = next(f for f in layout.filesystems if f.location == "lv datavg/span")
    assert (span.type, span.label, span.size) == ("ext4", "span", 100 << 20)
    assert span.offset is None  # two pieces: no single disk offset
    lv = layout.lvm.find_lv("datavg/stripe")
    assert lv is not None and not lv.linear
    with FileReader(str(lvm_images.multi)) as r:
        reader = lv_reader(r, layout, "datavg/span")
        assert reader.size == 100 << 20
        # the second segment holds the tail of the ext4: its superblock backups prove the map
        assert probe(reader).label == "span"
        with pytest.raises(ImageError):
            lv_reader(r, layout, "datavg/stripe")
        with pytest.raises(UserError):
            lv_reader(r, layout, "datavg/nope")


def test_lv_reader_reads_the_files_region(lvm_images: LvmImages) -> None:
    layout = inspect(lvm_images.root)
    with FileReader(str(lvm_images.root)) as r:
        lv = lv_reader(r, layout, "ubuntu-vg/root")
        data = b"".join(lv.read(off, 1 << 20) for off in range(0, lv.size, 1 << 20))
    assert b"/dev/mapper/ubuntu--vg-root / ext4" in data  # /etc/fstab's content


def test_text_parser_rejects_garbage() -> None:
    for bad in ('vg { a = }', 'vg { a = "x"', 'a = [1, {]', '{', 'vg { ' * 100):
        with pytest.raises(ImageError):
            parse_text(bad)
    assert parse_text('a = 1 # c\nb { c = ["x", 2] d = "q\\"" }') == {
        "a": 1, "b": {"c": ["x", 2], "d": 'q"'}}


class _Overlay(Reader):
    """A reader of ``parent`` with some bytes replaced (damage without copying the image)."""

    def __init__(self, parent: Reader, patches: dict[int, int]) -> None:
        self.parent, self.patches, self.size = parent, patches, parent.size

    def _read(self, offset: int, length: int) -> bytes:
        data = bytearray(self.parent.read(offset, length))
        for pos, value in self.patches.items():
            if offset <= pos < offset + length:
                data[pos - offset] = value
        return bytes(data)


def test_corrupted_lvm_metadata_never_crashes(lvm_images: LvmImages) -> None:
    """Random damage to the PV label, mda header and metadata text: a finding, a shorter
    answer or ImageError, never another exception."""
    pv = 133120 * 512
    rng = random.Random(11)
    with FileReader(str(lvm_images.root)) as disk:
        # raw_locn[0] of the mda header at 4 KiB: where the current metadata text is
        text_off, text_len = struct.unpack("<QQ", disk.read(pv + 4096 + 40, 16))
        assert b"ubuntu-vg {" in disk.read(pv + 4096 + text_off, text_len)
        for _ in range(150):
            patches = {}
            for _ in range(rng.randint(1, 8)):
                where = rng.choice([pv + rng.randrange(512, 1024),
                                    pv + 4096 + rng.randrange(64),
                                    pv + 4096 + text_off + rng.randrange(text_len)])
                patches[where] = rng.randrange(256)
            with contextlib.suppress(ImageError):
                inspect_layout(_Overlay(disk, patches))


def test_lv_reader_extents_tile_the_lv(lvm_images: LvmImages) -> None:
    """The extents of an LV reader (over two PVs) tile it, and holes read as zeros."""
    layout = inspect(lvm_images.multi)
    with FileReader(str(lvm_images.multi)) as r:
        lv = lv_reader(r, layout, "datavg/span")
        exts = list(lv.extents())
        pos = 0
        for e in exts:
            assert e.offset == pos and e.length > 0
            pos = e.end
            if not e.data:
                assert lv.read(e.offset, min(e.length, 1 << 20)).count(0) == min(
                    e.length, 1 << 20)
        assert pos == lv.size
        assert any(e.data for e in exts)
        assert not lv.is_zero(0, 4096)  # the ext4 superblock is there
