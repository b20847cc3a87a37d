"""NBD readers: a private qemu-nbd for every other format qemu reads, and nbd:// URIs served by
qemu-nbd and nbdkit in the test. Bytes are compared with ``qemu-img convert -O raw``."""

from __future__ import annotations

import os
import pathlib
import socket

import pytest

from diskkit.disk import open_container
from diskkit.errors import ImageError, UserError
from diskkit.readers.base import Extent, Reader
from diskkit.readers.nbd import NbdUriReader, QemuNbdReader
from diskkit.runner import spawn, wait_for
from diskkit.target import parse_target
from tests.helpers import create, qemu_img
from tests.readers.images import MiB, merge, qemu_io, qemu_map, raw_of, sweep

WRITES = ("write -P 0xab 1M 64k", "write -P 0x11 5000k 3k", "write -P 0x07 15M 4k")

# name -> (qemu format, create options)
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "vmdk-monolithicSparse": ("vmdk", ("subformat=monolithicSparse",)),
    "vpc-dynamic": ("vpc", ("subformat=dynamic",)),
    "vpc-fixed": ("vpc", ("subformat=fixed",)),
    "vhdx": ("vhdx", ()),
    "vdi": ("vdi", ()),
    "qed": ("qed", ()),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[pathlib.Path, str]]:
    tmp = tmp_path_factory.mktemp("nbd")
    out: dict[str, tuple[pathlib.Path, str]] = {}
    for name, (fmt, opts) in FORMATS.items():
        path = create(tmp / f"{name}.img", fmt, "16M", *opts)
        qemu_io(path, fmt, *WRITES)
        out[name] = (path, fmt)
    # streamOptimized cannot be written in place: convert into it
    stream = tmp / "vmdk-streamOptimized.img"
    qemu_img("convert", "-f", "vmdk", "-O", "vmdk", "-o", "subformat=streamOptimized",
             out["vmdk-monolithicSparse"][0], stream)
    out["vmdk-streamOptimized"] = (stream, "vmdk")
    return out


def _check_extents(reader: Reader, ref: bytes, path: pathlib.Path | None = None,
                   fmt: str = "") -> None:
    """What the server calls "reads as zeros" does, every extent is accounted for, and
    (given the image) the zero ranges are those ``qemu-img map`` gives."""
    pos = 0
    for ext in reader.extents():
        assert ext.offset == pos and ext.length > 0
        if not ext.data:
            assert ref[ext.offset : ext.end].count(0) == ext.length
        pos = ext.end
    assert pos == reader.size
    if path is not None:
        qmap = [(e["start"], e["length"], not e["zero"]) for e in qemu_map(path, fmt)]
        assert merge([(e.offset, e.length, e.data) for e in reader.extents()]) == merge(qmap)


@pytest.mark.parametrize("name", [*FORMATS, "vmdk-streamOptimized"])
def test_qemu_nbd_reader_bytes_equal_qemu(images: dict[str, tuple[pathlib.Path, str]],
                                          tmp_path: pathlib.Path, name: str) -> None:
    path, fmt = images[name]
    ref = raw_of(path, fmt, tmp_path / "ref.raw")
    reader = QemuNbdReader(str(path), fmt)
    server = reader._server
    try:
        assert reader.size == len(ref)
        assert reader.read(0, reader.size) == ref
        sweep(reader, ref, count=20)
        _check_extents(reader, ref, path, fmt)
    finally:
        reader.close()
    # nothing left behind: the server is reaped and its socket directory is gone
    assert server.proc.poll() is not None
    assert not os.path.exists(server.tmpdir)


def test_backing_file_not_opened(tmp_path: pathlib.Path) -> None:
    base = create(tmp_path / "base.qcow2", "qcow2", "4M")
    qemu_io(base, "qcow2", "write -P 0x44 0 1M")
    overlay = create(tmp_path / "overlay.qed", "qed", "4M", f"backing_file={base}",
                     "backing_fmt=qcow2")
    qemu_io(overlay, "qed", "write -P 0x55 2M 4k")
    with QemuNbdReader(str(overlay), "qed") as r:
        assert r.read(0, 16) == bytes(16)  # the base's data is not seen
        assert r.read(2 * MiB, 4) == b"\x55" * 4
    with QemuNbdReader(str(overlay), "qed", allow_backing=True) as r:
        assert r.read(0, 16) == b"\x44" * 16


def test_vmdk_descriptor_naming_files_is_refused(tmp_path: pathlib.Path) -> None:
    path = create(tmp_path / "flat.vmdk", "vmdk", "4M", "subformat=monolithicFlat")
    with pytest.raises(ImageError) as err:
        QemuNbdReader(str(path), "vmdk")
    assert err.value.code == "vmdk-extent-file"
    with QemuNbdReader(str(path), "vmdk", allow_backing=True) as r:
        assert r.size == 4 * MiB


