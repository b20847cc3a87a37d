"""Benchmark: ``diagnose`` on every boot sample (median of N runs, in-process) next to one
firmware boot of the same sample (``boot_test``, SeaBIOS under TCG) — the time diskkit saves
over booting to find out — and the 1 TiB blank volume (target: well under a second).

    .venv/bin/python -m bench.diagnose [--reps 20] [--no-boot] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import tempfile
import time
from collections.abc import Callable

from bench._docs import replace_section

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADING = "## Diagnose and boot-test"
#: (sample, diagnose ms, verdict, boot seconds or None, firmware outcome)
Row = tuple[str, float, str, float | None, str]


def _median_ms(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run(reps: int, boot: bool) -> list[Row]:
    """Rows: (sample, diagnose ms, verdict, boot s or None, outcome)."""
    from diskkit.boottest import boot_test
    from diskkit.diagnose import diagnose
    from sample_images.build import build
    from sample_images.recipes.boot import RECIPES

    os.environ.setdefault("DISKKIT_ACCEL", "tcg")
    rows = []
    with tempfile.TemporaryDirectory(prefix="diskkit-bench-") as tmp:
        entries = build(pathlib.Path(tmp), only=[r.name for r in RECIPES])
        for e in entries:
            d = diagnose(e["path"], e["disk_format"])
            ms = _median_ms(lambda e=e: diagnose(e["path"], e["disk_format"]), reps)
            b_s, outcome = None, "-"
            if boot:
                t = time.perf_counter()
                o = boot_test(e["path"], e["disk_format"], timeout=90)
                b_s, outcome = time.perf_counter() - t, o.outcome
            rows.append((e["name"], ms, str(d.will_boot).lower(), b_s, outcome))
    return rows


def render(rows: list[Row], command: str, reps: int) -> str:
    """The docs section."""
    lines = [HEADING, "",
             f"Reproduce: `{command}` (measured {time.strftime('%Y-%m-%d')}, Debian 12 VM, "
             f"2 cores shared with other jobs). diagnose: median of {reps} in-process runs "
             "(detection, layout, boot facts, rules); boot: one `boot_test` (SeaBIOS, TCG, "
             "qemu start to certain outcome, settle time included).", "",
             "| sample | diagnose ms | will_boot | boot-test s | firmware outcome |",
             "|---|---:|---|---:|---|"]
    for name, ms, verdict, b_s, outcome in rows:
        boot = f"{b_s:.1f}" if b_s is not None else "-"
        lines.append(f"| {name} | {ms:.1f} | {verdict} | {boot} | {outcome} |")
    blank = next((r for r in rows if r[0] == "boot-blank-volume.raw"), None)
    if blank:
        lines += ["", f"Target: a blank 1 TiB volume judged in well under a second: "
                  f"{blank[1]:.1f} ms (only allocated extents are read)."]
    return "\n".join(lines) + "\n"


def write_docs(section: str) -> None:
    """Replace (or append) this benchmark's section of docs/benchmarks.md."""
    replace_section(HEADING, section)


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-boot", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    rows = run(args.reps, not args.no_boot)
    cmd = ".venv/bin/python -m bench.diagnose" + (f" --reps {args.reps}" if args.reps != 20
                                                   else "") + \
        (" --no-boot" if args.no_boot else "") + " --write-docs"
    section = render(rows, cmd, args.reps)
    print(section)
    if args.write_docs:
        write_docs(section)


if __name__ == "__main__":
    main()
