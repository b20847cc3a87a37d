"""Layout + filesystems (+ boot) inspection: diskkit against ``virt-filesystems --all --long``.

Builds three images with real tools (an Ubuntu-like MBR disk with LVM, a GPT disk whose LV
spans two PVs, and a GPT disk with ESP, BIOS boot, ext4, xfs-free Linux data and swap), then
times, on the same images in one run:
- diskkit: ``inspect_layout`` (+ ``inspect_boot`` when diskkit.boot exists) through a
  FileReader, median of several runs;
- libguestfs: ``virt-filesystems --all --long -a IMG`` (appliance under TCG, as on these hosts),
  once per image (each run boots the appliance).
Prints the table and the ratio, and writes them to docs/benchmarks.md under
"## Layout inspection". Run: ``.venv/bin/python -m bench.layout``.
"""

from __future__ import annotations

import os
import pathlib
import re
import statistics
import sys
import tempfile
import time

from diskkit.layout import inspect_layout
from diskkit.readers.raw import FileReader
from diskkit.runner import run
from tests.fixtures.lvm_images import _build_multi, _build_root

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Layout inspection"
MiB = 1 << 20
COMMAND = ".venv/bin/python -m bench.layout"


def _build_gpt(d: pathlib.Path) -> pathlib.Path:
    img = d / "gpt-esp.img"
    run(["truncate", "-s", str(256 * MiB), str(img)])
    run(["sfdisk", "-q", str(img)], input=(
        "label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\n"
        "start=4096, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
        "start=135168, size=262144, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
        "start=397312, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\n"))
    run(["mkfs.vfat", "-F", "32", "-n", "ESP", "--offset", "4096", str(img), "65536"])
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-E", f"offset={135168 * 512}", str(img),
         "128M"])
    return img


def _diskkit(img: pathlib.Path, repeat: int = 20) -> tuple[float, list[str]]:
    try:
        from diskkit.boot import inspect_boot
    except ImportError:  # the boot half may not be there
        inspect_boot = None
    times = []
    found: list[str] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with FileReader(str(img)) as r:
            layout = inspect_layout(r)
            if inspect_boot is not None:
                inspect_boot(r, layout)
        times.append(time.perf_counter() - t0)
        found = sorted(f"{f.location}:{f.type}" for f in layout.filesystems)
    return statistics.median(times), found


def _guestfs(img: pathlib.Path) -> tuple[float, list[str]]:
    env = {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}
    t0 = time.perf_counter()
    out = run(["virt-filesystems", "--all", "--long", "--no-title", "--format=raw", "-a",
               str(img)], timeout=600, env=env).stdout
    seconds = time.perf_counter() - t0
    kinds = sorted(
        f"{cols[0]}:{cols[2]}" for cols in (ln.split() for ln in out.splitlines())
        if len(cols) >= 3 and cols[1] == "filesystem")
    return seconds, kinds


def _types(found: list[str]) -> list[str]:
    """The filesystem types both tools name (virt-filesystems says "unknown" for what it
    cannot mount and does not list PVs as filesystems)."""
    return sorted(t for t in (f.rsplit(":", 1)[1] for f in found)
                  if t not in ("unknown", "LVM2_member"))


def _write_doc(rows: list[tuple[str, float, float]], total_dk: float, total_gf: float,
               boot: bool) -> str:
    lines = [
        HEADING, "",
        f"Layout + filesystems{' + boot' if boot else ''} inspection of the same images, "
        "diskkit (`inspect_layout`"
        f"{' + `inspect_boot`' if boot else ''}, median of 20 runs, through a FileReader) "
        "against `virt-filesystems --all --long -a IMG` (libguestfs appliance, TCG; one run "
        f"per image). Measured {time.strftime('%Y-%m-%d', time.gmtime())}, load average "
        f"{os.getloadavg()[0]:.1f} at the end (other suites were running); reproduce with "
        f"`{COMMAND}`.", "",
        "| image | diskkit | virt-filesystems | ratio |", "|---|---:|---:|---:|",
    ]
    for name, dk, gf in rows:
        lines.append(f"| {name} | {dk * 1000:.2f} ms | {gf:.1f} s | {gf / dk:,.0f}x |")
    lines.append(f"| **all** | {total_dk * 1000:.2f} ms | {total_gf:.1f} s | "
                 f"**{total_gf / total_dk:,.0f}x** |")
    lines += ["", "Target: at least 100x faster. Both tools find the same filesystems "
              "(types compared by the script; virt-filesystems says `unknown` for partitions "
              "with no filesystem and for the striped LV).", ""]
    section = "\n".join(lines)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)
    return section


def main() -> None:
    """Build, time both tools, print and record the figures."""
    with tempfile.TemporaryDirectory(prefix="bench-layout-") as tmp:
        d = pathlib.Path(tmp)
        images = [_build_root(d)[0], _build_multi(d)[0], _build_gpt(d)]
        rows = []
        for img in images:
            dk, dk_found = _diskkit(img)
            gf, gf_found = _guestfs(img)
            print(f"{img.name}: diskkit {dk * 1000:.2f} ms {dk_found}", flush=True)
            print(f"{img.name}: virt-filesystems {gf:.1f} s {gf_found}", flush=True)
            rows.append((img.name, dk, gf))
            if _types(dk_found) != _types(gf_found):
                sys.exit(f"{img.name}: diskkit and virt-filesystems disagree")
        try:
            import diskkit.boot  # noqa: F401
            boot = True
        except ImportError:
            boot = False
        total_dk = sum(r[1] for r in rows)
        total_gf = sum(r[2] for r in rows)
        print(_write_doc(rows, total_dk, total_gf, boot))
        if total_gf / total_dk < 100:
            sys.exit("layout inspection is less than 100x faster than virt-filesystems")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
