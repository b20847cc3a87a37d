"""Hostile and broken images, built byte by byte on top of real ones: each is flagged with
its own code (or refused as unreadable), and qemu-img agrees where it reads the format."""

from __future__ import annotations

import shutil
import struct

import pytest

from diskkit.errors import ImageError
from tests.formats.conftest import detect_path
from tests.helpers import create, qemu_img, qemu_img_info, write_at


def codes(path) -> set[str]:
    return {f.code for f in detect_path(path).findings}


def test_vmdk_descriptor_naming_a_host_file(tmp_path):
    p = tmp_path / "evil.vmdk"
    p.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                 'createType="monolithicFlat"\n\nRW 2048 FLAT "/etc/passwd" 0\n'
                 'ddb.adapterType = "ide"\n')
    d = detect_path(p)
    assert d.format == "vmdk"
    assert {"vmdk-create-type", "vmdk-extent-file"} <= codes(p)
    named = [f.details["extent_file"] for f in d.findings if f.code == "vmdk-extent-file"]
    assert named == ["/etc/passwd"]
    assert d.virtual_size == 2048 * 512


def test_vmdk_sparse_claiming_safe_type_but_naming_a_file(tmp_path):
    p = tmp_path / "evil.vmdk"
    p.write_text('# Disk DescriptorFile\nversion=1\ncreateType="monolithicSparse"\n'
                 'RW 2048 SPARSE "../../etc/shadow"\n')
    assert codes(p) == {"vmdk-extent-file"}


def test_vmdk_descriptor_with_foreign_lines(tmp_path):
    p = tmp_path / "junk.vmdk"
    p.write_text('# Disk DescriptorFile\nversion=1\ncreateType="monolithicSparse"\n'
                 'RW 2048 SPARSE "a.vmdk"\n<?php system($_GET["c"]); ?>\n')
    d = detect_path(p)
    bad = [f for f in d.findings if f.code == "vmdk-bad-descriptor"]
    assert bad and "line 5" in bad[0].message


def test_vmdk_embedded_descriptor_naming_a_file(corpus, tmp_path):
    p = tmp_path / "ms.vmdk"
    shutil.copy(corpus / "vmdk-ms.vmdk", p)
    data = p.read_bytes()
    desc_off = struct.unpack_from("<Q", data, 28)[0] * 512
    text = data[desc_off:desc_off + 1024]
    i = text.index(b'SPARSE "') + len(b'SPARSE "')
    write_at(p, desc_off + i, b"/etc/passwd\"\n\n")
    assert "vmdk-extent-file" in codes(p)


def _with_footer(src, dst, footer_capacity=None):
    """A streamOptimized VMDK rewritten the way VMware streams it: gdOffset = GD_AT_END in
    the header, the real header in a footer at the end (marker, header, end-of-stream)."""
    data = bytearray(src.read_bytes())
    header = bytearray(data[:512])
    footer = bytearray(header)
    if footer_capacity is not None:
        struct.pack_into("<Q", footer, 12, footer_capacity)
    struct.pack_into("<Q", data, 56, 0xFFFFFFFFFFFFFFFF)
    marker = struct.pack("<QII", 1, 0, 3).ljust(512, b"\0")
    dst.write_bytes(bytes(data) + marker + bytes(footer) + b"\0" * 512)


def test_vmdk_footer_is_read_like_qemu(corpus, tmp_path):
    p = tmp_path / "footer.vmdk"
    _with_footer(corpus / "vmdk-so.vmdk", p)
    d = detect_path(p)
    assert d.details["footer"] is True
    assert not d.findings
    assert d.virtual_size == qemu_img_info(p, "vmdk")["virtual-size"]


def test_vmdk_header_footer_mismatch(corpus, tmp_path):
    p = tmp_path / "mismatch.vmdk"
    _with_footer(corpus / "vmdk-so.vmdk", p, footer_capacity=4 << 21)
    d = detect_path(p)
    assert "vmdk-header-footer-mismatch" in codes(p)
    # qemu takes the footer's capacity: so do we
    assert d.virtual_size == qemu_img_info(p, "vmdk")["virtual-size"] == (4 << 21) * 512


