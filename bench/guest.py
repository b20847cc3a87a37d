"""Guest OS inspection benchmark: ``diskkit info --json IMG`` (the whole command, start-up
included) against ``virt-inspector -a IMG`` (libguestfs appliance, TCG), and
``diskkit cat IMG /etc/os-release`` against ``virt-cat -a IMG /etc/os-release``, on the
Debian 12 images (sample_images/recipes/debian.py: built or taken from the cache), in one run.

    .venv/bin/python -m bench.guest [--images base xfs lvm] [--reps 5] [--write-docs]

Per image: wall time of each command (diskkit: median of ``--reps`` runs; libguestfs: one run
each, they take about a minute), the ratio, and whether both report the same distribution,
version, hostname, kernels and mount points (from diskkit's ``os`` section and
virt-inspector's XML), and the same /etc/os-release bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any

from bench._docs import replace_section
from diskkit.runner import run

ROOT = pathlib.Path(__file__).resolve().parent.parent
DISKKIT = [str(ROOT / ".venv" / "bin" / "diskkit")]
HEADING = "## Guest OS inspection"
LIBGUESTFS_ENV = {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}


def _timed(argv: list[str], env: dict[str, str] | None = None,
           timeout: float = 900) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = run(argv, timeout=timeout, env=env, check=False)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{argv[0]} {argv[1]} failed (exit {res.returncode}): "
                         f"{res.stderr.strip()[-300:]}")
    return seconds, res.stdout


def inspector_facts(xml: str) -> dict[str, Any]:
    """distro, version, hostname, kernels, mount points from virt-inspector's XML."""
    root = ET.fromstring(xml)
    os_ = root.find("operatingsystem")
    if os_ is None:
        return {}
    version = f"{os_.findtext('major_version')}"
    minor = os_.findtext("minor_version")
    if minor and minor != "0":
        version += f".{minor}"
    kernels = sorted(a.findtext("name", "")[len("linux-image-"):]
                     for a in os_.iter("application")
                     if a.findtext("name", "").startswith("linux-image-")
                     and a.findtext("name", "")[len("linux-image-"):][:1].isdigit())
    return {"distro": os_.findtext("distro"), "version": version,
            "hostname": os_.findtext("hostname"), "kernels": kernels,
            "mountpoints": sorted(m.text or "" for m in os_.iter("mountpoint"))}


def diskkit_facts(info: dict[str, Any]) -> dict[str, Any]:
    """The same facts from ``diskkit info --json``'s ``os`` section (its first root)."""
    roots = (info.get("os") or {}).get("roots") or []
    if not roots:
        return {}
    r = roots[0]
    version = None
    if r.get("major_version") is not None:
        version = str(r["major_version"])
        if r.get("minor_version") not in (None, 0, "0"):
            version += f".{r['minor_version']}"
    mounts = r.get("mountpoints")
    if isinstance(mounts, dict):
        mountpoints = sorted(mounts)
    else:
        mountpoints = sorted({e.get("mountpoint") for e in r.get("fstab") or []
                              if e.get("mountpoint", "none").startswith("/")})
    return {"distro": r.get("distro"), "version": version, "hostname": r.get("hostname"),
            "kernels": sorted(k.get("version") for k in r.get("kernels") or []),
            "mountpoints": mountpoints}


def bench_image(name: str, path: pathlib.Path, reps: int) -> dict[str, Any]:
    """Both tools on one image."""
    info_times, cat_times = [], []
    info_out = cat_out = ""
    for _ in range(reps):
        s, info_out = _timed([*DISKKIT, "info", "--json", str(path)], timeout=300)
        info_times.append(s)
        s, cat_out = _timed([*DISKKIT, "cat", str(path), "/etc/os-release"], timeout=300)
        cat_times.append(s)
    vi_s, vi_xml = _timed(["virt-inspector", "--format=qcow2", "-a", str(path)],
                          env=LIBGUESTFS_ENV)
    vc_s, vc_out = _timed(["virt-cat", "--format=qcow2", "-a", str(path), "/etc/os-release"],
                          env=LIBGUESTFS_ENV)
    ours, theirs = diskkit_facts(json.loads(info_out)), inspector_facts(vi_xml)
    agree = {k: ours.get(k) == theirs.get(k) for k in theirs}
    return {"image": name, "diskkit_info_s": statistics.median(info_times),
            "virt_inspector_s": vi_s, "diskkit_cat_s": statistics.median(cat_times),
            "virt_cat_s": vc_s, "cat_same_bytes": cat_out == vc_out,
            "facts_diskkit": ours, "facts_virt_inspector": theirs, "agree": agree}


def render(rows: list[dict[str, Any]], reps: int, load: tuple[float, float] = (0.0, 0.0),
           ) -> str:
    """The docs section."""
    lines = [HEADING, "",
             "`python -m bench.guest` on the Debian 12 images built by "
             "sample_images/recipes/debian.py (qcow2, 2 GiB). Wall time of the whole command "
             f"(process start-up included): diskkit median of {reps} runs, virt-inspector and "
             "virt-cat one run each (libguestfs appliance, LIBGUESTFS_BACKEND=direct, TCG: "
             "KVM does not run Linux guests on these machines). 2 shared cores.", "",
             "| image | diskkit info --json | virt-inspector | ratio | diskkit cat | virt-cat "
             "| ratio | same os-release | facts equal (distro, version, hostname, kernels, "
             "mount points) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        agree = r["agree"]
        facts = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in agree.items()) or "-"
        lines.append(
            f"| {r['image']} | {r['diskkit_info_s']:.2f} s | {r['virt_inspector_s']:.1f} s "
            f"| {r['virt_inspector_s'] / r['diskkit_info_s']:.0f}x "
            f"| {r['diskkit_cat_s']:.2f} s | {r['virt_cat_s']:.1f} s "
            f"| {r['virt_cat_s'] / r['diskkit_cat_s']:.0f}x "
            f"| {'yes' if r['cat_same_bytes'] else 'NO'} | {facts} |")
    lines += ["", f"Host load average (1 min) at the start and the end of the run: "
              f"{load[0]:.1f}, {load[1]:.1f} (2 cores shared by every test run on the machine: "
              "both sides slow down with it).", "",
              "Targets (issue 12): info at least 100x faster than virt-inspector with the "
              "same facts; cat at least 20x faster than virt-cat."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print JSON; with --write-docs update docs/benchmarks.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=["base", "xfs", "lvm"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)
    from sample_images.recipes.debian import build_image

    load0 = os.getloadavg()[0]
    rows = [bench_image(name, build_image(name), args.reps) for name in args.images]
    load = (load0, os.getloadavg()[0])
    json.dump(rows, sys.stdout, indent=1)
    print()
    text = render(rows, args.reps, load)
    print(text)
    if args.write_docs:
        replace_section(HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
