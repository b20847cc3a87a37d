"""Every format qemu reads: detection and virtual size against ``qemu-img info -f``."""

from __future__ import annotations

import pytest

from tests.formats.conftest import detect_path
from tests.helpers import qemu_img_info

#: file -> (our format, qemu's format, the finding codes expected)
CASES = {
    "q2-010.qcow2": ("qcow2", "qcow2", set()),
    "q2-11.qcow2": ("qcow2", "qcow2", set()),
    "q2-extl2.qcow2": ("qcow2", "qcow2", {"qcow2-extended-l2"}),  # Glance refuses it
    "q2-zstd.qcow2": ("qcow2", "qcow2", set()),
    "q2-zstd-data.qcow2": ("qcow2", "qcow2", set()),
    "q2-backing.qcow2": ("qcow2", "qcow2", {"qcow2-backing-file"}),
    "q2-datafile.qcow2": ("qcow2", "qcow2", {"qcow2-data-file"}),
    "q2-luks.qcow2": ("qcow2", "qcow2", {"encrypted"}),
    "vmdk-ms.vmdk": ("vmdk", "vmdk", set()),
    "vmdk-so.vmdk": ("vmdk", "vmdk", set()),
    "vmdk-mf.vmdk": ("vmdk", "vmdk", {"vmdk-create-type", "vmdk-extent-file"}),
    "vmdk-2gs.vmdk": ("vmdk", "vmdk", {"vmdk-create-type", "vmdk-extent-file"}),
    "vmdk-2gf.vmdk": ("vmdk", "vmdk", {"vmdk-create-type", "vmdk-extent-file"}),
    "vpc-fixed.vhd": ("vhd", "vpc", set()),
    "vpc-fixed-exact.vhd": ("vhd", "vpc", set()),
    "vpc-dyn.vhd": ("vhd", "vpc", set()),
    "vpc-dyn-exact.vhd": ("vhd", "vpc", set()),
    "vpc-fixed-data.vhd": ("vhd", "vpc", set()),
    "x.vhdx": ("vhdx", "vhdx", set()),
    "x-data.vhdx": ("vhdx", "vhdx", set()),
    "x.vdi": ("vdi", "vdi", set()),
    "x-static.vdi": ("vdi", "vdi", set()),
    "x.qed": ("qed", "qed", {"qed-unsupported"}),
    "x.luks": ("luks", "luks", {"encrypted", "luks-image"}),
    "data.raw": ("raw", "raw", set()),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_format_and_virtual_size_match_qemu(corpus, name):
    fmt, qfmt, codes = CASES[name]
    path = corpus / name
    d = detect_path(path)
    info = qemu_img_info(path, qfmt)
    assert d.format == fmt
    assert d.formats_matched == (() if fmt == "raw" else (fmt,))
    assert d.virtual_size == info["virtual-size"]
    assert {f.code for f in d.findings} == codes


def test_qcow2_details_match_qemu(corpus):
    for name in ("q2-010.qcow2", "q2-11.qcow2", "q2-extl2.qcow2", "q2-zstd.qcow2"):
        d = detect_path(corpus / name)
        info = qemu_img_info(corpus / name, "qcow2")
        spec = info["format-specific"]["data"]
        assert d.details["cluster_size"] == info["cluster-size"]
        assert d.details["version"] == (2 if spec["compat"] == "0.10" else 3)
        assert d.details["extended_l2"] == spec.get("extended-l2", False)


def test_qcow2_backing_and_data_file_named(corpus):
    d = detect_path(corpus / "q2-backing.qcow2")
    info = qemu_img_info(corpus / "q2-backing.qcow2", "qcow2")
    assert d.details["backing_file"] == info["backing-filename"]
    d = detect_path(corpus / "q2-datafile.qcow2")
    info = qemu_img_info(corpus / "q2-datafile.qcow2", "qcow2")
    assert d.details["data_file"] == info["format-specific"]["data"]["data-file"]


def test_vhd_fixed_found_only_in_the_tail(corpus):
    d = detect_path(corpus / "vpc-fixed.vhd")
    assert d.details["subformat"] == "fixed"
    assert d.matches[0].offset == (corpus / "vpc-fixed.vhd").stat().st_size - 512
    # qemu writes "qemu" (CHS size) by default and "qem2" (exact size) with force_size
    assert d.details["creator_app"] == "qemu"
    assert detect_path(corpus / "vpc-fixed-exact.vhd").details["creator_app"] == "qem2"


def test_vmdk_extents_named(corpus):
    d = detect_path(corpus / "vmdk-mf.vmdk")
    files = {f.details.get("extent_file") for f in d.findings if f.code == "vmdk-extent-file"}
    assert files == {"vmdk-mf-flat.vmdk"}
    assert d.details["create_type"] == "monolithicFlat"
    info = qemu_img_info(corpus / "vmdk-2gs.vmdk", "vmdk")
    assert len(d.details["extents"]) == 1
    d = detect_path(corpus / "vmdk-2gs.vmdk")
    assert len(d.details["extents"]) == len(info["format-specific"]["data"]["extents"])


def test_vmdk_stream_optimized_details(corpus):
    d = detect_path(corpus / "vmdk-so.vmdk")
    info = qemu_img_info(corpus / "vmdk-so.vmdk", "vmdk")
    assert d.details["create_type"] == info["format-specific"]["data"]["create-type"]
    assert d.details["compressed"] is True


def test_luks_details_match_cryptsetup(corpus):
    from diskkit.runner import run

    d = detect_path(corpus / "x.luks")
    dump = run(["cryptsetup", "luksDump", str(corpus / "x.luks")], timeout=30).stdout
    assert d.details["version"] == 1
    assert f"UUID:          \t{d.details['uuid']}" in dump
    assert f"Payload offset:\t{d.details['payload_offset'] // 512}" in dump


def test_qcow2_encryption_reported(corpus):
    d = detect_path(corpus / "q2-luks.qcow2")
    assert qemu_img_info(corpus / "q2-luks.qcow2", "qcow2")["encrypted"] is True
    enc = next(f for f in d.findings if f.code == "encrypted")
    assert enc.details["crypt_method"] == 2 and not enc.blocking