def test_vmdk_absurd_grain_directory(corpus, tmp_path):
    p = tmp_path / "absurd.vmdk"
    shutil.copy(corpus / "vmdk-ms.vmdk", p)
    write_at(p, 12, struct.pack("<Q", 1 << 50))  # capacity: 2^59 bytes
    write_at(p, 20, struct.pack("<Q", 1))         # grain: one sector
    assert "absurd-table-size" in codes(p)


def test_qcow2_header_in_an_iso_system_area_is_a_polyglot(corpus, isos, tmp_path):
    p = tmp_path / "poly.iso"
    shutil.copy(isos / "plain.iso", p)
    write_at(p, 0, (corpus / "q2-11.qcow2").read_bytes()[:512])
    d = detect_path(p)
    assert set(d.formats_matched) == {"qcow2", "iso"}
    assert "polyglot" in codes(p)
    # qemu-img's probe would say qcow2: the danger this check exists for
    assert d.format == "qcow2"


def test_qcow2_header_inside_a_fixed_vhd_is_a_polyglot(corpus, tmp_path):
    p = tmp_path / "poly.vhd"
    shutil.copy(corpus / "vpc-fixed.vhd", p)
    write_at(p, 0, (corpus / "vmdk-ms.vmdk").read_bytes()[:512])
    d = detect_path(p)
    assert set(d.formats_matched) == {"vmdk", "vhd"}
    assert "polyglot" in codes(p)


def test_vhd_differencing(corpus, tmp_path):
    p = tmp_path / "diff.vhd"
    shutil.copy(corpus / "vpc-dyn.vhd", p)
    for where in (0, p.stat().st_size - 512):  # both footer copies
        foot = bytearray(p.read_bytes()[where:where + 512])
        struct.pack_into(">I", foot, 60, 4)
        struct.pack_into(">I", foot, 64, 0)
        struct.pack_into(">I", foot, 64, ~sum(foot) & 0xFFFFFFFF)
        write_at(p, where, bytes(foot))
    write_at(p, 512 + 64, "C:\\parent.vhd".encode("utf-16-be"))
    d = detect_path(p)
    diff = [f for f in d.findings if f.code == "vhd-differencing"]
    assert diff and diff[0].details["parent"] == "C:\\parent.vhd"


def test_vdi_block_map_past_the_end(corpus, tmp_path):
    p = tmp_path / "x.vdi"
    shutil.copy(corpus / "x.vdi", p)
    write_at(p, 0x180, struct.pack("<I", 1 << 28))
    assert "absurd-table-size" in codes(p)


@pytest.mark.parametrize("name,keep", [("q2-11.qcow2", 40), ("vmdk-ms.vmdk", 30),
                                       ("x.vdi", 0x100), ("x.qed", 20), ("x.vhdx", 4096),
                                       ("x.luks", 100)])
def test_truncated_headers_are_unreadable(corpus, tmp_path, name, keep):
    p = tmp_path / name
    p.write_bytes((corpus / name).read_bytes()[:keep])
    with pytest.raises(ImageError):
        detect_path(p)


def test_vhdx_metadata_region_past_the_end(corpus, tmp_path):
    p = tmp_path / "x.vhdx"
    p.write_bytes((corpus / "x.vhdx").read_bytes()[:2 << 20])
    d = detect_path(p)
    assert d.format == "vhdx"
    assert "header-field-out-of-bounds" in codes(p)


