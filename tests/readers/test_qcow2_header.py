"""The qcow2 header parser against images qemu-img creates, compared with qemu-img info;
plus hand-broken headers and a property-based fuzz."""

from __future__ import annotations

import contextlib
import pathlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diskkit.errors import ImageError
from diskkit.formats.qcow2 import PREFIX_SIZE, Qcow2Header, parse_header
from tests.helpers import create, qemu_img, qemu_img_info

# name -> (size, qemu-img create -o options)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "v2": ("64M", ("compat=0.10",)),
    "v3": ("64M", ("compat=1.1",)),
    "extended-l2": ("1G", ("extended_l2=on",)),
    "zstd": ("64M", ("compression_type=zstd",)),
    "cluster-512": ("8M", ("cluster_size=512",)),
    "cluster-2M": ("1T", ("cluster_size=2M",)),
    "lazy-refcounts-refbits64": ("64M", ("lazy_refcounts=on", "refcount_bits=64")),
    "all-v3": ("3G", ("extended_l2=on,compression_type=zstd,cluster_size=128k",)),
}


def _parse(path: pathlib.Path) -> Qcow2Header:
    with open(path, "rb") as f:
        data = f.read(PREFIX_SIZE)
    return parse_header(data, path.stat().st_size)


def _compare_with_qemu(path: pathlib.Path, h: Qcow2Header) -> None:
    info = qemu_img_info(path, "qcow2")
    spec = info["format-specific"]["data"]
    assert h.size == info["virtual-size"]
    assert h.cluster_size == info["cluster-size"]
    assert {2: "0.10", 3: "1.1"}[h.version] == spec["compat"]
    assert h.compression == spec.get("compression-type", "zlib")
    assert h.extended_l2 == spec.get("extended-l2", False)
    assert bool(h.compatible_features & 1) == spec.get("lazy-refcounts", False)
    assert 1 << h.refcount_order == spec.get("refcount-bits", 16)
    assert h.data_file == spec.get("data-file")
    assert h.has_data_file == ("data-file" in spec)
    assert h.backing_file == info.get("backing-filename")
    assert h.backing_format == info.get("backing-filename-format")
    assert h.has_backing_file == ("backing-filename" in info)
    assert h.unknown_incompatible_features == 0


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_header_matches_qemu_img_info(tmp_path: pathlib.Path, variant: str) -> None:
    size, opts = VARIANTS[variant]
    path = create(tmp_path / f"{variant}.qcow2", "qcow2", size, *opts)
    _compare_with_qemu(path, _parse(path))


def test_backing_file_and_format(tmp_path: pathlib.Path) -> None:
    create(tmp_path / "base.qcow2", "qcow2", "64M")
    path = create(tmp_path / "overlay.qcow2", "qcow2", "128M",
                  "backing_file=base.qcow2,backing_fmt=qcow2")
    h = _parse(path)
    assert h.backing_file == "base.qcow2"
    assert h.backing_format == "qcow2"
    _compare_with_qemu(path, h)


def test_backing_file_v2_without_format(tmp_path: pathlib.Path) -> None:
    create(tmp_path / "base.raw", "raw", "1M")
    path = create(tmp_path / "overlay.qcow2", "qcow2", "1M",
                  "compat=0.10,backing_file=base.raw,backing_fmt=raw")
    h = _parse(path)
    assert h.version == 2 and h.backing_file == "base.raw" and h.backing_format == "raw"
    _compare_with_qemu(path, h)


def test_external_data_file(tmp_path: pathlib.Path) -> None:
    path = create(tmp_path / "df.qcow2", "qcow2", "64M", f"data_file={tmp_path / 'df.raw'}")
    h = _parse(path)
    assert h.has_data_file and h.data_file == str(tmp_path / "df.raw")
    _compare_with_qemu(path, h)


def test_bitmaps_extension(tmp_path: pathlib.Path) -> None:
    path = create(tmp_path / "b.qcow2", "qcow2", "1M")
    qemu_img("bitmap", "--add", "-f", "qcow2", path, "b0")
    h = _parse(path)
    assert 0x23852875 in [t for t, _o, _d in h.extensions]
    assert h.autoclear_features & 1  # bitmaps consistent
    _compare_with_qemu(path, h)


