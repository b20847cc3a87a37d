"""The format registry (diskkit.formats.registry) against the tools it describes: every qemu
driver it names is one qemu-img has, every create/preallocate/compress option it gives is one
qemu-img accepts (and force_size=on is why a VHD keeps the size asked for), its OpenStack
names are oslo.utils' own, and look-ups by name and alias behave."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from diskkit.errors import UserError
from diskkit.formats import registry
from diskkit.formats.detect import FORMATS
from diskkit.runner import run

MiB = 1 << 20


def _qemu_formats() -> set[str]:
    out = run(["qemu-img", "--help"], timeout=30).stdout
    m = re.search(r"Supported formats:(.*)", out)
    assert m, out[-500:]
    return set(m.group(1).split())


def _info(path: pathlib.Path, driver: str) -> dict:
    return json.loads(run(["qemu-img", "info", "-f", driver, "--output=json", str(path)],
                          timeout=60).stdout)


def test_every_qemu_driver_is_one_qemu_img_has() -> None:
    have = _qemu_formats()
    assert set(registry.qemu_drivers()) <= have, set(registry.qemu_drivers()) - have


def test_names_and_aliases() -> None:
    assert registry.get("VPC").name == "vhd" and registry.normalise("ami") == "raw"
    assert registry.qemu_driver("vhd") == "vpc" and registry.by_qemu("vpc").name == "vhd"
    assert registry.by_qemu("raw").name == "raw"
    with pytest.raises(UserError) as exc:
        registry.get("floppy")
    assert exc.value.code == "bad-format"
    with pytest.raises(UserError):
        registry.qemu_driver("gzip")  # not a disk: unpack it
    assert set(FORMATS) == set(registry.names(detected=True))
    for info in registry.formats():
        assert info.is_disk == (info.read is not registry.ReadVia.UNPACK)
        assert (info.unpack is not None) == (info.read is registry.ReadVia.UNPACK)


def test_openstack_names_are_oslo_utils() -> None:
    """Glance's disk_format of every format oslo.utils' inspector knows is its registry name."""
    fi = pytest.importorskip("oslo_utils.imageutils.format_inspector")
    for name in fi.ALL_FORMATS:
        info = registry.lookup(name)
        if name == "gpt":  # a partition table, not an image format
            assert info is None
            continue
        assert info is not None and info.name == name, name


@pytest.mark.parametrize("name", registry.names(writable=True))
def test_create_options_are_accepted_by_qemu_img(name: str, tmp_path: pathlib.Path) -> None:
    info = registry.get(name)
    assert info.qemu is not None
    size = 10 * MiB + 3 * 512  # not a CHS-friendly size
    # create_options always go with the others (as convert/qemuimg.py gives them)
    for extra in ((), info.preallocate_options, info.compress_options):
        if extra is None:
            continue
        opts = (*info.create_options, *extra)
        out = tmp_path / f"x-{len(opts)}.img"
        argv = ["qemu-img", "create", "-q", "-f", info.qemu]
        if opts:
            argv += ["-o", ",".join(opts)]
        run([*argv, str(out), str(size)], timeout=120)
        got = _info(out, info.qemu)["virtual-size"]
        assert got == size, (name, opts, got)
        out.unlink()


def test_force_size_is_why_a_vhd_keeps_its_size(tmp_path: pathlib.Path) -> None:
    size = 10 * MiB + 3 * 512
    plain = tmp_path / "plain.vhd"
    run(["qemu-img", "create", "-q", "-f", "vpc", str(plain), str(size)], timeout=60)
    assert _info(plain, "vpc")["virtual-size"] != size  # CHS rounding without force_size
    assert "force_size=on" in registry.get("vhd").create_options
