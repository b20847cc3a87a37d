"""The minimal ext2/3/4 path lookup against mke2fs -d and debugfs (block maps with indirect
blocks on ext2, extents and hashed directories on ext4)."""

from __future__ import annotations

import os
import pathlib

import pytest

from diskkit.boot.ext import ExtFs, is_ext
from diskkit.errors import ImageError
from diskkit.readers.base import BytesReader
from diskkit.readers.raw import FileReader
from diskkit.runner import run

FILES = {
    "boot/grub/grub.cfg": b"set timeout=5\n",
    "boot/grub/i386-pc/normal.mod": os.urandom(40_000),
    "big/file.bin": os.urandom(5 << 20),  # > 12 + 256 blocks of 1 KiB: double indirect
    "deep/a/b/c/name with spaces.txt": b"spaces\n",
}


@pytest.fixture(scope="module", params=["ext2", "ext3", "ext4"])
def ext_image(request, tmp_path_factory) -> tuple[pathlib.Path, str]:
    tmp = tmp_path_factory.mktemp(request.param)
    root = tmp / "root"
    for rel, data in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    many = root / "many"
    many.mkdir()
    for i in range(600):  # a directory big enough for an htree index on ext4
        (many / f"entry-with-a-long-name-{i:04d}").write_bytes(b"%d" % i)
    img = tmp / "fs.img"
    run([f"mkfs.{request.param}", "-q", "-F", "-b", "1024", "-d", str(root), str(img), "16M"],
        timeout=120)
    # e2fsck -D rebuilds directories with hashed (htree) indexes where the fs supports them.
    run(["e2fsck", "-fyD", str(img)], timeout=120, check=False)
    return img, request.param


def test_files_read_as_debugfs_cats_them(ext_image):
    img, _kind = ext_image
    with FileReader(str(img)) as r:
        assert is_ext(r)
        fs = ExtFs(r)
        for rel, data in FILES.items():
            ino = fs.lookup("/" + rel)
            assert ino is not None, rel
            assert fs.read_file(ino, limit=1 << 30) == data
        want = run(["debugfs", "-R", "cat /boot/grub/grub.cfg", str(img)], timeout=30,
                   binary=True).stdout
        assert want == FILES["boot/grub/grub.cfg"]
        assert fs.lookup("/boot/grub/missing.cfg") is None
        assert fs.lookup("/boot/grub/grub.cfg/below") is None


def test_big_directory_matches_debugfs_ls(ext_image):
    img, kind = ext_image
    out = run(["debugfs", "-R", "ls -p /many", str(img)], timeout=30).stdout
    want = {ln.split("/")[5] for ln in out.splitlines() if ln.count("/") >= 6} - {".", ".."}
    with FileReader(str(img)) as r:
        fs = ExtFs(r)
        got = set(fs.listdir(fs.lookup("/many"))) - {".", ".."}
        assert got == want and len(got) == 600
        if kind == "ext4":
            flags = run(["debugfs", "-R", "stat /many", str(img)], timeout=30).stdout
            value = int(flags.split("Flags: ", 1)[1].split()[0], 16)
            assert value & 0x1000  # EXT4_INDEX_FL: the directory is htree-indexed


def test_garbage_is_an_image_error_or_a_miss():
    with pytest.raises(ImageError):
        ExtFs(BytesReader(b"\0" * 8192))
    sb = bytearray(4096)
    sb[1024 + 0x38:1024 + 0x3A] = b"\x53\xef"
    sb[1024 + 0x18] = 200  # absurd block size
    with pytest.raises(ImageError):
        ExtFs(BytesReader(bytes(sb)))
