"""guest/fs against real filesystems built at test time: every file, directory and symlink
put in is read back through raw, qcow2 and vmdk (qemu-nbd) readers, on a whole disk and on a
partition; symlinks that try to leave the guest root stay inside it."""

from __future__ import annotations

import os
import pathlib
import shutil
import stat

import pytest

from diskkit.disk import open_disk
from diskkit.guest.fs import NotAFile, NotFound, SymlinkLoop, open_filesystem
from diskkit.layout import inspect_layout
from diskkit.layout.inspect import partition_reader
from diskkit.readers.raw import FileReader
from diskkit.runner import run, which

FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
    "usr/lib/os-release": b'ID=debian\nVERSION_ID="12"\n',
    "boot/grub/grub.cfg": b"set default=0\nmenuentry 'Debian' {\n}\n",
    "big/blob.bin": os.urandom(3 << 20),
    "deep/a/b/c/d/name with spaces.txt": b"spaces\n",
    "Mixed/CaseName.TXT": b"case\n",
}
MANY = 300
LINKS = {  # name -> target (relative, absolute, escaping, looping)
    "etc/os-release": "../usr/lib/os-release",
    "etc/abs-passwd": "/etc/passwd",
    "etc/escape": "../../../../../etc/passwd",
    "etc/escape-abs": "/../../etc/passwd",
    "etc/dir-link": "/usr/lib",
    "loop-a": "loop-b",
    "loop-b": "loop-a",
}
NO_LINKS = {"vfat"}  # filesystems without symlinks


def _tree(root: pathlib.Path, links: bool) -> None:
    for rel, data in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "many").mkdir()
    for i in range(MANY):
        (root / "many" / f"entry-{i:04d}.txt").write_bytes(b"%d\n" % i)
    if links:
        for rel, target in LINKS.items():
            os.symlink(target, root / rel)


def _mount_copy(img: pathlib.Path, src: pathlib.Path, mnt: pathlib.Path, fuse: bool) -> None:
    mnt.mkdir()
    if fuse:
        run(["ntfs-3g", "-o", "rw", str(img), str(mnt)], timeout=60)
    else:
        run(["mount", "-o", "loop", str(img), str(mnt)], timeout=60)
    try:
        run(["cp", "-a", f"{src}/.", str(mnt)], timeout=120)
    finally:
        run(["fusermount3", "-u", str(mnt)] if fuse else ["umount", str(mnt)], timeout=60)


def build(kind: str, tmp: pathlib.Path) -> pathlib.Path:
    """A filesystem image of ``kind`` holding FILES (and LINKS where it has symlinks)."""
    src = tmp / "src"
    _tree(src, kind not in NO_LINKS)
    img = tmp / f"{kind}.img"
    if kind == "ext4":
        run(["mkfs.ext4", "-q", "-F", "-L", "extlabel", "-d", str(src), str(img), "64M"],
            timeout=120)
    elif kind == "xfs":
        run(["truncate", "-s", "320M", str(img)], timeout=10)
        run(["mkfs.xfs", "-q", "-L", "xfslabel", str(img)], timeout=120)
        _mount_copy(img, src, tmp / "mnt", fuse=False)
    elif kind == "vfat":
        run(["mkfs.vfat", "-C", "-n", "FATLABEL", str(img), str(32 << 10)], timeout=60)
        for top in sorted(src.iterdir()):
            run(["mcopy", "-s", "-i", str(img), str(top), "::/"], timeout=120)
    elif kind == "ntfs":
        run(["truncate", "-s", "64M", str(img)], timeout=10)
        run(["mkntfs", "-q", "-F", "-f", "-L", "ntfslabel", str(img)], timeout=120)
        _mount_copy(img, src, tmp / "mnt", fuse=True)
    elif kind == "iso9660":
        run(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-joliet-long",
             "-V", "ISOLABEL", "-o", str(img), str(src)], timeout=120)
    else:
        raise AssertionError(kind)
    return img


KINDS = ["ext4", "xfs", "vfat", "ntfs", "iso9660"]
TOOLS = {"ext4": "mkfs.ext4", "xfs": "mkfs.xfs", "vfat": "mcopy", "ntfs": "mkntfs",
         "iso9660": "xorriso"}


@pytest.fixture(scope="module", params=KINDS)
def image(request, tmp_path_factory) -> tuple[str, pathlib.Path, pathlib.Path]:
    kind = request.param
    if not which(TOOLS[kind]) or (kind in ("xfs", "ntfs") and os.geteuid() != 0):
        pytest.skip(f"{TOOLS[kind]} (and root for a loop/FUSE mount) needed")
    tmp = tmp_path_factory.mktemp(kind)
    return kind, build(kind, tmp), tmp / "src"