def test_feature_name_table(tmp_path: pathlib.Path) -> None:
    h = _parse(create(tmp_path / "f.qcow2", "qcow2", "1M"))
    assert h.feature_name(0, 4) == "extended L2 entries"
    assert h.feature_name(0, 2) == "external data file"


# --- hand-broken headers ------------------------------------------------------------------


def _v3_header(**changes: int) -> bytearray:
    """A minimal valid v3 header in a 64 KiB cluster, with fields overridden."""
    fields = {"version": 3, "bf_offset": 0, "bf_size": 0, "cluster_bits": 16, "size": 1 << 30,
              "crypt": 0, "l1_size": 2, "l1_offset": 0x30000, "rt_offset": 0x10000,
              "rt_clusters": 1, "nb_snap": 0, "snap_offset": 0, "incompat": 0, "compat": 0,
              "autoclear": 0, "refcount_order": 4, "header_length": 104}
    fields.update(changes)
    buf = bytearray(0x40000)
    struct.pack_into(">4sIQIIQIIQQIIQQQQII", buf, 0, b"QFI\xfb", *fields.values())
    return buf


@pytest.mark.parametrize(("change", "data_len"), [
    ({"version": 1}, None), ({"version": 4}, None), ({"cluster_bits": 8}, None),
    ({"cluster_bits": 22}, None), ({"header_length": 100}, None), ({"header_length": 108}, None),
    ({"header_length": 1 << 20}, None), ({}, 71), ({}, 100),
])
def test_garbled_headers_raise_image_error(change: dict[str, int], data_len: int | None) -> None:
    buf = _v3_header(**change)
    data = bytes(buf[:data_len] if data_len else buf)
    with pytest.raises(ImageError):
        parse_header(data, len(buf))


def test_bad_magic() -> None:
    buf = _v3_header()
    buf[0:4] = b"QFI\x00"
    with pytest.raises(ImageError, match="magic"):
        parse_header(bytes(buf), len(buf))


def test_extension_running_past_the_buffer() -> None:
    buf = _v3_header()
    struct.pack_into(">II", buf, 104, 0x12345678, 0xFFFF_0000)
    with pytest.raises(ImageError, match="extension"):
        parse_header(bytes(buf), len(buf))
    # an extension that would run past the 64 KiB given (the cluster is 2 MiB)
    buf = _v3_header(cluster_bits=21)
    struct.pack_into(">II", buf, 104, 0x12345678, 70_000)
    with pytest.raises(ImageError):
        parse_header(bytes(buf[:PREFIX_SIZE]), 1 << 30)


def test_unsafe_things_are_fields_not_errors() -> None:
    buf = _v3_header(incompat=(1 << 40) | 0b100, l1_offset=1 << 50, crypt=1,
                     bf_offset=1 << 40, bf_size=5000)
    h = parse_header(bytes(buf), len(buf))
    assert h.unknown_incompatible_features == 1 << 40
    assert h.has_data_file and h.data_file is None
    assert h.has_backing_file and h.backing_file is None
    assert h.l1_table_offset == 1 << 50 and h.crypt_method == 1


def test_backing_name_inside_the_buffer_is_read() -> None:
    buf = _v3_header(bf_offset=0x200, bf_size=11)
    buf[0x200:0x20B] = b"/etc/passwd"
    h = parse_header(bytes(buf), len(buf))
    assert h.backing_file == "/etc/passwd"


# --- fuzz ---------------------------------------------------------------------------------

_BASE = bytes(_v3_header()[:4096])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=12),
       st.integers(0, 4096))
def test_fuzz_mutated_headers(mutations: list[tuple[int, int]], cut: int) -> None:
    buf = bytearray(_BASE)
    for pos, value in mutations:
        buf[pos] = value
    data = bytes(buf[:cut])
    try:
        h = parse_header(data, len(data))
    except ImageError:
        return
    assert 9 <= h.cluster_bits <= 21
    for _t, off, raw in h.extensions:
        assert off + len(raw) <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=512))
def test_fuzz_random_bytes(tail: bytes) -> None:
    data = b"QFI\xfb" + tail
    with contextlib.suppress(ImageError):
        parse_header(data, len(data))
