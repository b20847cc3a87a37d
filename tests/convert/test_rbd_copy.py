"""diskkit's own copy into a new RBD image (diskkit/convert/rbdcopy.py), on the real
single-node test cluster.

Ground truth is outside diskkit: ``qemu-img compare`` of the source against the image,
``rbd diff`` for what was written, and ``qemu-img map`` for how qemu reads the source. The
sources are made by qemu-img and qemu-io in the shapes that exercise the copy: data ending
inside a 4 MiB piece, a piece holding only zeros written as data, zero clusters, a
subcluster-allocated (extended L2) qcow2, a size that is not a whole number of pieces, a
sparse raw file. Sources diskkit does not copy itself (compressed clusters) go to qemu-img.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from diskkit.convert import Request, convert, rbdcopy
from diskkit.disk import open_in_process
from diskkit.runner import run
from tests.helpers import qemu_img

if not (pathlib.Path(__file__).parent.parent / "fixtures" / "ceph.py").exists():
    pytest.skip("the Ceph test cluster fixture is not there", allow_module_level=True)

pytestmark = pytest.mark.slow

MiB = 1 << 20
#: 22 MiB + 3 KiB: five whole pieces and a short last one.
SIZE = 22 * MiB + 3072
#: qemu-io commands writing the source (offsets chosen across the 4 MiB grid).
WRITES = ["write -P 0x11 0 1M",              # piece 0: data, then zeros (object ends early)
          "write -P 0x22 4M 4M",             # piece 1: whole
          "write -z 9M 1M",                  # piece 2: a zero cluster only
          "write -P 0x00 13M 64k",           # piece 3: zeros written as data, then data
          "write -P 0x33 14M 4k",
          f"write -P 0x44 {20 * MiB} {SIZE - 20 * MiB}"]  # the short last piece, to the end


def _spec(cluster, name: str) -> str:
    return f"rbd:{cluster.pool}/{name}:conf={cluster.conf}"


def _qcow2(path: pathlib.Path, *opts: str) -> pathlib.Path:
    args = ["create", "-f", "qcow2"] + (["-o", ",".join(opts)] if opts else [])
    qemu_img(*args, path, str(SIZE))
    for cmd in WRITES:
        run(["qemu-io", "-f", "qcow2", "-c", cmd, str(path)], timeout=60)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("rbd-copy")
    out = {"qcow2": _qcow2(d / "plain.qcow2"),
           "qcow2-extended-l2": _qcow2(d / "ext.qcow2", "extended_l2=on", "cluster_size=128k"),
           "qcow2-4k-clusters": _qcow2(d / "small.qcow2", "cluster_size=4096")}
    raw = d / "sparse.raw"
    qemu_img("convert", "-f", "qcow2", "-O", "raw", out["qcow2"], raw)
    out["raw"] = raw
    comp = d / "compressed.qcow2"
    qemu_img("convert", "-c", "-f", "qcow2", "-O", "qcow2", out["qcow2"], comp)
    out["qcow2-compressed"] = comp
    return out


def _compare(cluster, src: pathlib.Path, fmt: str, name: str) -> str:
    r = run(["qemu-img", "compare", "-f", fmt, "-F", "raw", str(src), _spec(cluster, name)],
            timeout=120, check=False, env=cluster.env)
    return (r.stdout + r.stderr).strip().splitlines()[-1]


def _written(cluster, name: str) -> list[tuple[int, int]]:
    """(offset, length) of what ``rbd diff`` lists as written in the image."""
    doc = json.loads(cluster.rbd("diff", "--format", "json", f"{cluster.pool}/{name}"))
    return [(int(e["offset"]), int(e["length"])) for e in doc if e.get("exists") == "true"]


@pytest.mark.parametrize("kind", ["qcow2", "qcow2-extended-l2", "qcow2-4k-clusters", "raw"])
@pytest.mark.parametrize("verify", [True, False])
def test_copied_in_process_is_what_qemu_reads(ceph_cluster, sources, kind: str,
                                              verify: bool) -> None:
    c = ceph_cluster
    name = f"copy-{kind}-{int(verify)}"
    fmt = "raw" if kind == "raw" else "qcow2"
    # An extended-L2 qcow2 is flagged (Glance refuses it): converted here all the same.
    res = convert(Request(str(sources[kind]), _spec(c, name), "raw", verify=verify,
                          allow_unsafe=kind == "qcow2-extended-l2"), quiet=True)
    assert res.copied_by == "diskkit" and res.command == []
    assert res.verified is (True if verify else None)
    assert res.verify_method == ("digest" if verify else None)
    assert _compare(c, sources[kind], fmt, name) == "Images are identical."
    info = json.loads(c.rbd("info", "--format", "json", f"{c.pool}/{name}"))
    assert info["size"] == SIZE
    # Nothing is written where the source holds no data (pieces 2's zero cluster, the gap
    # after piece 1): the image stays thin where qemu-img's copy would.
    for off, n in _written(c, name):
        assert not (8 * MiB <= off < 12 * MiB), (off, n)
    c.rbd("rm", "--no-progress", f"{c.pool}/{name}")


def test_compressed_clusters_are_copied_by_qemu_img(ceph_cluster, sources) -> None:
    """qemu-img map gives no file offset for a compressed cluster, so diskkit's reading of it
    could not be checked against qemu's: qemu-img copies such a source."""
    c = ceph_cluster
    src = sources["qcow2-compressed"]
    res = convert(Request(str(src), _spec(c, "copy-compressed"), "raw"), quiet=True)
    assert res.copied_by == "qemu-img" and res.verified
    assert _compare(c, src, "qcow2", "copy-compressed") == "Images are identical."
    c.rbd("rm", "--no-progress", f"{c.pool}/copy-compressed")


