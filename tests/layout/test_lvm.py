"""LVM2 read without device-mapper, checked against lvm's own pvs/vgs/lvs report and blkid."""

from __future__ import annotations

import contextlib
import pathlib
import random
import struct
from dataclasses import replace

import pytest

from diskkit.errors import ImageError, UserError
from diskkit.layout import inspect_layout, lv_reader
from diskkit.layout.filesystems import probe
from diskkit.layout.lvm import parse_lvm, read_label
from diskkit.layout.lvm_text import parse_text
from diskkit.readers.base import Reader
from diskkit.readers.raw import FileReader
from diskkit.runner import run
from tests.fixtures.lvm_images import ROOT_UUID, LvmImages
from tests.helpers import write_at
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
    dev_of = {p["pv_uuid"]: p["pv_name"] for p in report["pvs"]}
    key_uuid = {p.key: p.uuid for p in vg.pvs}
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
            # the physical extents, as lvs spells them: "/dev/loopN:FIRST-LAST ..."
            per = mine.extent_count // len(mine.stripes)
            ranges = " ".join(f"{dev_of[key_uuid[k]]}:{e}-{e + per - 1}"
                              for k, e in mine.stripes)
            assert ranges == theirs["seg_pe_ranges"]


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


def test_pv_on_whole_disk(lvm_images: LvmImages) -> None:
    layout = inspect(lvm_images.bare)
    assert layout.table is None
    _check_report(layout, lvm_images.report["bare"])
    disk, data = layout.filesystems
    assert (disk.location, disk.type) == ("disk", "LVM2_member")
    assert (data.location, data.type, data.label) == ("lv vg_bare/data", "vfat", "BARE")
    with FileReader(str(lvm_images.bare)) as r:
        label = read_label(r, 0, r.size, "disk")
        assert label is not None and len(label.metadata_areas) == 2
        # the copy at the end of the PV alone gives the same VG
        end_only = replace(label, metadata_areas=label.metadata_areas[1:])
        info, findings = parse_lvm(r, [end_only])
        assert findings == [] and info.vgs == layout.lvm.vgs
    ref = blkid(lvm_images.bare, data.offset, data.size)
    assert (data.type, data.uuid, data.label) == (ref["TYPE"], ref["UUID"], ref["LABEL"])


def test_metadata_wrapping_round_the_circular_buffer(lvm_images: LvmImages,
                                                     tmp_path: pathlib.Path) -> None:
    """Metadata text that wraps from the end of its area to just after the header: lvm2
    itself reads the rewritten image, and so does diskkit; a broken checksum is refused
    by both."""
    from diskkit.layout.lvm import lvm_crc, read_label
    from tests.fixtures.lvm_images import _loops, _lvm

    img = tmp_path / "wrapped.img"
    run(["cp", "--sparse=always", str(lvm_images.root), str(img)])
    pv = 133120 * 512
    with FileReader(str(img)) as r:
        (area_off, area_size), = read_label(r, pv, r.size - pv, "p2").metadata_areas
        start = pv + area_off
        hdr = bytearray(r.read(start, 512))
        off, length = struct.unpack_from("<QQ", hdr, 40)
        text = r.read(start + off, length)
    new_off = area_size - 512  # 512 bytes at the end, the rest after the header
    assert length > 512
    write_at(img, start + new_off, text[:512])
    write_at(img, start + 512, text[512:])
    struct.pack_into("<Q", hdr, 40, new_off)
    struct.pack_into("<I", hdr, 0, lvm_crc(bytes(hdr[4:])))
    write_at(img, start, bytes(hdr))

    def lvm_view() -> list[str]:
        with _loops(img, [(pv, 200 * (1 << 20) - pv)]) as loops:
            out = _lvm(["lvs", "--noheadings", "-o", "lv_name"], loops)
        # (lvm prints "Retrying metadata scan." on stdout when a copy is bad)
        return sorted(ln.strip() for ln in out.splitlines() if ln.strip().isidentifier())

    assert lvm_view() == ["root", "swap_1"]
    layout = inspect(img)
    assert sorted(lv.name for lv in layout.lvm.vgs[0].lvs) == ["root", "swap_1"]
    assert "lv ubuntu-vg/root" in {f.location for f in layout.filesystems}

    write_at(img, start + 512 + 40, b"#")  # damage the wrapped part of the text
    assert lvm_view() == []
    layout = inspect(img)
    assert layout.lvm is not None and layout.lvm.vgs == ()
    assert "lvm-metadata-unreadable" in {f.code for f in layout.findings}
