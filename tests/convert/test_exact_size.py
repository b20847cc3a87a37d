"""VHD and VHDX outputs keep the exact virtual size, and verification fails whenever the
guest-visible size differs (qemu-img compare alone only warns when the tail reads as zeros).
Sizes are read with plain qemu-img info, never with diskkit."""

from __future__ import annotations

import os
import pathlib

import pytest

from diskkit.convert import Request, convert
from diskkit.convert.qemuimg import compare
from diskkit.errors import ImageError
from tests.helpers import qemu_img, qemu_img_info

#: Not a multiple of any CHS geometry: qemu's vpc driver rounds 64 MiB up to 67125248 bytes.
SIZE = 64 << 20


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("exact") / "src.raw"
    with open(path, "wb") as f:
        f.truncate(SIZE)
        f.seek(SIZE - 4096)
        f.write(os.urandom(4096))  # the very end holds data: a shorter disk loses it
        f.seek(1 << 20)
        f.write(os.urandom(1 << 20))
    return path


@pytest.mark.parametrize(("fmt", "driver"), [("vhd", "vpc"), ("vhdx", "vhdx")])
def test_round_trip_keeps_exact_size(source: pathlib.Path, tmp_path: pathlib.Path, fmt: str,
                                     driver: str) -> None:
    mid, back = tmp_path / f"mid.{fmt}", tmp_path / "back.raw"
    res = convert(Request(str(source), str(mid), fmt), quiet=True)
    assert res.verified is True
    assert qemu_img_info(mid, driver)["virtual-size"] == SIZE
    assert convert(Request(str(mid), str(back), "raw"), quiet=True).verified is True
    assert back.stat().st_size == SIZE
    assert back.read_bytes() == source.read_bytes()


def test_plain_qemu_img_vhd_changes_the_size(source: pathlib.Path, tmp_path: pathlib.Path
                                             ) -> None:
    """The fact the force_size default rests on (qemu 7.2): without it the size changes,
    and qemu-img compare still says the images are identical (exit 0)."""
    out = tmp_path / "plain.vhd"
    qemu_img("convert", "-f", "raw", "-O", "vpc", source, out)
    assert qemu_img_info(out, "vpc")["virtual-size"] > SIZE
    assert "Images are identical" in qemu_img("compare", "-f", "raw", "-F", "vpc", source, out)
    same, message = compare(str(source), "raw", str(out), "vpc", timeout=60)
    assert not same and "size" in message


def test_verification_fails_when_the_size_differs(source: pathlib.Path,
                                                  tmp_path: pathlib.Path) -> None:
    """Asked explicitly for the CHS-rounded size, the output differs: refused, removed."""
    out = tmp_path / "rounded.vhd"
    with pytest.raises(ImageError) as err:
        convert(Request(str(source), str(out), "vhd", options=("force_size=off",)), quiet=True)
    assert err.value.code == "verify-failed" and "size" in err.value.message
    assert not out.exists()
    assert not list(tmp_path.glob(".*diskkit-partial*"))


def test_verification_fails_on_different_content(source: pathlib.Path,
                                                 tmp_path: pathlib.Path) -> None:
    other = tmp_path / "other.raw"
    data = bytearray(source.read_bytes())
    data[SIZE - 1] ^= 0xFF
    other.write_bytes(bytes(data))
    same, _message = compare(str(source), "raw", str(other), "raw", timeout=60)
    assert not same
    # strict mode: zeros written as data against unallocated clusters is a difference
    sparse, dense = tmp_path / "sparse.qcow2", tmp_path / "dense.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", source, sparse)
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-S", "0", source, dense)
    assert compare(str(sparse), "qcow2", str(dense), "qcow2", timeout=60)[0]
    assert not compare(str(sparse), "qcow2", str(dense), "qcow2", timeout=60, strict=True)[0]