@pytest.mark.parametrize("kind", ["qcow2", "qcow2-extended-l2", "qcow2-4k-clusters"])
def test_mapping_check_against_qemu_img_map(sources, kind: str) -> None:
    """diskkit's reading of the source agrees with ``qemu-img map``'s; a reading that puts
    any guest range elsewhere in the file, or reads data as zeros, is caught at its offset."""
    path = str(sources[kind])
    reader = open_in_process(path, "qcow2")
    assert reader is not None
    with reader:
        ours = list(reader.host_runs())  # type: ignore[attr-defined]
    assert rbdcopy.check_mapping(path, lambda: iter(ours), 60) == \
        (True, "the source's mapping is qemu's")
    data = [k for k, (_g, _n, host) in enumerate(ours) if host is not None]
    assert len(data) >= 4
    for k in data:
        g, n, host = ours[k]
        assert host is not None
        for wrong in ((g, n, host + 512), (g, n, None)):
            bad = [*ours[:k], wrong, *ours[k + 1:]]
            agree, message = rbdcopy.check_mapping(path, lambda b=bad: iter(b), 60)
            assert not agree and f"from offset {g};" in message, (wrong, message)
    # A compressed cluster has no place in the file to compare: refused, not guessed.
    comp = open_in_process(str(sources["qcow2-compressed"]), "qcow2")
    assert comp is not None
    with comp, pytest.raises(Exception, match="compressed"):
        list(comp.host_runs())  # type: ignore[attr-defined]


def test_copier_qemu_img_on_the_command_line(ceph_cluster, sources) -> None:
    """``--copier qemu-img``: qemu-img copies a source diskkit would copy itself; the JSON
    says so and the image is the source's. An unknown copier is a usage error."""
    from tests.convert.conftest import diskkit

    c = ceph_cluster
    src = sources["qcow2"]
    r = diskkit("convert", src, _spec(c, "copy-by-qemu"), "-O", "raw", "--copier", "qemu-img",
                "--json", env=c.env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["copied_by"] == "qemu-img" and doc["command"][:2] == ["qemu-img", "convert"]
    assert doc["verified"] is True
    assert _compare(c, src, "qcow2", "copy-by-qemu") == "Images are identical."
    c.rbd("rm", "--no-progress", f"{c.pool}/copy-by-qemu")
    r = diskkit("convert", src, _spec(c, "copy-x"), "-O", "raw", "--copier", "x", env=c.env)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    with pytest.raises(Exception, match="copier 'x'"):
        convert(Request(str(src), _spec(c, "copy-x"), "raw", copier="x"), quiet=True)
