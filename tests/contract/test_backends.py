"""Every Backend (diskkit.backends.base.Backend) keeps the same contract, where the host
allows it: ``requirements()`` tells the truth, ``attach`` + ``mount`` show the guest's files
read-only at the right places, ``detach`` leaves nothing behind (no loop device, mount or
qemu process: checked by the autouse fixture from tests/backends/conftest.py), and the image
is never written. nbd needs a kernel with the nbd driver: it runs in the test VM
(tests/backends/vm_script.py, case ``backend-contract-nbd``)."""

from __future__ import annotations

import errno
import os
import pathlib
from typing import Any

import pytest

from diskkit.backends.base import Location, MountSpec, Teardown
from diskkit.backends.kinds import BACKEND_NAMES, get_backend
from diskkit.backends.state import RunState
from diskkit.errors import UserError
from diskkit.runner import which
from tests.backends.conftest import HELLO, HOSTNAME, PARTS, Images, sha256

#: backend -> (image attribute of Images, qemu format)
IMAGES = {"loop": ("raw", "raw"), "fuse": ("qcow2", "qcow2"), "guestfs": ("qcow2", "qcow2")}
SPECS = [MountSpec(Location.partition(1), "ext4", "/"), MountSpec(Location.partition(2), "ext4",
                                                                   "/srv")]


def _missing(name: str) -> list[str]:
    return [f"{r.name} ({r.fix})" for r in get_backend(name).requirements() if not r.ok]


def test_every_backend_states_its_requirements() -> None:
    for name in BACKEND_NAMES:
        reqs = get_backend(name).requirements()
        assert reqs, name
        for r in reqs:
            assert r.kind in ("program", "device", "kernel-module", "python-module",
                              "privilege")
            if r.kind == "program":  # the truth, by an independent look-up
                assert r.ok == (which(r.name) is not None), (name, r)
            if r.kind == "device":
                assert r.ok == os.path.exists(r.name) or r.name == "kernel", (name, r)
            if not r.ok:
                assert r.fix, (name, r)


def test_locations_are_typed() -> None:
    for text, loc in (("disk", Location.whole_disk()), ("partition 2", Location.partition(2)),
                      ("lv vg0/root", Location.logical_volume("vg0", "root"))):
        assert Location.parse(text) == loc and str(loc) == text
    for bad in ("partition", "partition 0", "lv root", "lv /x", "sda1"):
        with pytest.raises(UserError):
            Location.parse(bad)


@pytest.mark.parametrize("name", ["loop", "fuse", "guestfs"])
def test_backend_contract(name: str, disk_images: Images, tmp_path: pathlib.Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    missing = _missing(name)
    if missing:
        pytest.skip(f"the {name} backend needs: {', '.join(missing)}")
    if name == "guestfs":
        monkeypatch.setenv("DISKKIT_GUESTFS_TCG", "1")  # KVM hangs Linux guests here
    attr, fmt = IMAGES[name]
    image: pathlib.Path = getattr(disk_images, attr)
    before = sha256(image)
    partitions = {i + 1: (s * 512, n * 512) for i, (s, n, _t) in enumerate(PARTS)}
    root = tmp_path / "root"
    root.mkdir()
    backend = get_backend(name)
    run = RunState.create(target=str(image), kind="api")
    with Teardown(run) as td:
        att = backend.attach(td, str(image), fmt, partitions=partitions)
        made = backend.mount(att, SPECS, str(root))
        assert [m["location"] for m in made] == ["partition 1", "partition 2"]
        assert (root / "etc" / "hostname").read_text() == HOSTNAME
        assert (root / "srv" / "hello.txt").read_text() == HELLO
        with pytest.raises(OSError) as exc:
            (root / "srv" / "new.txt").write_text("x")
        assert exc.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        backend.detach(att)
        assert td.run.steps == [] or len(td.run.steps) == att.first_step
        assert not os.listdir(root), "detach left the filesystems mounted"
    assert sha256(image) == before, "the image was written"


def test_unknown_backend_is_one_clear_error() -> None:
    with pytest.raises(UserError) as exc:
        get_backend("floppy")
    assert exc.value.code == "bad-option"


def test_nbd_backend_contract_in_the_vm(vm_result: dict[str, Any]) -> None:
    """NbdBackend needs the kernel's nbd driver, which this host lacks: the same contract
    runs as root in the test VM (tests/fixtures/vm.py), whose result is checked here."""
    c = vm_result["cases"]["backend-contract-nbd"]
    assert c["ok"], c.get("traceback")
    assert c["missing"] == []
    assert c["locations"] == ["partition 1", "partition 2"]
    assert c["hostname"] == HOSTNAME and c["hello"] == HELLO
    assert c["write_errno"] in (errno.EROFS, errno.EACCES, errno.EPERM)
    assert any(d.startswith("nbd") for d in c["during"]["nbd"])
    assert c["steps_left"] == 0 and c["root_entries"] == []
    assert c["after"]["nbd"] == [] and c["after"]["mounts"] == []
