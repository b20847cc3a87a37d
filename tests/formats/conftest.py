"""Images for the format tests, built once per session with real tools (qemu-img, xorriso,
gzip...), and a reader that counts what detection reads."""

from __future__ import annotations

import pathlib
import shutil
import time

import pytest

from diskkit.errors import CommandError
from diskkit.formats.detect import Detection, detect
from diskkit.readers.base import Reader
from diskkit.readers.raw import FileReader
from diskkit.runner import run
from tests.helpers import create, qemu_img


class CountingReader(Reader):
    """Wraps a reader and records every read, to prove detection stays in its bounds."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.size = inner.size
        self.name = inner.name
        self.reads: list[tuple[int, int]] = []

    def _read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        assert offset + length <= self.size
        return self.inner.read(offset, length)

    @property
    def total(self) -> int:
        """Bytes read in all."""
        return sum(n for _, n in self.reads)


def detect_path(path: pathlib.Path | str) -> Detection:
    """Detect a file through a counting reader; detection reads at most head+tail+budget."""
    from diskkit.formats.base import EXTRA_BUDGET, HEAD_SIZE, TAIL_SIZE

    with FileReader(str(path)) as r:
        counting = CountingReader(r)
        d = detect(counting)
    assert counting.total <= HEAD_SIZE + TAIL_SIZE + EXTRA_BUDGET
    assert d.bytes_read == counting.total
    return d


def _raw_with_data(path: pathlib.Path, size: int = 8 << 20) -> pathlib.Path:
    """A raw file with some non-zero data (so conversions write real clusters)."""
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(0, size, 1 << 20):
            f.seek(i)
            f.write(bytes(range(256)) * 16)
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A folder of real images, one per format and option (see the names)."""
    d = tmp_path_factory.mktemp("corpus")
    src = _raw_with_data(d / "data.raw")
    create(d / "q2-010.qcow2", "qcow2", "1G", "compat=0.10")
    create(d / "q2-11.qcow2", "qcow2", "1073741825", "compat=1.1")
    create(d / "q2-extl2.qcow2", "qcow2", "2G", "extended_l2=on,cluster_size=128k")
    create(d / "q2-zstd.qcow2", "qcow2", "300M", "compression_type=zstd")
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", "-o", "compression_type=zstd",
             src, d / "q2-zstd-data.qcow2")
    create(d / "q2-backing.qcow2", "qcow2", "8M", f"backing_file={src},backing_fmt=raw")
    create(d / "q2-datafile.qcow2", "qcow2", "64M", f"data_file={d / 'external.raw'}")
    _luks("create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=pw", "-o",
          "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10",
          d / "q2-luks.qcow2", "16M")
    create(d / "vmdk-ms.vmdk", "vmdk", "100M", "subformat=monolithicSparse")
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", src,
             d / "vmdk-so.vmdk")
    create(d / "vmdk-mf.vmdk", "vmdk", "10M", "subformat=monolithicFlat")
    create(d / "vmdk-2gs.vmdk", "vmdk", "5G", "subformat=twoGbMaxExtentSparse")
    create(d / "vmdk-2gf.vmdk", "vmdk", "3G", "subformat=twoGbMaxExtentFlat")
    create(d / "vpc-fixed.vhd", "vpc", "64M", "subformat=fixed")
    create(d / "vpc-fixed-exact.vhd", "vpc", "100M", "subformat=fixed,force_size=on")
    create(d / "vpc-dyn.vhd", "vpc", "1000M", "subformat=dynamic")
    create(d / "vpc-dyn-exact.vhd", "vpc", "1000M", "subformat=dynamic,force_size=on")
    qemu_img("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed", src,
             d / "vpc-fixed-data.vhd")
    create(d / "x.vhdx", "vhdx", "3G")
    qemu_img("convert", "-f", "raw", "-O", "vhdx", src, d / "x-data.vhdx")
    create(d / "x.vdi", "vdi", "77M")
    create(d / "x-static.vdi", "vdi", "5M", "static=on")
    create(d / "x.qed", "qed", "1G")
    _luks("create", "-q", "-f", "luks", "--object", "secret,id=s0,data=pw",
          "-o", "key-secret=s0,iter-time=10", d / "x.luks", "32M")
    return d


def _luks(*args: str | pathlib.Path) -> None:
    """qemu-img create of a LUKS image: qemu times its PBKDF first and gives up ("Unable to
    get accurate CPU usage") when the machine is busy, so try a few times."""
    for attempt in range(4):
        try:
            qemu_img(*args)
            return
        except CommandError:
            if attempt == 3:
                raise
            time.sleep(1)


@pytest.fixture(scope="session")
def isos(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """ISOs from xorriso (plain and isohybrid), and a UDF one from pycdlib."""
    d = tmp_path_factory.mktemp("isos")
    tree = d / "tree"
    (tree / "boot").mkdir(parents=True)
    (tree / "readme.txt").write_text("diskkit\n")
    shutil.copy("/usr/lib/ISOLINUX/isolinux.bin", tree / "boot/isolinux.bin")
    run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "PLAIN", "-o", d / "plain.iso", tree],
        timeout=60)
    run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "HYBRID", "-o", d / "hybrid.iso",
         "-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin", "-b", "boot/isolinux.bin",
         "-c", "boot/boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
         tree], timeout=60)
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(udf="2.60", vol_ident="UDFVOL")
    data = b"hello udf\n"
    import io

    iso.add_fp(io.BytesIO(data), len(data), "/HELLO.;1", udf_path="/hello")
    iso.write(str(d / "udf.iso"))
    iso.close()
    return d
