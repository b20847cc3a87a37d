"""Loop backend on this machine: partitions as loop devices with offsets, read-only mounts."""

from __future__ import annotations

import json
import os

import pytest

from diskkit.backends import list_dir, mounted, read_file
from diskkit.backends.loop import list_loops
from diskkit.errors import UserError
from diskkit.runner import run
from tests.backends.conftest import HELLO, HOSTNAME, MiB, sha256

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


def test_partition_loop_offsets_match_sfdisk(disk_images) -> None:
    raw = disk_images.raw
    before = sha256(raw)
    table = json.loads(run(["sfdisk", "--json", str(raw)]).stdout)["partitiontable"]
    with mounted(str(raw), partition=2, backend="loop") as m:
        assert m.backend == "loop"
        (entry,) = m.mounts
        dev = entry["device"]
        loops = {d["name"]: d for d in list_loops()}
        # The loop device covers exactly partition 2 as sfdisk reports it, read-only.
        p2 = table["partitions"][1]
        assert int(loops[dev]["offset"]) == p2["start"] * 512
        assert int(loops[dev]["sizelimit"]) == p2["size"] * 512
        assert loops[dev]["ro"] in (True, "1", 1)
        # blkid (independent of diskkit's own parser) sees the data filesystem there.
        assert "LABEL=data" in run(["blkid", "-p", "-o", "export", dev]).stdout
        with open(os.path.join(m.root, "hello.txt")) as f:
            assert f.read() == HELLO
        with open("/proc/self/mountinfo") as f:
            opts = next(line.split()[5] for line in f if line.split()[4] == m.root)
        assert opts.split(",")[0] == "ro"
        with pytest.raises(OSError), open(os.path.join(m.root, "new"), "w"):
            pass
    assert sha256(raw) == before


def test_os_mounts_the_fstab_tree(disk_images) -> None:
    with mounted(str(disk_images.raw), os_root=True, backend="loop") as m:
        paths = {x["mountpoint"]: x for x in m.mounts}
        assert paths["/"]["location"] == "partition 1"
        assert paths["/srv"]["location"] == "partition 2"
        with open(os.path.join(m.root, "srv", "hello.txt")) as f:
            assert f.read() == HELLO
        assert [s["spec"] for s in m.skipped] == []  # swap is not a mount, LABELs resolved


def test_noload_mounts_a_filesystem_that_needs_recovery(disk_images) -> None:
    dirty = disk_images.dirty
    out = run(["dumpe2fs", "-h", str(dirty)], check=False).stdout
    assert "needs_recovery" in out  # the fixture really is dirty
    before = sha256(dirty)
    with mounted(str(dirty), backend="loop") as m:
        assert m.mounts[0]["fstype"] == "ext4"
        assert os.path.exists(os.path.join(m.root, "hello.txt"))
    assert sha256(dirty) == before


def test_read_file_resolves_symlinks_inside_the_guest(disk_images) -> None:
    raw = str(disk_images.raw)
    assert read_file(raw, "/etc/hostname", partition=1) == HOSTNAME.encode()
    assert read_file(raw, "/etc/link", partition=1) == HOSTNAME.encode()
    # /etc/escape -> /../../../../etc/shadow: the host's shadow file must never be read.
    with pytest.raises(UserError) as exc:
        read_file(raw, "/etc/escape", partition=1)
    assert exc.value.code == "not-found"
    names = {e["name"]: e["type"] for e in list_dir(raw, "/etc", partition=1)}
    assert names["hostname"] == "file" and names["link"] == "link"


@pytest.mark.parametrize(("sel", "code"), [
    ({"partition": 9}, "no-such-partition"),
    ({"partition": 4}, "no-filesystem"),
    ({}, "choose-partition"),
    ({"lv": "vg/none"}, "no-such-lv"),
])
def test_bad_selection(disk_images, sel, code) -> None:
    with pytest.raises(UserError) as exc, mounted(str(disk_images.raw), backend="loop", **sel):
        pass
    assert exc.value.code == code


def test_encrypted_partition(disk_images) -> None:
    with pytest.raises(UserError) as exc, mounted(str(disk_images.luks), partition=1):
        pass
    assert exc.value.code == "encrypted"


@pytest.mark.parametrize(("fstype", "mkfs", "size", "option"), [
    ("xfs", ["mkfs.xfs", "-q", "-f"], 320 * MiB, "norecovery"),
    ("btrfs", ["mkfs.btrfs", "-q", "-f"], 128 * MiB, "nologreplay"),
])
def test_journal_replay_is_off(tmp_path, fstype, mkfs, size, option) -> None:
    """xfs and btrfs whole-disk images mount with their no-replay option (mountinfo shows
    it) and are not written to."""
    img = tmp_path / f"{fstype}.img"
    run(["truncate", "-s", str(size), str(img)])
    run([*mkfs, str(img)], timeout=120)
    before = sha256(img)
    with mounted(str(img), backend="loop") as m:
        assert m.mounts[0]["fstype"] == fstype
        with open("/proc/self/mountinfo") as f:
            line = next(ln for ln in f if ln.split()[4] == m.root)
        assert option in line, line
    assert sha256(img) == before