def _open(kind: str, img: pathlib.Path):
    """The image's reader: open_disk, except for a bare NTFS volume, which diskkit's format
    safety check refuses as an "empty MBR" (its boot sector ends in 55 AA): read it raw."""
    return FileReader(str(img)) if kind == "ntfs" else open_disk(str(img))


def _expected(src: pathlib.Path) -> dict[str, tuple[str, bytes | str | None]]:
    out: dict[str, tuple[str, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(src):
        for name in dirnames + filenames:
            p = pathlib.Path(dirpath) / name
            rel = "/" + str(p.relative_to(src))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None)
            else:
                out[rel] = ("file", p.read_bytes())
    return out


def _check_tree(fs, src: pathlib.Path, kind: str) -> None:
    want = _expected(src)
    got = {}
    for dirpath, entries in fs.walk("/"):
        for e in entries:
            path = (dirpath.rstrip("/") + "/" + e.name)
            if path in ("/lost+found", "/System Volume Information") or \
                    path.startswith(("/lost+found/", "/System Volume Information/")):
                continue
            got[path] = e.kind
    assert got == {k: v[0] for k, v in want.items()}
    for path, (k, data) in want.items():
        if k == "file":
            assert fs.read(path) == data, path
            assert fs.stat(path).size == len(data)
        elif k == "symlink":
            assert fs.readlink(path) == data, path


def test_tree_reads_back_exactly(image) -> None:
    kind, img, src = image
    with _open(kind, img) as disk, open_filesystem(disk) as fs:
        assert fs.fstype == ("vfat" if kind == "vfat" else kind)
        _check_tree(fs, src, kind)
        assert fs.names("/many") == sorted(f"entry-{i:04d}.txt" for i in range(MANY))
        big = b"".join(fs.iter_read("/big/blob.bin", chunk=100_000))
        assert big == FILES["big/blob.bin"]
        assert fs.read("/big/blob.bin", limit=1000, offset=12345) == \
            FILES["big/blob.bin"][12345:13345]
        with pytest.raises(NotAFile):
            fs.read("/etc")
        with pytest.raises(NotFound):
            fs.read("/etc/nothing")
        hits = [p for p, _ in fs.find("/", name="entry-000*.txt")]
        assert len(hits) == 10 and all(p.startswith("/many/") for p in hits)


def test_symlinks_stay_inside_the_guest(image) -> None:
    kind, img, _src = image
    if kind in NO_LINKS:
        pytest.skip("no symlinks on FAT")
    with _open(kind, img) as disk, open_filesystem(disk) as fs:
        assert fs.read("/etc/os-release") == FILES["usr/lib/os-release"]
        assert fs.read("/etc/abs-passwd") == FILES["etc/passwd"]  # the guest's, not the host's
        assert fs.read("/etc/escape") == FILES["etc/passwd"]  # ".." clamped at the guest root
        assert fs.realpath("/etc/escape-abs") == "/etc/passwd"
        assert fs.read("/etc/dir-link/os-release") == FILES["usr/lib/os-release"]
        assert fs.read("/../../../etc/../etc/passwd") == FILES["etc/passwd"]
        assert fs.lstat("/etc/os-release").kind == "symlink"
        assert fs.stat("/etc/os-release").kind == "file"
        with pytest.raises(SymlinkLoop):
            fs.read("/loop-a")
        assert not fs.exists("/loop-b")


def test_case_insensitive_names_on_fat(image) -> None:
    kind, img, _src = image
    if kind != "vfat":
        pytest.skip("FAT only")
    with open_disk(str(img)) as disk, open_filesystem(disk) as fs:
        assert fs.read("/mixed/casename.txt") == FILES["Mixed/CaseName.TXT"]


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk"])
def test_through_qcow2_and_qemu_nbd(image, fmt, tmp_path) -> None:
    kind, img, src = image
    if kind not in ("ext4", "xfs"):
        pytest.skip("one reader pass per format is enough for two kinds")
    out = tmp_path / f"disk.{fmt}"
    run(["qemu-img", "convert", "-f", "raw", "-O", fmt, str(img), str(out)], timeout=120)
    with open_disk(str(out)) as disk, open_filesystem(disk) as fs:
        _check_tree(fs, src, kind)


def test_on_a_partition(image, tmp_path) -> None:
    kind, img, src = image
    if kind != "ext4":
        pytest.skip("ext4 only")
    disk_img = tmp_path / "disk.img"
    size = img.stat().st_size
    run(["truncate", "-s", str(size + (2 << 20)), str(disk_img)], timeout=10)
    run(["sfdisk", "-q", str(disk_img)], timeout=30,
        input=f"label: gpt\nstart=2048, size={size // 512}, type=L\n")
    with open(disk_img, "r+b") as f, open(img, "rb") as g:
        f.seek(2048 * 512)
        shutil.copyfileobj(g, f)
    with open_disk(str(disk_img)) as disk:
        layout = inspect_layout(disk)
        part = layout.partition(1)
        assert part is not None
        with open_filesystem(partition_reader(disk, part)) as fs:
            assert fs.label == "extlabel"
            _check_tree(fs, src, kind)


def test_backend_option_forces_the_mount_path(image) -> None:
    kind, img, _src = image
    if kind not in ("ext4", "xfs") or os.geteuid() != 0:
        pytest.skip("kernel loop mounts of ext4/xfs (root)")
    from diskkit.guest.fs import service

    fast = service.stat_path(str(img), "/etc/os-release")
    mounted = service.stat_path(str(img), "/etc/os-release", backend="loop")
    assert fast["driver"] != "kernel mount" and mounted["driver"] == "kernel mount"
    for key in ("kind", "size", "mode", "uid", "gid", "realpath"):
        assert fast[key] == mounted[key], key
    assert int(fast["mtime"]) == int(mounted["mtime"])
    assert service.read_file(str(img), "/etc/escape", backend="loop") == FILES["etc/passwd"]
    found = service.find_paths(str(img), "/many", name="entry-01*", backend="loop")
    assert sorted(x["path"] for x in found) == \
        sorted(x["path"] for x in service.find_paths(str(img), "/many", name="entry-01*"))
    assert len(found) == 100


def test_ext4_inline_data(tmp_path) -> None:
    """ext4 with inline_data: small files and directories live in the inode (i_block and
    the in-inode "system.data" attribute), as debugfs reads them."""
    src = tmp_path / "src"
    (src / "d1").mkdir(parents=True)
    (src / "d2").mkdir()
    for i in range(5):  # files of 1 to 121 bytes: beyond 60, the rest is in system.data
        (src / "d2" / f"name-{i}").write_bytes(b"%d" % i * (i * 30 + 1))
    (src / "d1" / "tiny").write_bytes(b"tiny\n")
    (src / "d1" / "spill").write_bytes(bytes(range(65, 65 + 26)) * 4)  # 104 bytes > 60
    (src / "d1" / "link").symlink_to("../d2/name-3")
    img = tmp_path / "inline.img"
    run(["mkfs.ext4", "-q", "-F", "-O", "inline_data", "-d", str(src), str(img), "8M"],
        timeout=60)
    for path, inline in (("/d1", 60), ("/d1/spill", 104), ("/d2/name-4", 121)):
        out = run(["debugfs", "-R", f"stat {path}", str(img)], timeout=30).stdout
        assert "Flags: 0x10000000" in out, out  # EXT4_INLINE_DATA_FL
        assert f"Size of inline data: {inline}" in out, out
    with FileReader(str(img)) as r, open_filesystem(r) as fs:
        _check_tree(fs, src, "ext4")
        assert fs.read("/d1/link") == (src / "d2" / "name-3").read_bytes()


def test_ext4_meta_bg(tmp_path) -> None:
    """META_BG: group descriptors of later meta groups live in those groups (few inodes per
    group, so files land in groups past the first meta group)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3000):
        (src / f"f{i}").write_bytes(b"%d\n" % i)
    img = tmp_path / "metabg.img"
    run(["mkfs.ext4", "-q", "-F", "-b", "1024", "-N", "4000", "-O", "meta_bg,^resize_inode",
         "-d", str(src), str(img), "300M"], timeout=120)
    head = run(["dumpe2fs", "-h", str(img)], timeout=30).stdout
    assert "meta_bg" in head
    ipg = int(head.split("Inodes per group:", 1)[1].split()[0])
    with FileReader(str(img)) as r, open_filesystem(r) as fs:
        groups = {(fs.stat(f"/f{i}").inode - 1) // ipg for i in range(0, 3000, 97)}
        assert max(groups) >= 16  # past the first meta group (16 descriptors a block)
        for i in range(3000):
            assert fs.read(f"/f{i}") == b"%d\n" % i


@pytest.mark.parametrize("kind", ["ext2", "ext3"])
def test_block_mapped_files_read_at_any_offset(tmp_path, kind) -> None:
    """ext2/3 block maps (direct, single, double indirect with 1 KiB blocks): whole reads,
    chunked reads and reads at odd offsets give the file's bytes."""
    data = os.urandom(9 << 20)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big").write_bytes(data)
    img = tmp_path / f"{kind}.img"
    run([f"mkfs.{kind}", "-q", "-F", "-b", "1024", "-d", str(tmp_path / "src"), str(img),
         "24M"], timeout=60)
    with FileReader(str(img)) as r, open_filesystem(r) as fs:
        assert fs.read("/big", limit=len(data)) == data
        assert b"".join(fs.iter_read("/big", chunk=333_333)) == data
        for off in (0, 11 * 1024 - 7, 12 * 1024, (12 + 256) * 1024 + 5, 7_777_777):
            assert fs.read("/big", limit=4099, offset=off) == data[off:off + 4099], off