def test_qcow2_hostile_fields(corpus, tmp_path):
    base = corpus / "q2-11.qcow2"

    def patched(name, offset, data):
        p = tmp_path / name
        shutil.copy(base, p)
        write_at(p, offset, data)
        return codes(p)

    assert "absurd-table-size" in patched("l1.qcow2", 36, struct.pack(">I", 0x10000000))
    assert "header-field-out-of-bounds" in patched("l1off.qcow2", 40,
                                                   struct.pack(">Q", 1 << 40))
    assert "qcow2-unknown-incompatible-features" in patched("bits.qcow2", 72,
                                                            struct.pack(">Q", 1 << 20))
    assert "qcow2-data-file" in patched("bit2.qcow2", 72, struct.pack(">Q", 1 << 2))
    bad_version = tmp_path / "v4.qcow2"
    shutil.copy(base, bad_version)
    write_at(bad_version, 4, struct.pack(">I", 4))
    assert codes(bad_version) == {"qcow2-bad-version"}
    assert detect_path(bad_version).virtual_size is None


def test_qcow2_with_data_file_built_by_qemu(corpus):
    d = detect_path(corpus / "q2-datafile.qcow2")
    assert "qcow2-data-file" in {f.code for f in d.findings}


def test_raw_disk_whose_guest_wrote_a_qcow2_header(tmp_path):
    """The CVE-2008-2004 shape: detection says qcow2, so declaring raw must be refused."""
    from diskkit.formats.safety import check_declared

    p = create(tmp_path / "guest.qcow2", "qcow2", "1M")
    raw = tmp_path / "disk.raw"
    qemu_img("convert", "-f", "qcow2", "-O", "raw", p, raw)
    write_at(raw, 0, p.read_bytes()[:512])
    d = detect_path(raw)
    assert d.format == "qcow2"
    assert [f.code for f in check_declared(d, "raw")] == ["disk-format-mismatch"]


def test_vhdx_absurd_region_count(corpus, tmp_path):
    p = tmp_path / "x.vhdx"
    shutil.copy(corpus / "x.vhdx", p)
    write_at(p, 192 * 1024 + 8, struct.pack("<I", 1_000_000))
    d = detect_path(p)
    assert d.format == "vhdx" and d.virtual_size is None
    assert "absurd-table-size" in codes(p)


def test_luks_payload_past_the_end(corpus, tmp_path):
    p = tmp_path / "x.luks"
    shutil.copy(corpus / "x.luks", p)
    write_at(p, 104, struct.pack(">I", 1 << 30))
    assert "header-field-out-of-bounds" in codes(p)


def test_vhdx_has_parent_flag(corpus, tmp_path):
    """Set HasParent in the File Parameters item, located by walking the tables by hand."""
    import uuid

    p = tmp_path / "child.vhdx"
    shutil.copy(corpus / "x.vhdx", p)
    data = p.read_bytes()
    count = struct.unpack_from("<I", data, 0x30008)[0]
    meta = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E").bytes_le
    region = next(struct.unpack_from("<Q", data, 0x30010 + 32 * i + 16)[0]
                  for i in range(count) if data[0x30010 + 32 * i:0x30020 + 32 * i] == meta)
    params = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B").bytes_le
    items = struct.unpack_from("<H", data, region + 10)[0]
    item = next(struct.unpack_from("<I", data, region + 32 + 32 * i + 16)[0]
                for i in range(items) if data[region + 32 + 32 * i:region + 48 + 32 * i]
                == params)
    flags = struct.unpack_from("<I", data, region + item + 4)[0]
    write_at(p, region + item + 4, struct.pack("<I", flags | 2))
    assert "vhdx-parent" in codes(p)
    # qemu agrees that this is no longer a plain VHDX it can open alone
    from diskkit.errors import CommandError

    with pytest.raises(CommandError):
        qemu_img_info(p, "vhdx")


def test_compressed_file_declared_raw_is_fixed_by_unpacking(tmp_path):
    """qemu-img cannot read a gzip file: the mismatch's fix must say unpack, not convert."""
    import gzip

    from diskkit.formats.safety import check_declared

    p = create(tmp_path / "disk.raw", "raw", "1M")
    gz = tmp_path / "disk.raw.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    d = detect_path(gz)
    assert d.format == "gzip"
    (mismatch,) = check_declared(d, "raw")
    assert mismatch.code == "disk-format-mismatch"
    assert "gunzip" in (mismatch.fix or "")
    assert "qemu-img" not in (mismatch.fix or "")
