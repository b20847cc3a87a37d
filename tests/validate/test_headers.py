"""Typed headers: each class's attributes are its layout's fields, and the offsets the layout
computes are the ones the specifications give (checked against images qemu-img writes)."""

from __future__ import annotations

import pathlib

import pytest

from diskkit.formats import fields, vdi, vhd, vhdx, vmdk
from tests.helpers import create, qemu_img_info

HEADERS = [vmdk.VmdkHeader, vhd.VhdFooter, vhd.VhdDynamicHeader, vdi.VdiHeader,
           vhdx.VhdxIdentifier, vhdx.RegionTableHeader, vhdx.RegionEntry,
           vhdx.MetadataTableHeader, vhdx.MetadataEntry, vhdx.FileParameters, vmdk.VmdkMarker]


@pytest.mark.parametrize("cls", HEADERS, ids=lambda c: c.__name__)
def test_fields_match_layout(cls: type[fields.Header]) -> None:
    fields.check_layout(cls)


def test_spec_offsets() -> None:
    # Offsets as the specifications print them (VMware VMDK 5.0, Microsoft VHD, VDICore.h).
    assert vmdk.VmdkHeader.field_offset("gd_offset") == 56
    assert vmdk.VmdkHeader.field_offset("compress_algorithm") == 77
    assert vhd.VhdFooter.field_offset("current_size") == 48
    assert vhd.VhdFooter.field_offset("disk_type") == 60
    assert vhd.VhdFooter.field_offset("checksum") == 64
    assert vhd.VhdDynamicHeader.field_offset("parent_name") == 64
    assert vdi.VdiHeader.field_offset("offset_bmap") == 0x154
    assert vdi.VdiHeader.field_offset("disk_size") == 0x170
    assert vdi.VdiHeader.field_offset("uuid_parent") == 0x1B8
    assert vhdx.MetadataTableHeader.LAYOUT.size == 32
    assert vhdx.RegionEntry.LAYOUT.size == 32


@pytest.mark.parametrize(("fmt", "cls", "at", "size_field", "scale"), [
    ("vmdk", vmdk.VmdkHeader, 0, "capacity", 512),
    ("vdi", vdi.VdiHeader, 0, "disk_size", 1),
])
def test_header_reads_qemu_image(tmp_path: pathlib.Path, fmt: str, cls: type[fields.Header],
                                 at: int, size_field: str, scale: int) -> None:
    img = create(tmp_path / f"x.{fmt}", fmt, "40M")
    hdr = cls.parse(img.read_bytes()[:4096], at)
    assert getattr(hdr, size_field) * scale == qemu_img_info(img, fmt)["virtual-size"]
    _note, off, raw = hdr.evidence("size", size_field)
    assert off == at + cls.field_offset(size_field)
    assert raw == img.read_bytes()[off:off + cls.LAYOUT.length(size_field)]


def test_vhd_footer_of_fixed_disk(tmp_path: pathlib.Path) -> None:
    img = create(tmp_path / "f.vhd", "vpc", "16M", "subformat=fixed")
    data = img.read_bytes()
    foot = vhd.VhdFooter.parse(data[-512:], 0, file_offset=len(data) - 512)
    assert foot.cookie == vhd.COOKIE and foot.disk_type == 2
    assert foot.checksum == vhd.checksum(data[-512:])
    assert foot.offset("disk_type") == len(data) - 512 + 60
