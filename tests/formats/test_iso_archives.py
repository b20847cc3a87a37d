"""ISOs (xorriso, pycdlib UDF), compressed files and archives, each checked against an
independent reader (pycdlib, tarfile, zipfile, gzip)."""

from __future__ import annotations

import tarfile
import zipfile

import pycdlib

from diskkit.runner import run
from tests.formats.conftest import detect_path
from tests.helpers import qemu_img_info


def _pvd_size(path) -> int:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        return iso.pvd.space_size * iso.pvd.log_block_size
    finally:
        iso.close()


def test_plain_iso(isos):
    p = isos / "plain.iso"
    d = detect_path(p)
    assert d.format == "iso" and d.formats_matched == ("iso",)
    assert d.virtual_size == p.stat().st_size == qemu_img_info(p, "raw")["virtual-size"]
    assert d.details["volume_size"] == _pvd_size(p)
    assert d.details["volume_id"] == "PLAIN"
    assert d.partition_table is None
    assert not d.findings


def test_hybrid_iso_mbr_is_expected_not_a_polyglot(isos):
    p = isos / "hybrid.iso"
    d = detect_path(p)
    assert d.format == "iso" and d.formats_matched == ("iso",)
    assert d.details["el_torito"] is True
    assert d.partition_table and d.partition_table["type"] == "mbr"
    blkid = run(["blkid", "-p", "-o", "export", str(p)], timeout=30, check=False).stdout
    assert "PTTYPE=dos" in blkid
    assert not d.findings


def test_udf_iso(isos):
    d = detect_path(isos / "udf.iso")
    assert d.format == "iso"
    assert d.details["udf"] is True


def _compress(tmp_path, tool, args, suffix):
    src = tmp_path / "disk.raw"
    src.write_bytes(bytes(range(256)) * 4096)
    run([tool, *args, str(src)], timeout=60)
    return tmp_path / f"disk.raw{suffix}", src


def test_gzip(tmp_path):
    p, src = _compress(tmp_path, "gzip", ["-k"], ".gz")
    d = detect_path(p)
    assert d.format == "gzip" and d.virtual_size is None
    assert d.details["size_mod_2_32"] == src.stat().st_size
    assert {f.code for f in d.findings} == {"compressed-upload"}


def test_xz_bzip2(tmp_path):
    for tool, suffix, fmt in (("xz", ".xz", "xz"), ("bzip2", ".bz2", "bzip2")):
        p, _ = _compress(tmp_path, tool, ["-k", "-f"], suffix)
        d = detect_path(p)
        assert d.format == fmt
        assert {f.code for f in d.findings} == {"compressed-upload"}


def test_zstd_content_size(tmp_path):
    p, src = _compress(tmp_path, "zstd", ["-q", "-f"], ".zst")
    d = detect_path(p)
    assert d.format == "zstd"
    assert d.details["content_size"] == src.stat().st_size


def test_zip(tmp_path):
    src = tmp_path / "disk.raw"
    src.write_bytes(b"\1" * 10000)
    p = tmp_path / "disk.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.write(src, "disk.raw")
    d = detect_path(p)
    assert d.format == "zip"
    assert d.details["first_member"] == zipfile.ZipFile(p).namelist()[0]
    assert {f.code for f in d.findings} == {"archive-upload"}


def test_tar_and_ova(corpus, tmp_path):
    ovf = tmp_path / "vm.ovf"
    ovf.write_text("<Envelope/>\n")
    ova = tmp_path / "vm.ova"
    run(["tar", "-C", str(tmp_path), "-cf", str(ova), "vm.ovf"], timeout=60)
    run(["tar", "-C", str(corpus), "-rf", str(ova), "vmdk-so.vmdk"], timeout=60)
    d = detect_path(ova)
    assert d.format == "ova"
    with tarfile.open(ova) as t:
        assert d.details["members"] == t.getnames()
    assert d.details["disks"] == ["vmdk-so.vmdk"]
    assert {f.code for f in d.findings} == {"archive-upload"}
    tar = tmp_path / "plain.tar"
    run(["tar", "-C", str(corpus), "-cf", str(tar), "x.vdi"], timeout=60)
    assert detect_path(tar).format == "tar"


def test_raw_with_gpt_and_mbr(tmp_path):
    gpt = tmp_path / "gpt.raw"
    gpt.write_bytes(b"\0" * (8 << 20))
    run(["sfdisk", "-q", str(gpt)], input="label: gpt\n,4M\n", timeout=30)
    d = detect_path(gpt)
    assert d.format == "raw" and d.virtual_size == 8 << 20
    assert d.partition_table == {"type": "gpt", "sector_size": 512, "header_crc_ok": True}
    mbr = tmp_path / "mbr.raw"
    mbr.write_bytes(b"\0" * (8 << 20))
    run(["sfdisk", "-q", str(mbr)], input="label: dos\n,4M,83\n", timeout=30)
    d = detect_path(mbr)
    assert d.format == "raw"
    assert d.partition_table and d.partition_table["type"] == "mbr"


def test_luks2_payload_matches_cryptsetup(tmp_path):
    img = tmp_path / "l2.img"
    img.write_bytes(b"")
    with open(img, "r+b") as f:
        f.truncate(40 << 20)
    key = tmp_path / "key"
    key.write_bytes(b"pw")
    run(["cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
         "--pbkdf-force-iterations", "1000", "--key-file", str(key), str(img)], timeout=120)
    dump = run(["cryptsetup", "luksDump", str(img)], timeout=30).stdout
    d = detect_path(img)
    assert d.format == "luks" and d.details["version"] == 2
    offset = d.details["payload_offset"]
    assert f"offset: {offset} [bytes]" in dump
    assert d.virtual_size == (40 << 20) - offset
    assert {f.code for f in d.findings} == {"encrypted", "luks-image"}
