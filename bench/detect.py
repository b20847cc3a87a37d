"""Format detection benchmark: diskkit's detect() in one process over a corpus, against
``qemu-img info -f FMT`` per image and against the oslo.utils format inspector (installed
into bench/out/oslo-venv, the benchmark's own environment), same corpus, same run.

    .venv/bin/python -m bench.detect [--reps 20] [--write-docs]

Per image: median seconds per detection (diskkit, oslo in one process; qemu-img one process
per image), bytes diskkit read, peak Python memory of one detection (tracemalloc), and the
format and virtual size each tool reports. 1 TiB sparse images sit next to 1 MiB ones.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time
import tracemalloc

from diskkit.formats.detect import detect
from diskkit.readers.raw import FileReader
from diskkit.runner import run

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "detect"
VENV = ROOT / "bench" / "out" / "oslo-venv"
DOCS = ROOT / "docs" / "benchmarks.md"
HEADING = "## Format detection"
QEMU_NAME = {"vhd": "vpc"}

_OSLO_SCRIPT = r"""
import json, statistics, sys, time, tracemalloc
from oslo_utils.imageutils import format_inspector as fi
reps = int(sys.argv[1]); out = {}
for path in sys.argv[2:]:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        try:
            i = fi.detect_file_format(path); fmt, vs = str(i), i.virtual_size
        except Exception as exc:
            fmt, vs = "error: " + type(exc).__name__, None
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    try:
        fi.detect_file_format(path)
    except Exception:
        pass
    peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    out[path] = {"seconds": statistics.median(times), "format": fmt, "virtual_size": vs,
                 "peak": peak}
print(json.dumps(out))
"""


def build_corpus() -> list[tuple[str, pathlib.Path, str]]:
    """(label, path, qemu format or None) for each image, built once."""
    OUT.mkdir(parents=True, exist_ok=True)
    cases = []
    for size, tag in ((1 << 20, "1MiB"), (1 << 40, "1TiB")):
        for fmt, ext, opts in (("raw", "raw", []), ("qcow2", "qcow2", []),
                               ("vmdk", "vmdk", ["-o", "subformat=streamOptimized"]),
                               ("vhdx", "vhdx", []), ("vdi", "vdi", []), ("qed", "qed", []),
                               ("vpc", "vhd", ["-o", "subformat=dynamic"])):
            if fmt == "vpc" and size > 2000 << 30:
                continue
            p = OUT / f"{tag}.{ext}"
            if not p.exists():
                run(["qemu-img", "create", "-q", "-f", fmt, *opts, p, str(size)], timeout=300)
            cases.append((f"{ext} {tag}", p, fmt))
    fixed = OUT / "64MiB-fixed.vhd"
    if not fixed.exists():
        run(["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=fixed", fixed, "64M"],
            timeout=120)
    cases.append(("vhd fixed 64MiB", fixed, "vpc"))
    iso = OUT / "small.iso"
    if not iso.exists():
        tree = OUT / "tree"
        tree.mkdir(exist_ok=True)
        (tree / "a.txt").write_text("x\n")
        run(["xorriso", "-as", "mkisofs", "-quiet", "-o", iso, tree], timeout=60)
    cases.append(("iso", iso, "raw"))
    return cases


def _diskkit(path: pathlib.Path, reps: int) -> dict:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        with FileReader(str(path)) as r:
            d = detect(r)
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    with FileReader(str(path)) as r:
        detect(r)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": statistics.median(times), "format": d.format,
            "virtual_size": d.virtual_size, "bytes_read": d.bytes_read, "peak": peak}


def _qemu(path: pathlib.Path, fmt: str, reps: int) -> dict:
    times, info = [], {}
    for _ in range(reps):
        t = time.perf_counter()
        info = json.loads(run(["qemu-img", "info", "-f", fmt, "--output=json", path],
                              timeout=60).stdout)
        times.append(time.perf_counter() - t)
    return {"seconds": statistics.median(times), "virtual_size": info.get("virtual-size")}


def _oslo(paths: list[pathlib.Path], reps: int) -> dict:
    py = VENV / "bin" / "python"
    if not py.exists():
        run(["/usr/bin/python3", "-m", "venv", VENV], timeout=120)
        run([VENV / "bin" / "pip", "install", "-q", "oslo.utils", "cryptography"], timeout=600)
    proc = subprocess.run([str(py), "-c", _OSLO_SCRIPT, str(reps), *map(str, paths)],
                          capture_output=True, text=True, timeout=1800, check=True)
    return json.loads(proc.stdout)


def measure(reps: int) -> list[dict]:
    """One row per image."""
    cases = build_corpus()
    oslo = _oslo([p for _, p, _ in cases], reps)
    rows = []
    for label, path, qfmt in cases:
        dk = _diskkit(path, reps)
        qm = _qemu(path, QEMU_NAME.get(dk["format"], qfmt), max(3, reps // 4))
        rows.append({"image": label, "diskkit": dk, "qemu": qm, "oslo": oslo[str(path)]})
    return rows


def write_docs(rows: list[dict], command: str) -> None:
    """Replace the "## Format detection" section of docs/benchmarks.md."""
    lines = [HEADING, "", f"Reproduce: `{command}` ({time.strftime('%Y-%m-%d')}, Debian 12 VM, "
             "2 cores). Medians; diskkit and oslo.utils 10.2.0 detect in one process, "
             "qemu-img runs once per image (`qemu-img info -f FMT`). Ratio = oslo / diskkit.",
             "", "| image | diskkit ms | oslo ms | qemu-img ms | oslo/diskkit | qemu/diskkit "
             "| diskkit bytes read | diskkit peak KiB | oslo peak KiB | diskkit fmt, size "
             "| oslo fmt, size | qemu-img size |", "|" + "---|" * 12]
    for r in rows:
        dk, os_, qm = r["diskkit"], r["oslo"], r["qemu"]
        lines.append(
            f"| {r['image']} | {dk['seconds'] * 1e3:.3f} | {os_['seconds'] * 1e3:.3f} | "
            f"{qm['seconds'] * 1e3:.1f} | {os_['seconds'] / dk['seconds']:.1f} | "
            f"{qm['seconds'] / dk['seconds']:.0f} | {dk['bytes_read']} | "
            f"{dk['peak'] / 1024:.0f} | {os_['peak'] / 1024:.0f} | {dk['format']}, "
            f"{dk['virtual_size']} | {os_['format']}, {os_['virtual_size']} | "
            f"{qm['virtual_size']} |")
    lines.append("")
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    section = "\n".join(lines) + "\n"
    if HEADING in text:
        start = text.index(HEADING)
        nxt = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + (text[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text)


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    rows = measure(args.reps)
    for r in rows:
        print(f"{r['image']:18} diskkit {r['diskkit']['seconds'] * 1e3:7.3f} ms  oslo "
              f"{r['oslo']['seconds'] * 1e3:7.3f} ms  qemu-img {r['qemu']['seconds'] * 1e3:6.1f}"
              f" ms  read {r['diskkit']['bytes_read']}", flush=True)
    if args.write_docs:
        write_docs(rows, "python -m bench.detect" + (f" --reps {args.reps}"
                                                      if args.reps != 20 else "")
                   + " --write-docs")


if __name__ == "__main__":
    sys.exit(main())
