"""tar and OVA detection across the archive formats real tools write (GNU tar's pax, gnu and
ustar formats, Python's tarfile), checked against tarfile's own member list; pax extended
headers and GNU long-name entries are metadata, not members."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diskkit.errors import DiskkitError
from diskkit.formats import tar as tar_mod
from diskkit.formats.base import HEAD_SIZE, Source
from diskkit.runner import run
from tests.formats.conftest import detect_path
from tests.helpers import create

LONG = "x" * 120  # over ustar's 100-byte name field and its 155-byte prefix split


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory):
    """An OVF descriptor, a streamOptimized VMDK (qemu-img) and a long-named copy."""
    d = tmp_path_factory.mktemp("ova")
    (d / "vm.ovf").write_text('<?xml version="1.0"?>\n<Envelope/>\n')
    create(d / "vm-disk1.vmdk", "vmdk", "16M", "subformat=streamOptimized")
    (d / "deep").mkdir()
    (d / "deep" / f"{LONG}.ovf").write_text("<Envelope/>\n")
    return d


def _tar(tree, out, fmt: str, *names: str):
    run(["tar", f"--format={fmt}", "-C", str(tree), "-cf", str(out), *names], timeout=60)
    return out


def _check(path, fmt: str) -> None:
    d = detect_path(path)
    assert d.format == fmt and d.formats_matched == (fmt,)
    listed = d.details["members"]
    with tarfile.open(path) as t:  # members are listed as far as the 64 KiB head reaches
        assert listed and listed == t.getnames()[:len(listed)]
    assert {f.code for f in d.findings} == {"archive-upload"}
    assert d.virtual_size is None


@pytest.mark.parametrize("fmt", ["pax", "gnu", "ustar"])
def test_gnu_tar_ova(tree, tmp_path, fmt):
    p = _tar(tree, tmp_path / f"{fmt}.ova", fmt, "vm.ovf", "vm-disk1.vmdk")
    _check(p, "ova")
    assert detect_path(p).details["disks"] == ["vm-disk1.vmdk"]
    plain = _tar(tree, tmp_path / f"{fmt}.tar", fmt, "vm-disk1.vmdk", "vm.ovf")
    _check(plain, "tar")


@pytest.mark.parametrize("fmt", ["pax", "gnu"])
def test_long_ovf_name(tree, tmp_path, fmt):
    """A name ustar cannot hold: pax puts it in a ``path`` record, GNU in an ``L`` entry."""
    p = _tar(tree, tmp_path / f"long-{fmt}.ova", fmt, f"deep/{LONG}.ovf", "vm-disk1.vmdk")
    with open(p, "rb") as f:
        first = f.read(512)
    assert first[156:157] == (b"x" if fmt == "pax" else b"L")  # metadata entry first
    _check(p, "ova")
    assert detect_path(p).details["members"][0] == f"deep/{LONG}.ovf"


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_python_tarfile_ova(tree, tmp_path, fmt):
    p = tmp_path / f"py{fmt}.ova"
    with tarfile.open(p, "w", format=fmt) as t:
        t.add(tree / "vm.ovf", arcname="vm.ovf")
        t.add(tree / "vm-disk1.vmdk", arcname="vm-disk1.vmdk")
    if fmt == tarfile.PAX_FORMAT:  # tarfile keeps the float mtime in a pax header
        assert p.read_bytes()[156:157] == b"x"
    _check(p, "ova")
    plain = tmp_path / f"py{fmt}.tar"
    with tarfile.open(plain, "w", format=fmt) as t:
        t.add(tree / "vm-disk1.vmdk", arcname="disk.vmdk")
    _check(plain, "tar")


def test_pax_path_and_global_header(tree, tmp_path):
    """A global header (``g``) is skipped; a per-file ``path`` record renames the member."""
    p = tmp_path / "global.ova"
    with tarfile.open(p, "w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "made by diskkit tests"}) as t:
        info = t.gettarinfo(tree / "vm.ovf", arcname="vm.ovf")
        info.pax_headers = {"path": "renamed/vm.ovf"}
        with open(tree / "vm.ovf", "rb") as f:
            t.addfile(info, f)
    assert p.read_bytes()[156:157] == b"g"
    _check(p, "ova")
    assert detect_path(p).details["members"] == ["renamed/vm.ovf"]


def test_pax_data_past_the_head_stays_in_bounds(tree, tmp_path):
    """A pax header whose data runs past the 64 KiB head: listing stops, nothing more is
    read, and the file is still called a tar (the first header is a valid ustar one)."""
    p = tmp_path / "huge-pax.ova"
    with tarfile.open(p, "w", format=tarfile.PAX_FORMAT) as t:
        info = t.gettarinfo(tree / "vm.ovf", arcname="vm.ovf")
        info.pax_headers = {"comment": "y" * (HEAD_SIZE + 1000)}
        with open(tree / "vm.ovf", "rb") as f:
            t.addfile(info, f)
    d = detect_path(p)
    assert d.format == "tar" and d.details["members"] == []
    assert d.bytes_read <= HEAD_SIZE + 512


def test_pax_records_parser():
    assert tar_mod._pax_records(b"16 path=a/b.ovf\n11 size=42\n") == {"path": "a/b.ovf",
                                                                       "size": "42"}
    # a length that runs past the data, or is not a number, ends the parse
    assert tar_mod._pax_records(b"99 path=x\n") == {}
    assert tar_mod._pax_records(b"11 size=42\nzz path=x\n") == {"size": "42"}
    assert tar_mod._size("9" * 30) is None and tar_mod._size("\u00b2") is None


def _pax_ova_head() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in (("a" * 150 + ".ovf", b"<Envelope/>\n"), ("d.vmdk", b"\0" * 3000)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1.5
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3000), st.binary(min_size=1, max_size=6)),
                max_size=8))
def test_fuzz_mutated_pax_archive(mutations):
    data = bytearray(_pax_ova_head())
    for pos, chunk in mutations:
        data[pos:pos + len(chunk)] = chunk
    try:
        m = tar_mod.probe(Source.from_bytes(bytes(data)))
    except DiskkitError:
        return
    if m is not None:
        assert m.format in ("tar", "ova")
        assert len(m.details["members"]) <= tar_mod.MAX_MEMBERS
