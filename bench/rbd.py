"""Ceph RBD benchmark, against a real single-node cluster this script starts (and stops):

1. ``diagnose`` (in process, median of ``--reps`` runs, and ``diskkit diagnose`` as a process)
   of a blank 1 TiB volume and of a 1 TiB volume with 10 MiB written, with the bytes diskkit
   read from the cluster (counted around ``RbdReader._read``).
2. A scan of ``--images`` images (default 200: raw disks with an MBR, qcow2 bytes stored as
   they are, clones of both), by ``diskkit scan rbd:POOL --json`` (one process, ``--jobs``
   threads) against the same answers (size, parent, format) obtained the usual way, one image
   after the other: ``rbd info --format json`` + ``rbd export`` to a local file +
   ``qemu-img info`` of that file. The answers are compared image by image.

    .venv/bin/python -m bench.rbd [--images 200] [--reps 5] [--jobs 4] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time
from typing import Any

from bench._docs import replace_section
from diskkit.diagnose import diagnose
from diskkit.readers import rbd as rbd_reader
from diskkit.runner import run
from tests.fixtures.ceph import CephCluster, running_cluster

ROOT = pathlib.Path(__file__).resolve().parent.parent
DISKKIT = str(ROOT / ".venv" / "bin" / "diskkit")
HEADING = "## Ceph RBD"
MiB = 1 << 20


class _Counter:
    """Counts the bytes every RbdReader reads from the cluster."""

    def __init__(self) -> None:
        self.bytes = 0
        self._orig = rbd_reader.RbdReader._read

    def __enter__(self) -> _Counter:
        counter = self

        def counting(reader: Any, offset: int, length: int) -> bytes:
            counter.bytes += length
            return counter._orig(reader, offset, length)

        rbd_reader.RbdReader._read = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        rbd_reader.RbdReader._read = self._orig  # type: ignore[method-assign]


def _mbr_sector() -> bytes:
    """A DOS partition table with one bootable Linux partition (made by sfdisk)."""
    with tempfile.NamedTemporaryFile() as f:
        f.truncate(64 * MiB)
        run(["sfdisk", "--no-reread", "--no-tell-kernel", f.name],
            input="label: dos\nstart=2048, type=83, bootable\n", timeout=30)
        return f.read(512)


def bench_diagnose(c: CephCluster, reps: int) -> list[dict[str, Any]]:
    """Diagnose a blank 1 TiB volume and one with 10 MiB written."""
    import rados
    import rbd

    c.rbd("create", "--size", "1T", "rbd/blank-1t")
    c.rbd("create", "--size", "1T", "rbd/written-1t")
    with rados.Rados(conffile=c.conf) as cluster, cluster.open_ioctx("rbd") as io, \
            rbd.Image(io, "written-1t") as img:
        img.write(_mbr_sector() + os.urandom(10 * MiB - 512), 0)
    rows = []
    for name in ("blank-1t", "written-1t"):
        uri = f"rbd:rbd/{name}:conf={c.conf}"
        times = []
        for _ in range(reps):
            with _Counter() as counter:
                t = time.perf_counter()
                d = diagnose(uri)
                times.append(time.perf_counter() - t)
        t = time.perf_counter()
        run([DISKKIT, "diagnose", uri], check=False, timeout=300)
        cli = time.perf_counter() - t
        rows.append({"image": name, "seconds": statistics.median(times), "cli": cli,
                     "read": counter.bytes, "will_boot": d.will_boot, "reason": d.reason})
    return rows


def make_pool(c: CephCluster, n: int) -> None:
    """``n`` images in pool "scan": 80% raw (MBR + 1 MiB), 10% qcow2 bytes, 10% clones."""
    import rados
    import rbd

    c.ceph("osd", "pool", "create", "scan", "32", "32")
    c.ceph("osd", "pool", "application", "enable", "scan", "rbd")
    mbr = _mbr_sector()
    with tempfile.TemporaryDirectory() as d:
        q = pathlib.Path(d) / "g.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", str(q), "1G"], timeout=30)
        qbytes = q.read_bytes()
    with rados.Rados(conffile=c.conf) as cluster, cluster.open_ioctx("scan") as io:
        r = rbd.RBD()
        for i in range(n):
            name = f"img-{i:03d}"
            kind = i % 10
            if kind == 9 and i >= 10:  # a clone of an earlier image's snapshot
                # Alternately a clone of a qcow2-bytes image and of a raw one.
                parent = f"img-{i - 1:03d}" if (i // 10) % 2 else f"img-{i - 9:03d}"
                with rbd.Image(io, parent) as p:
                    p.create_snap("snap")
                    p.protect_snap("snap")
                r.clone(io, parent, "snap", io, name)
                continue
            if kind == 8:  # qcow2 bytes in a raw image
                r.create(io, name, len(qbytes))
                with rbd.Image(io, name) as img:
                    img.write(qbytes, 0)
                continue
            r.create(io, name, 256 * MiB)
            with rbd.Image(io, name) as img:
                img.write(mbr + os.urandom(MiB - 512), 0)


def bench_scan(c: CephCluster, jobs: int) -> dict[str, Any]:
    """diskkit scan against rbd info + rbd export + qemu-img info, per image."""
    t = time.perf_counter()
    res = run([DISKKIT, "scan", f"rbd:scan:conf={c.conf}", "--json", "--jobs", str(jobs)],
              check=False, timeout=1800)
    dk_seconds = time.perf_counter() - t
    out = json.loads(res.stdout)
    dk = {row["image"]: row for row in out["rows"]}
    names = json.loads(c.rbd("ls", "scan", "--format", "json"))
    base: dict[str, dict[str, Any]] = {}
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        for name in names:
            info = json.loads(c.rbd("info", f"scan/{name}", "--format", "json"))
            path = os.path.join(d, name)
            c.rbd("export", "--no-progress", f"scan/{name}", path, timeout=600)
            q = json.loads(run(["qemu-img", "info", "--output=json", path],
                               timeout=60).stdout)
            p = info.get("parent")
            base[name] = {"size": info["size"], "format": q["format"],
                          "parent": f"{p['pool']}/{p['image']}@{p['snapshot']}" if p else None}
            os.unlink(path)
    base_seconds = time.perf_counter() - t
    agree = sum(1 for n in names if n in dk and (dk[n]["size"], dk[n]["format"], dk[n]["parent"])
                == (base[n]["size"], base[n]["format"], base[n]["parent"]))
    return {"images": len(names), "diskkit": dk_seconds, "baseline": base_seconds,
            "agree": agree, "not_raw": len(out["not_raw"]), "jobs": jobs,
            "baseline_not_raw": sum(1 for n in names if base[n]["format"] != "raw")}


def write_docs(diag: list[dict[str, Any]], scan: dict[str, Any], command: str) -> None:
    """Replace (or append) the "## Ceph RBD" section of docs/benchmarks.md."""
    lines = [
        HEADING, "",
        f"Reproduce: `{command}` (measured {time.strftime('%Y-%m-%d')}, Debian 12 VM, 2 cores "
        "shared with other jobs; the script starts its own single-node cluster: one monitor, "
        "one memstore OSD, on loopback).", "",
        "Diagnosis of 1 TiB RBD volumes read in place through librbd (in process: median of "
        "the runs; CLI: one `diskkit diagnose` process, start-up and connection included; "
        "bytes read from the cluster counted around `RbdReader._read`). Most of the blank "
        "volume's time is librbd walking the object map of its 262,144 objects "
        "(`diff_iterate`); the bytes read are detection's 64 KiB head and the 512-byte tail:",
        "",
        "| volume | diagnose (in process) | `diskkit diagnose` | bytes read | verdict |",
        "|---|---:|---:|---:|---|"]
    for r in diag:
        verdict = {True: "will boot", False: "will not boot", None: "cannot tell"}[
            r["will_boot"]]
        lines.append(f"| {r['image']} | {r['seconds'] * 1e3:.1f} ms | {r['cli']:.2f} s | "
                     f"{r['read']} | {verdict}: {r['reason']} |")
    ratio = scan["baseline"] / scan["diskkit"]
    lines += [
        "", f"Scan of a pool of {scan['images']} images (raw 256 MiB disks with 1 MiB "
        "written, 1 GiB qcow2 images stored as bytes, clones of both): `diskkit scan "
        f"rbd:POOL --json --jobs {scan['jobs']}` (one process; size, format, parent, safety "
        "and bootability of every image) against the same answers obtained one image after "
        "the other with `rbd info --format json` + `rbd export` + `qemu-img info` (no "
        "bootability):", "",
        "| | seconds | per image |", "|---|---:|---:|",
        f"| diskkit scan | {scan['diskkit']:.1f} | {scan['diskkit'] / scan['images'] * 1e3:.0f}"
        " ms |",
        f"| rbd export + qemu-img info | {scan['baseline']:.1f} | "
        f"{scan['baseline'] / scan['images'] * 1e3:.0f} ms |",
        f"| **ratio** | **{ratio:.1f}x** | |", "",
        f"Answers (size, format, parent) equal for {scan['agree']} of {scan['images']} "
        f"images; images flagged not raw: diskkit {scan['not_raw']}, qemu-img "
        f"{scan['baseline_not_raw']} on the images' own bytes (diskkit also flags clones "
        "whose parent holds qcow2).", ""]
    replace_section(HEADING, "\n".join(lines) + "\n")


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    with running_cluster() as c:
        os.environ["CEPH_CONF"] = c.conf
        diag = bench_diagnose(c, args.reps)
        for r in diag:
            print(f"diagnose {r['image']}: {r['seconds'] * 1e3:.1f} ms in process, "
                  f"{r['cli']:.2f} s CLI, {r['read']} bytes read; {r['reason']}", flush=True)
        t = time.perf_counter()
        make_pool(c, args.images)
        print(f"made {args.images} images in {time.perf_counter() - t:.1f} s", flush=True)
        scan = bench_scan(c, args.jobs)
        print(json.dumps(scan, indent=2), flush=True)
    if args.write_docs:
        extra = "" if args.images == 200 else f" --images {args.images}"
        write_docs(diag, scan, f".venv/bin/python -m bench.rbd{extra} --write-docs")


if __name__ == "__main__":
    main()
