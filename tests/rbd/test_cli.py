"""Every command that takes a TARGET, on rbd: URIs, run as the user runs it (a subprocess of
.venv/bin/diskkit), and ``diskkit scan`` over a whole pool; answers checked against
``qemu-img info`` over qemu's rbd driver and ``rbd info``."""

from __future__ import annotations

import json

import pytest

from diskkit.runner import Result, run
from tests.cli.schema import validate
from tests.rbd.conftest import BROKEN, DISKKIT, RbdImages


def diskkit(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Result:
    """Run the CLI; never raises on a non-zero exit."""
    return run([DISKKIT, *args], check=False, timeout=timeout, env=env)


def _qemu(imgs: RbdImages, name: str) -> dict:
    return json.loads(run(["qemu-img", "info", "--output=json",
                           f"rbd:{imgs.pool}/{name}:conf={imgs.conf}"], timeout=60).stdout)


@pytest.mark.parametrize("name", ["librbd-raw", "qemu-raw", "qcow2-bytes", "vol-from-qcow2",
                                  "blank-1t"])
def test_info_json_on_rbd(rbd_images: RbdImages, name: str) -> None:
    r = diskkit("info", rbd_images.uri(name), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    q = _qemu(rbd_images, name)
    assert out["format"] == q["format"]
    assert out["virtual_size"] == q["virtual-size"]
    info = rbd_images.rbd_json("info", f"{rbd_images.pool}/{name}")
    assert out["file_size"] == info["size"]
    assert out["rbd"]["object_size"] == info["object_size"]
    assert sorted(out["rbd"]["features"]) == sorted(info["features"])
    parent = info.get("parent")
    expect = f"{parent['pool']}/{parent['image']}@{parent['snapshot']}" if parent else None
    assert out["rbd"]["parent"] == expect


def test_info_human_shows_parent(rbd_images: RbdImages) -> None:
    r = diskkit("info", rbd_images.uri("vol-from-qcow2"))
    assert r.returncode == 0, r.stderr
    assert f"parent:        {rbd_images.pool}/qcow2-bytes@snap (qcow2" in r.stdout
    assert "rbd-parent-not-raw" in r.stdout


@pytest.mark.parametrize(("name", "rc", "codes"), [
    ("librbd-raw", 0, set()),
    ("vol-deep", 0, set()),
    ("qcow2-bytes", 1, {"rbd-not-raw"}),
    ("vol-from-qcow2", 1, {"rbd-not-raw", "rbd-parent-not-raw"}),
])
def test_check_on_rbd(rbd_images: RbdImages, name: str, rc: int, codes: set[str]) -> None:
    r = diskkit("check", rbd_images.uri(name), "--json")
    assert r.returncode == rc, r.stderr
    out = json.loads(r.stdout)
    blocking = {f["code"] for f in out["findings"] if f["severity"] in ("error", "critical")}
    assert blocking == codes


def test_check_uses_ceph_conf_from_the_environment(rbd_images: RbdImages) -> None:
    r = diskkit("check", f"rbd:{rbd_images.pool}/qemu-raw", env={"CEPH_CONF": rbd_images.conf})
    assert r.returncode == 0, r.stderr + r.stdout


@pytest.mark.parametrize(("uri", "code"), [
    ("rbd:{pool}/no-such-image:conf={conf}", "rbd-image-not-found"),
    ("rbd:{pool}/librbd-raw@nosnap:conf={conf}", "rbd-snapshot-not-found"),
    ("rbd:no-such-pool/x:conf={conf}", "rbd-pool-not-found"),
    ("rbd:{pool}/x:conf=/nonexistent/ceph.conf", "ceph-conf-missing"),
    ("rbd:{pool}/x:bogus=1", "bad-uri"),
    ("rbd:{pool}:conf={conf}", "bad-uri"),
    ("rbd:/x", "bad-uri"),
])
def test_bad_uris_and_missing_images_one_line(rbd_images: RbdImages, uri: str, code: str
                                               ) -> None:
    command = "info" if code == "rbd-image-not-found" else "check"
    r = diskkit(command, uri.format(pool=rbd_images.pool, conf=rbd_images.conf))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(f"diskkit: error[{code}]: ")
    assert len(lines) <= 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize(("name", "will_boot"), [
    ("librbd-raw", False),  # an MBR table with no boot code
    ("vol-from-qcow2", False),
    ("blank-1t", False),
])
def test_diagnose_on_rbd(rbd_images: RbdImages, name: str, will_boot: bool) -> None:
    r = diskkit("diagnose", rbd_images.uri(name), "--json")
    out = json.loads(r.stdout)
    assert out["open_format"] == "raw"  # an RBD volume is attached as raw
    assert out["format"] == _qemu(rbd_images, name)["format"]
    assert out["will_boot"] is will_boot
    assert r.returncode == 1


def test_boot_test_reads_rbd_directly(rbd_images: RbdImages) -> None:
    """qemu opens the volume through its rbd driver; SeaBIOS is the judge."""
    r = diskkit("boot-test", rbd_images.uri("vol-from-qcow2"), "--json", "--timeout", "30")
    out = json.loads(r.stdout)
    assert out["booted"] is False, out
    assert "No bootable device" in json.dumps(out)


def _scan(imgs: RbdImages, *args: str) -> tuple[int, dict]:
    r = diskkit("scan", f"rbd:{imgs.pool}:conf={imgs.conf}", "--json", *args)
    assert r.returncode in (0, 1) and r.stdout, (r.returncode, r.stderr, r.stdout[-2000:])
    return r.returncode, validate("scan", r.stdout)  # docs/schemas/scan.schema.json


def test_scan_finds_every_non_raw_image(rbd_images: RbdImages) -> None:
    rc, out = _scan(rbd_images, "--jobs", "4")
    names = sorted(json.loads(rbd_images.cluster.rbd("ls", rbd_images.pool, "--format",
                                                     "json")))
    assert [row["image"] for row in out["rows"]] == names
    # qemu's probe decides what each image's bytes are.
    not_raw = sorted(n for n in names if _qemu(rbd_images, n)["format"] != "raw")
    assert not_raw == ["qcow2-bytes", "vol-from-qcow2"]
    assert sorted(out["not_raw"]) == not_raw
    assert rc == 1 and sorted(out["flagged"]) == not_raw
    rows = {row["image"]: row for row in out["rows"]}
    assert rows["vol-from-qcow2"]["parent"] == f"{rbd_images.pool}/qcow2-bytes@snap"
    assert rows["vol-from-qcow2"]["parent_format"] == "qcow2"
    assert rows["blank-1t"]["virtual_size"] == 1 << 40 and rows["blank-1t"]["actual_size"] == 0
    assert rows["blank-1t"]["will_boot"] is False
    for n in names:
        assert rows[n]["virtual_size"] == rbd_images.rbd_json("info",
                                                      f"{rbd_images.pool}/{n}")["size"]


def test_scan_jobs_do_not_change_the_answer(rbd_images: RbdImages) -> None:
    _, one = _scan(rbd_images, "--jobs", "1")
    _, many = _scan(rbd_images, "--jobs", "8")
    for out in (one, many):
        out.pop("seconds")
    assert one == many


def test_scan_namespace_and_human_output(rbd_images: RbdImages) -> None:
    rc, out = _scan(rbd_images, "--namespace", "tenant1")
    assert rc == 0 and [r["image"] for r in out["rows"]] == ["ns-img"]
    r = diskkit("scan", f"rbd:{rbd_images.pool}:conf={rbd_images.conf}")
    assert r.returncode == 1
    assert "whose bytes are not raw" in r.stdout and "qcow2-bytes: holds qcow2" in r.stdout


@pytest.mark.parametrize("arg", ["rbd:{pool}/librbd-raw", "/tmp/x.img"])
def test_scan_takes_a_pool(rbd_images: RbdImages, arg: str) -> None:
    r = diskkit("scan", arg.format(pool=rbd_images.pool))
    assert r.returncode == 2 and r.stderr.startswith("diskkit: error[bad-uri]")


def test_orphan_clone_is_one_line_and_flagged_by_scan(rbd_images: RbdImages) -> None:
    r = diskkit("check", f"rbd:{BROKEN}/orphan:conf={rbd_images.conf}")
    assert r.returncode == 2
    assert r.stderr.startswith("diskkit: error[rbd-parent-missing]: ")
    assert len(r.stderr.strip().splitlines()) == 2  # the error and its hint, no librbd log
    r = diskkit("scan", f"rbd:{BROKEN}:conf={rbd_images.conf}", "--json")
    rc, out = r.returncode, json.loads(r.stdout)
    assert rc == 1 and out["flagged"] == ["orphan"]
    assert out["rows"][0]["error"].startswith("rbd-parent-missing")
