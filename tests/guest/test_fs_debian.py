"""guest/fs on the real Debian 12 images (ext4 root, XFS root, GPT + ESP): what the in-process
readers list and read equals what the kernel shows through a diskkit mount (--backend loop: a
qemu-storage-daemon FUSE export + loop devices) of the same image, entry by entry."""

from __future__ import annotations

import os

import pytest

from diskkit.guest.fs import service

#: Trees compared (bounded so the test stays quick).
TOPS = ("/etc", "/boot", "/usr/lib/modules", "/var/lib/dpkg")
KEYS = ("kind", "size", "mode", "uid", "gid", "target")


def _tree(fs) -> dict[str, tuple]:
    out = {}
    for top in TOPS:
        for path, st in fs.find(top, max_depth=4, max_results=20_000):
            facts = [getattr(st, k) for k in KEYS]
            if st.kind == "dir":  # libfsxfs gives 0 for an XFS directory's size
                facts[1] = None
            out[path] = tuple(facts)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["debian_base", "debian_xfs", "debian_uefi"])
def test_debian_trees_equal_the_kernels_view(variant, request) -> None:
    if os.geteuid() != 0:
        pytest.skip("the kernel's view needs root (loop devices)")
    image = request.getfixturevalue(variant)
    target = str(image.path)
    with service.open_guest(target, os_root=True) as fast, \
            service.open_mounted(target, os_root=True, backend="loop") as slow:
        assert slow.driver == "kernel mount" and fast.driver != "kernel mount"
        got, want = _tree(fast), _tree(slow)
        assert len(got) > 300
        if image.firmware == "uefi":
            # The ESP (vfat, /boot/efi in fstab) is read in-process; this host's kernel has
            # no vfat, so the mount path leaves /boot/efi empty: compare the rest.
            assert "/boot/efi/EFI/BOOT/BOOTX64.EFI" in got
            from diskkit.backends.mounts import kernel_supports

            if not kernel_supports("vfat"):
                got = {p: v for p, v in got.items() if not p.startswith("/boot/efi/")}
                got["/boot/efi"] = want["/boot/efi"]  # the ESP root has no owner on FAT
        assert got.keys() == want.keys()
        assert got == want
        files = [p for p, t in got.items() if t[0] == "file" and t[1] < (4 << 20)]
        for path in files[:: max(1, len(files) // 300)]:
            assert fast.read(path) == slow.read(path), path
        assert fast.read("/etc/hostname") == (image.facts["hostname"] + "\n").encode()
