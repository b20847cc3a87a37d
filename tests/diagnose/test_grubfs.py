"""GRUB's filesystem feature masks (diskkit/diagnose/grubfs.py) on filesystems made by the real
mkfs.ext4 / mkfs.xfs: the incompatible features read from the superblock equal what
dumpe2fs / xfs_db list, and the verdict per GRUB release follows grub-core/fs/*.c."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from diskkit.diagnose import grubfs
from diskkit.readers.raw import FileReader
from diskkit.runner import run

pytestmark = pytest.mark.skipif(shutil.which("mkfs.xfs") is None or
                                shutil.which("mkfs.ext4") is None, reason="mkfs missing")

#: dumpe2fs's names of the incompat features grubfs knows (e2fsprogs lib/e2p/feature.c).
_E2P = {"filetype", "needs_recovery", "journal_dev", "meta_bg", "extent", "64bit", "mmp",
        "flex_bg", "ea_inode", "dirdata", "metadata_csum_seed", "large_dir", "inline_data",
        "encrypt", "casefold"}


def _ext4(tmp_path: pathlib.Path, features: str) -> pathlib.Path:
    img = tmp_path / "ext4.img"
    run(["truncate", "-s", "64M", str(img)], timeout=30)
    run(["mkfs.ext4", "-q", "-F", "-O", features, str(img)], timeout=60)
    return img


@pytest.mark.parametrize(("features", "grub", "unreadable"), [
    ("metadata_csum_seed", "2.04-20", ["metadata_csum_seed"]),
    ("metadata_csum_seed", "2.06-3~deb11u5", []),
    ("metadata_csum_seed,large_dir", "2.06-3~deb11u5", ["large_dir"]),
    ("large_dir", "2.12-1", []),
    ("inline_data", "2.12-1", ["inline_data"]),
])
def test_ext4_features(tmp_path: pathlib.Path, features: str, grub: str,
                       unreadable: list[str]) -> None:
    img = _ext4(tmp_path, features)
    listed = run(["dumpe2fs", "-h", str(img)], timeout=30).stdout
    line = next(x for x in listed.splitlines() if x.startswith("Filesystem features:"))
    truth = set(line.split(":", 1)[1].split()) & _E2P
    with FileReader(str(img)) as r:
        res = grubfs.readability(r, 0, "ext4", {"grub-pc": grub})
    assert res is not None
    assert set(grubfs._names(res.incompat, grubfs.EXT_FEATURES)) == truth
    assert list(res.unreadable) == unreadable


@pytest.mark.parametrize(("options", "grub", "unreadable"), [
    (["-m", "bigtime=1", "-i", "nrext64=1"], "2.06-3~deb11u5", ["nrext64"]),
    (["-m", "bigtime=1", "-i", "nrext64=1"], "2.06-13+deb12u2", []),  # Debian's backport
    (["-m", "bigtime=1", "-i", "nrext64=0"], "2.04-20", ["bigtime"]),
    (["-m", "bigtime=0", "-i", "nrext64=0"], "2.04-20", []),
])
def test_xfs_features(tmp_path: pathlib.Path, options: list[str], grub: str,
                      unreadable: list[str]) -> None:
    img = tmp_path / "xfs.img"
    run(["truncate", "-s", "300M", str(img)], timeout=30)
    run(["mkfs.xfs", "-q", "-f", *options, str(img)], timeout=60)
    version = run(["xfs_db", "-r", "-c", "version", str(img)], timeout=30).stdout
    with FileReader(str(img)) as r:
        res = grubfs.readability(r, 0, "xfs", {"grub-pc": grub})
    assert res is not None
    names = set(grubfs._names(res.incompat, grubfs.XFS_FEATURES))
    assert ("bigtime" in names) == ("BIGTIME" in version)
    assert ("nrext64" in names) == ("NREXT64" in version)
    assert ("ftype" in names) == ("FTYPE" in version)
    assert list(res.unreadable) == unreadable


def test_unknown_grub_version_is_lenient() -> None:
    assert grubfs.grub_version({"openssh-server": "1:9.2"}) == (None, None)
    assert grubfs.grub_version({"grub2-common": "1:2.06-80.el9"})[0] == (2, 6)
