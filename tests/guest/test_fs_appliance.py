"""Filesystems no in-process reader handles (btrfs, a pure UDF volume) read through the
libguestfs appliance (one launch for the module, TCG) and through a kernel mount, with the
same in-root symlink resolution as the in-process readers."""

from __future__ import annotations

import os
import pathlib

import pytest

from diskkit.errors import HostError
from diskkit.guest.fs import SymlinkLoop, service
from diskkit.guest.fs.appliance import ApplianceFS
from diskkit.runner import run, which

FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
    "usr/lib/os-release": b'ID=debian\nVERSION_ID="12"\n',
    "data/blob.bin": os.urandom(5 << 20),
}
LINKS = {"etc/os-release": "../usr/lib/os-release", "etc/escape": "../../../../etc/passwd",
         "etc/abs": "/etc/passwd", "loop-a": "loop-b", "loop-b": "loop-a"}


def _tree(root: pathlib.Path) -> None:
    for rel, data in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for rel, target in LINKS.items():
        os.symlink(target, root / rel)


@pytest.fixture(scope="module")
def btrfs_image(tmp_path_factory) -> pathlib.Path:
    if not which("mkfs.btrfs"):
        pytest.skip("mkfs.btrfs needed")
    tmp = tmp_path_factory.mktemp("btrfs")
    _tree(tmp / "src")
    img = tmp / "btrfs.img"
    run(["truncate", "-s", "160M", str(img)], timeout=10)
    run(["mkfs.btrfs", "-q", "-L", "btrlabel", "--rootdir", str(tmp / "src"), str(img)],
        timeout=120)
    return img


@pytest.fixture(scope="module")
def appliance(btrfs_image, tmp_path_factory):
    """One appliance for the module: the btrfs image (read-only) and a pure UDF volume made
    by mkudffs and filled inside the appliance (this kernel has no udf module)."""
    guestfs = pytest.importorskip("guestfs")
    if not which("mkudffs"):
        pytest.skip("mkudffs (udftools) needed")
    tmp = tmp_path_factory.mktemp("udf")
    udf = tmp / "udf.img"
    run(["truncate", "-s", "32M", str(udf)], timeout=10)
    run(["mkudffs", "--label=UdfLabel", "--blocksize=2048", "--media-type=hd", str(udf)],
        timeout=60)
    from diskkit.backends.guestfs import LAUNCH_TIMEOUT, _launch

    g = guestfs.GuestFS(python_return_dict=True)
    g.set_backend("direct")
    g.set_backend_settings(["force_tcg"])
    g.add_drive_opts(str(btrfs_image), format="raw", readonly=True)
    g.add_drive_opts(str(udf), format="raw", readonly=False)
    errors: list[BaseException] = []
    import threading

    t = threading.Thread(target=_launch, args=(g, errors), daemon=True)
    t.start()
    t.join(LAUNCH_TIMEOUT)
    if t.is_alive() or errors:
        g.close()
        pytest.fail(f"appliance did not start: {errors}")
    try:
        g.mount("/dev/sdb", "/")
        for rel, data in FILES.items():
            g.mkdir_p("/" + os.path.dirname(rel))
            g.write("/" + rel, data)
        for rel, target in LINKS.items():
            g.ln_s(target, "/" + rel)
        g.umount_all()
        yield g
    finally:
        g.shutdown()
        g.close()


@pytest.mark.slow
@pytest.mark.parametrize("device", ["/dev/sda", "/dev/sdb"])
def test_appliance_reads_btrfs_and_pure_udf(appliance, device) -> None:
    fs = ApplianceFS(appliance, device)
    try:
        assert fs.fstype == ("btrfs" if device == "/dev/sda" else "udf")
        for rel, data in FILES.items():
            assert fs.read("/" + rel) == data
        assert fs.read("/etc/os-release") == FILES["usr/lib/os-release"]
        assert fs.read("/etc/escape") == FILES["etc/passwd"]
        assert fs.realpath("/etc/abs") == "/etc/passwd"
        assert fs.readlink("/etc/os-release") == "../usr/lib/os-release"
        assert {e.name for e in fs.listdir("/etc")} == {"passwd", "os-release", "escape", "abs"}
        with pytest.raises(SymlinkLoop):
            fs.stat("/loop-a")
    finally:
        appliance.umount_all()


def test_btrfs_goes_to_the_mount_path(btrfs_image) -> None:
    with pytest.raises(HostError) as info, service.open_guest(str(btrfs_image)):
        pass
    assert info.value.code == "fs-unsupported"
    if os.geteuid() != 0:
        pytest.skip("the kernel mount path needs root (else the appliance is chosen)")
    got = service.stat_path(str(btrfs_image), "/etc/os-release")
    assert got["kind"] == "file" and got["size"] == len(FILES["usr/lib/os-release"])
    assert got["realpath"] == "/usr/lib/os-release" and got["driver"] == "kernel mount"
    assert service.read_file(str(btrfs_image), "/etc/escape") == FILES["etc/passwd"]
    found = service.find_paths(str(btrfs_image), "/", name="*.bin")
    assert [x["path"] for x in found] == ["/data/blob.bin"]


def test_fstab_mount_not_readable_in_process_falls_back(btrfs_image, tmp_path) -> None:
    """An ext4 root whose fstab mounts a btrfs partition at /srv: the root's files are read
    in-process, anything under /srv through the mount path (never the empty directory of
    the root underneath)."""
    if os.geteuid() != 0:
        pytest.skip("the kernel mount fallback needs root here (else: the appliance)")
    btrfs_uuid = run(["blkid", "-p", "-o", "value", "-s", "UUID", str(btrfs_image)],
                     timeout=30).stdout.strip()
    src = tmp_path / "root"
    (src / "etc").mkdir(parents=True)
    (src / "srv").mkdir()
    (src / "etc" / "fstab").write_text(f"/dev/vda1 / ext4 defaults 0 1\n"
                                       f"UUID={btrfs_uuid} /srv btrfs defaults 0 0\n")
    (src / "etc" / "hostname").write_bytes(b"mixed\n")
    root = tmp_path / "root.ext4"
    run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(root), "16M"], timeout=60)
    disk = tmp_path / "disk.img"
    r_sec, b_sec = root.stat().st_size // 512, btrfs_image.stat().st_size // 512
    run(["truncate", "-s", str((2048 + r_sec + b_sec + 2048) * 512), str(disk)], timeout=10)
    run(["sfdisk", "-q", str(disk)], timeout=30,
        input=f"label: gpt\nstart=2048, size={r_sec}, type=L\n"
              f"start={2048 + r_sec}, size={b_sec}, type=L\n")
    for img, sector in ((root, 2048), (btrfs_image, 2048 + r_sec)):
        run(["dd", f"if={img}", f"of={disk}", "bs=1M", f"seek={sector * 512}",
             "oflag=seek_bytes", "conv=notrunc", "status=none"], timeout=60)
    target = str(disk)
    got = service.stat_path(target, "/etc/hostname", os_root=True)
    assert got["driver"] == "diskkit ext"
    got = service.stat_path(target, "/srv/etc/passwd", os_root=True)
    assert got["driver"] == "kernel mount" and got["size"] == len(FILES["etc/passwd"])
    assert service.read_file(target, "/srv/data/blob.bin", os_root=True) == \
        FILES["data/blob.bin"]
    assert {e["name"] for e in service.list_dir(target, "/srv", os_root=True)} >= \
        {"etc", "usr", "data"}
