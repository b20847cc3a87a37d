"""The base readers and the raw file reader, against real sparse files."""

from __future__ import annotations

import os
import pathlib

import pytest

from diskkit.errors import UserError
from diskkit.readers import BytesReader, SliceReader
from diskkit.readers.raw import FileReader


def test_bytes_reader_short_read_at_end() -> None:
    r = BytesReader(b"abcdef")
    assert r.read(4, 10) == b"ef"
    assert r.read(6, 1) == b""
    assert r.read(100, 1) == b""


def test_slice_is_clipped_to_parent() -> None:
    r = SliceReader(BytesReader(b"0123456789"), 8, 100)
    assert r.size == 2
    assert r.read(0, 10) == b"89"


def test_file_reader_extents_follow_holes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sparse.raw"
    with open(path, "wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(b"x" * 4096)
    with FileReader(str(path)) as r:
        assert r.size == 64 << 20
        data = list(r.data_extents())
        assert len(data) == 1
        assert data[0].offset <= 32 << 20 < data[0].end
        assert data[0].length < 2 << 20
        assert r.read((32 << 20) + 4090, 10) == b"x" * 6 + b"\0" * 4
        assert r.is_zero(0, 32 << 20)
        assert not r.is_zero(0, 64 << 20)


def test_file_reader_terabyte_sparse_is_cheap(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "blank.raw"
    with open(path, "wb") as f:
        f.truncate(1 << 40)
    with FileReader(str(path)) as r:
        assert r.is_zero(0, r.size)
        assert list(r.data_extents()) == []


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_file_reader_bad_paths(tmp_path: pathlib.Path, make: str) -> None:
    path = tmp_path / "x"
    if make == "directory":
        os.mkdir(path)
    with pytest.raises(UserError):
        FileReader(str(path))
