"""open_disk: the right reader per format, and refusal of unsafe images."""

from __future__ import annotations

import pytest

from diskkit.disk import open_disk
from diskkit.errors import ImageError, UserError
from diskkit.pipeline import inspect_target
from diskkit.runner import run
from tests.helpers import qemu_img


def test_raw_and_iso_are_the_container(corpus, isos):
    with open_disk(str(corpus / "data.raw")) as r:
        assert r.size == (corpus / "data.raw").stat().st_size
    with open_disk(str(isos / "plain.iso")) as r:
        assert r.read(32769, 5) == b"CD001"


def test_fixed_vhd_reads_the_guest_disk(corpus, tmp_path):
    out = tmp_path / "back.raw"
    qemu_img("convert", "-f", "vpc", "-O", "raw", corpus / "vpc-fixed-data.vhd", out)
    with open_disk(str(corpus / "vpc-fixed-data.vhd")) as r:
        assert r.size == out.stat().st_size
        assert r.read(0, r.size) == out.read_bytes()


def test_unsafe_images_are_refused(corpus):
    with pytest.raises(ImageError) as exc:
        open_disk(str(corpus / "vmdk-mf.vmdk"))
    assert exc.value.code == "unsafe-image"
    assert "vmdk-extent-file" in exc.value.message
    with pytest.raises(ImageError) as exc:
        open_disk(str(corpus / "x.qed"))
    assert "qed-unsupported" in exc.value.message


def test_declared_format_that_does_not_match_is_refused(corpus):
    with pytest.raises(ImageError) as exc:
        open_disk(str(corpus / "vpc-fixed.vhd"), "raw")
    assert "disk-format-mismatch" in exc.value.message
    with open_disk(str(corpus / "vpc-fixed.vhd"), "raw", allow_unsafe=True) as r:
        assert r.size == (corpus / "vpc-fixed.vhd").stat().st_size


def test_compressed_says_unpack_first(tmp_path):
    p = tmp_path / "d.raw"
    p.write_bytes(b"x" * 4096)
    run(["gzip", "-k", str(p)], timeout=30)
    with pytest.raises(ImageError) as exc:
        open_disk(str(tmp_path / "d.raw.gz"), allow_unsafe=True)
    assert exc.value.code == "not-a-disk"


def test_luks_needs_the_key(corpus):
    with pytest.raises(UserError) as exc:  # luks-image blocks uploads, not opening
        open_disk(str(corpus / "x.luks"))
    assert exc.value.code == "encrypted"


def test_inspect_target_report(corpus):
    rep = inspect_target(str(corpus / "vmdk-2gf.vmdk"), declared_format="vmdk")
    d = rep.to_dict()
    assert d["format"] == "vmdk" and d["safe"] is False
    assert {"vmdk-create-type", "vmdk-extent-file"} <= {f["code"] for f in d["findings"]}


def _same_as_qemu(path, fmt, tmp_path, **kw):
    out = tmp_path / "qemu.raw"
    qemu_img("convert", "-f", fmt, "-O", "raw", path, out)
    with open_disk(str(path), **kw) as r:
        assert r.size == out.stat().st_size
        assert r.read(0, r.size) == out.read_bytes()


def test_qcow2_through_the_pure_reader(corpus, tmp_path):
    from diskkit.readers.qcow2 import Qcow2Reader

    with open_disk(str(corpus / "q2-zstd-data.qcow2")) as r:
        assert isinstance(r, Qcow2Reader)
    _same_as_qemu(corpus / "q2-zstd-data.qcow2", "qcow2", tmp_path)


def test_qcow2_backing_chain_only_when_allowed(corpus, tmp_path):
    with pytest.raises(ImageError) as exc:
        open_disk(str(corpus / "q2-backing.qcow2"))
    assert "qcow2-backing-file" in exc.value.message
    _same_as_qemu(corpus / "q2-backing.qcow2", "qcow2", tmp_path, allow_backing=True)


@pytest.mark.parametrize("name,fmt,cls", [("vmdk-so.vmdk", "vmdk", "VmdkReader"),
                                          ("x-data.vhdx", "vhdx", "VhdxReader")])
def test_vmdk_and_vhdx_read_in_process(corpus, tmp_path, name, fmt, cls):
    """The registry's VMDK and VHDX entries open with diskkit's own readers (no qemu-nbd
    server), and read what qemu reads."""
    with open_disk(str(corpus / name)) as r:
        assert type(r).__name__ == cls
    _same_as_qemu(corpus / name, fmt, tmp_path)


@pytest.mark.parametrize("name,fmt", [("x.vdi", "vdi")])
def test_other_formats_through_qemu_nbd(corpus, tmp_path, name, fmt):
    from diskkit.readers.nbd import QemuNbdReader

    with open_disk(str(corpus / name)) as r:
        assert isinstance(r, QemuNbdReader)
        assert r.format == fmt  # always an explicit -f, never a probe
    _same_as_qemu(corpus / name, fmt, tmp_path)
