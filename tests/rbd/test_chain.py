"""Clone chains: parents as ``rbd info`` reports them, each parent's format checked, and the
findings that say why a volume cloned from qcow2 bytes will not boot."""

from __future__ import annotations

import json

import pytest

from diskkit.formats.detect import detect
from diskkit.pipeline import inspect_target
from diskkit.rbd.chain import clone_chain, rbd_facts
from diskkit.readers.rbd import RbdReader
from diskkit.runner import run
from tests.rbd.conftest import RbdImages


def _rbd_parent(imgs: RbdImages, name: str) -> str | None:
    p = imgs.rbd_json("info", f"{imgs.pool}/{name}").get("parent")
    if not p:
        return None
    ns = f"{p['pool_namespace']}/" if p.get("pool_namespace") else ""
    return f"{p['pool']}/{ns}{p['image']}@{p['snapshot']}"


def _qemu_format(imgs: RbdImages, spec: str) -> str:
    """qemu's own format probe over its rbd driver (independent of our detection)."""
    out = run(["qemu-img", "info", "--output=json", f"rbd:{spec}:conf={imgs.conf}"],
              timeout=60).stdout
    return json.loads(out)["format"]


@pytest.mark.parametrize("name", ["librbd-raw", "vol-from-qcow2", "vol-from-raw", "vol-deep"])
def test_chain_matches_rbd_info(rbd_images: RbdImages, name: str) -> None:
    with RbdReader(rbd_images.uri(name)) as r:
        chain = clone_chain(r)
    # Walk the chain with the rbd CLI and qemu-img, link by link.
    expected = []
    cur = name
    while (parent := _rbd_parent(rbd_images, cur)) is not None:
        expected.append((parent, _qemu_format(rbd_images, parent)))
        cur = parent.split("/", 1)[1].split("@")[0]
    assert [(link.parent.spec, link.format) for link in chain] == expected
    assert all(link.error is None for link in chain)


def test_deep_chain_has_two_links(rbd_images: RbdImages) -> None:
    with RbdReader(rbd_images.uri("vol-deep")) as r:
        chain = clone_chain(r)
    pool = rbd_images.pool
    assert [link.parent.spec for link in chain] == [f"{pool}/vol-from-raw@s2",
                                                     f"{pool}/librbd-raw@snap"]


def test_volume_cloned_from_qcow2_bytes_is_flagged(rbd_images: RbdImages) -> None:
    with RbdReader(rbd_images.uri("vol-from-qcow2")) as r:
        det = detect(r)
        section, findings = rbd_facts(r, det)
    assert det.format == _qemu_format(rbd_images, f"{rbd_images.pool}/vol-from-qcow2")
    codes = [f.code for f in findings]
    assert codes == ["rbd-not-raw", "rbd-parent-not-raw"]
    assert all(f.blocking and f.fix for f in findings)
    assert findings[0].evidence[0].data[:4] == b"QFI\xfb"
    assert section["parent"] == f"{rbd_images.pool}/qcow2-bytes@snap"
    assert section["parents"][0]["format"] == "qcow2"


def test_raw_clone_has_no_chain_findings(rbd_images: RbdImages) -> None:
    report = inspect_target(rbd_images.uri("vol-deep"), sections=False)
    assert not [f for f in report.findings if f.code.startswith("rbd-")]
    assert report.sections["rbd"]["parent"] == f"{rbd_images.pool}/vol-from-raw@s2"
    assert len(report.sections["rbd"]["parents"]) == 2

