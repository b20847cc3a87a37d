"""``diskkit cat``, ``ls``, ``find`` and ``stat`` read guest files with no root and no mount:
run as the unprivileged user ``nobody`` (no loop devices, no mounts possible, and an
appliance launch would blow the timeout) on a GPT disk whose OS root has /boot on its own
partition, named in its fstab."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

from diskkit.runner import run, which

FSTAB = b"UUID=%s / ext4 defaults 0 1\nLABEL=BOOT /boot vfat defaults 0 2\n"
GRUB = b"set default=0\nmenuentry 'Debian GNU/Linux' {\n  linux /vmlinuz root=UUID=x\n}\n"
ROOT_UUID = "5e1f0c3a-9d2b-4e7a-8c61-0d15c0de0042"


@pytest.fixture(scope="module")
def os_disk() -> pathlib.Path:
    """A GPT disk: partition 1 FAT /boot (grub/grub.cfg), partition 2 ext4 root whose fstab
    mounts LABEL=BOOT at /boot; in a world-readable directory, for ``nobody``."""
    if not which("setpriv") or os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody with setpriv")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="diskkit-guestfs-cli-"))
    tmp.chmod(0o755)
    try:
        src = tmp / "root"
        (src / "etc").mkdir(parents=True)
        (src / "boot").mkdir()
        (src / "usr/lib").mkdir(parents=True)
        (src / "etc/fstab").write_bytes(FSTAB % ROOT_UUID.encode())
        (src / "usr/lib/os-release").write_bytes(b'ID=debian\nVERSION_ID="12"\n')
        os.symlink("../usr/lib/os-release", src / "etc/os-release")
        os.symlink("/etc/../../../../etc/shadow", src / "etc/evil")
        (src / "etc/shadow").write_bytes(b"root:*:19000:0:99999:7:::\n")
        root = tmp / "root.img"
        run(["mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, "-d", str(src), str(root), "24M"],
            timeout=60)
        boot = tmp / "boot.img"
        run(["mkfs.vfat", "-C", "-n", "BOOT", str(boot), "8192"], timeout=60)
        run(["mmd", "-i", str(boot), "::/grub"], timeout=30)
        cfg = tmp / "grub.cfg"
        cfg.write_bytes(GRUB)
        run(["mcopy", "-i", str(boot), str(cfg), "::/grub/grub.cfg"], timeout=30)
        disk = tmp / "disk.img"
        size = (1 << 20) + boot.stat().st_size + root.stat().st_size + (1 << 20)
        run(["truncate", "-s", str(size), str(disk)], timeout=10)
        b_sec, r_sec = boot.stat().st_size // 512, root.stat().st_size // 512
        run(["sfdisk", "-q", str(disk)], timeout=30,
            input=f"label: gpt\nstart=2048, size={b_sec}, type=U\n"
                  f"start={2048 + b_sec}, size={r_sec}, type=L\n")
        for img, sector in ((boot, 2048), (root, 2048 + b_sec)):
            run(["dd", f"if={img}", f"of={disk}", "bs=512", f"seek={sector}",
                 "conv=notrunc", "status=none"], timeout=60)
        disk.chmod(0o644)
        yield disk
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def nobody(*args: str) -> tuple[int, str, str]:
    """Run ``diskkit ARGS`` as nobody; no appliance could start in the 60 s allowed."""
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent",
           "XDG_RUNTIME_DIR": "/nonexistent", "LIBGUESTFS_BACKEND": "direct"}
    r = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-m", "diskkit", *args], timeout=60, check=False, env=env)
    return r.returncode, r.stdout, r.stderr


def test_cat_follows_the_os_tree_without_root(os_disk) -> None:
    rc, out, err = nobody("cat", str(os_disk), "/etc/os-release")
    assert rc == 0, err
    assert out == 'ID=debian\nVERSION_ID="12"\n'
    rc, out, err = nobody("cat", str(os_disk), "/boot/grub/grub.cfg")  # /boot from fstab
    assert rc == 0, err
    assert out.encode() == GRUB
    rc, out, err = nobody("cat", str(os_disk), "/etc/evil")  # the guest's shadow, not ours
    assert rc == 0 and out.startswith("root:*:19000"), err


def test_ls_find_stat_json(os_disk) -> None:
    rc, out, err = nobody("ls", str(os_disk), "/etc", "--json")
    assert rc == 0, err
    entries = {e["name"]: e["type"] for e in json.loads(out)["entries"]}
    assert entries == {"fstab": "file", "os-release": "link", "evil": "link", "shadow": "file"}
    rc, out, err = nobody("find", str(os_disk), "/", "--name", "*.cfg", "--json")
    assert rc == 0, err
    assert [x["path"] for x in json.loads(out)["results"]] == ["/boot/grub/grub.cfg"]
    rc, out, err = nobody("stat", str(os_disk), "/etc/os-release", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "file" and doc["realpath"] == "/usr/lib/os-release"
    assert doc["size"] == 26 and doc["fstype"] == "ext4" and doc["uid"] == 0
    rc, out, err = nobody("stat", str(os_disk), "/boot/grub/grub.cfg", "--json")
    assert rc == 0, err
    assert json.loads(out)["fstype"] == "vfat"
    rc, out, err = nobody("stat", str(os_disk), "/etc/os-release", "--no-follow")
    assert rc == 0 and "symlink" in out and "../usr/lib/os-release" in out, err


def test_errors_are_one_line(os_disk) -> None:
    rc, _out, err = nobody("cat", str(os_disk), "/etc/missing")
    assert rc != 0 and err.count("\n") <= 2 and "not-found" in err and "Traceback" not in err
    rc, _out, err = nobody("cat", str(os_disk), "/etc")
    assert rc != 0 and "not-a-file" in err and "Traceback" not in err
    rc, _out, err = nobody("cat", str(os_disk), "/etc/fstab", "--partition", "1")
    assert rc != 0 and "not-found" in err  # partition 1 is /boot: no /etc there