def test_qcow2_data_file_is_refused(tmp_path: pathlib.Path) -> None:
    path = create(tmp_path / "df.qcow2", "qcow2", "4M", f"data_file={tmp_path / 'df.raw'}")
    with pytest.raises(ImageError):
        QemuNbdReader(str(path), "qcow2")


def test_unreadable_image_leaves_nothing_behind(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "garbage.vdi"
    path.write_bytes(b"\x7fVDI garbage" * 100)
    before = set(os.listdir(tempfile_dir()))
    with pytest.raises(ImageError) as err:
        QemuNbdReader(str(path), "vdi")
    assert err.value.code == "qemu-nbd-refused"
    assert {d for d in os.listdir(tempfile_dir()) if d.startswith("diskkit-nbd-")} <= before


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


def test_missing_file_is_the_users_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(UserError):
        QemuNbdReader(str(tmp_path / "nope.vmdk"), "vmdk")


# --- nbd:// URIs ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nbd_unix_uri_served_by_qemu_nbd(images: dict[str, tuple[pathlib.Path, str]],
                                         tmp_path: pathlib.Path) -> None:
    path, fmt = images["vhdx"]
    ref = raw_of(path, fmt, tmp_path / "ref.raw")
    sock = tmp_path / "s.sock"
    with spawn(["qemu-nbd", "-t", "--read-only", "-f", fmt, "-k", sock, path]):
        wait_for(sock.exists, timeout=20, what="qemu-nbd's socket")
        with open_container(parse_target(f"nbd+unix:///?socket={sock}")) as r:
            assert isinstance(r, NbdUriReader)
            assert r.read(0, r.size) == ref
            _check_extents(r, ref, path, fmt)


def test_nbd_tcp_uri_served_by_nbdkit(tmp_path: pathlib.Path) -> None:
    data = bytearray(8 * MiB)
    data[3 * MiB : 3 * MiB + 5] = b"hello"
    path = tmp_path / "disk.raw"
    with open(path, "wb") as f:  # sparse: a hole, data, a hole
        f.truncate(len(data))
        f.seek(3 * MiB)
        f.write(b"hello")
    port = _free_port()
    with spawn(["nbdkit", "-f", "-r", "-i", "127.0.0.1", "-p", port, "file", path]):
        uri = f"nbd://127.0.0.1:{port}/"
        wait_for(lambda: _accepts(port), timeout=20, what="nbdkit")
        with NbdUriReader(parse_target(uri)) as r:
            assert r.size == len(data)
            assert r.read(0, r.size) == bytes(data)
            assert r.read(3 * MiB, 5) == b"hello"
            _check_extents(r, bytes(data))


def test_server_without_block_status(tmp_path: pathlib.Path) -> None:
    """A server that does not offer base:allocation: everything is reported as data."""
    path = tmp_path / "disk.raw"
    path.write_bytes(b"x" * 4096 + bytes(MiB - 4096))
    sock = tmp_path / "k.sock"
    with spawn(["nbdkit", "-f", "-r", "-U", sock, "--filter=noextents", "file", path]):
        wait_for(sock.exists, timeout=20, what="nbdkit's socket")
        with NbdUriReader(f"nbd+unix:///?socket={sock}") as r:
            assert list(r.extents()) == [Extent(0, MiB, True)]
            assert r.read(4090, 10) == b"x" * 6 + bytes(4)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("uri", ["nbd://127.0.0.1:{port}/", "nbd+unix:///?socket={sock}"])
def test_absent_server_is_a_clear_error(tmp_path: pathlib.Path, uri: str) -> None:
    uri = uri.format(port=_free_port(), sock=tmp_path / "none.sock")
    with pytest.raises(UserError) as err:
        NbdUriReader(parse_target(uri))
    assert err.value.code == "nbd-unreachable"


def test_forgotten_reader_still_stops_its_server(images: dict[str, tuple[pathlib.Path, str]]
                                                  ) -> None:
    import gc

    path, fmt = images["vdi"]
    reader = QemuNbdReader(str(path), fmt)
    server = reader._server
    assert server.proc.poll() is None
    del reader
    gc.collect()
    assert server.proc.poll() is not None
    assert not os.path.exists(server.tmpdir)


def test_interrupt_inside_with_stops_the_server(images: dict[str, tuple[pathlib.Path, str]]
                                                ) -> None:
    path, fmt = images["qed"]
    with pytest.raises(KeyboardInterrupt), QemuNbdReader(str(path), fmt) as reader:
        server = reader._server
        raise KeyboardInterrupt
    assert server.proc.poll() is not None
