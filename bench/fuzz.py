"""The long fuzz run (``make fuzz``; ``python -m bench.fuzz --seconds N``): random mutations of
real images (tests/fuzz/harness.py seeds) through every parser and the in-process
``info``/``diagnose`` pipeline, in this process under a 2 GiB address-space limit.

A crash is any exception other than a DiskkitError (InternalError included); a hang is a case
that runs longer than ``--hang`` seconds (SIGALRM). Each one is saved as a corpus case in
bench/out/fuzz/ (copy it to tests/fuzz/corpus/ once fixed). The figures (runs, crashes, hangs,
peak memory, slowest case) go to docs/security.md, "## Fuzz campaign".
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import random
import resource
import signal
import sys
import time
import traceback
from typing import Any

from bench._docs import replace_section
from tests.fuzz.harness import (
    INTERESTING,
    SEEDS,
    Case,
    Crash,
    build_seeds,
    hot_regions,
    run_case,
    seed_dir,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "fuzz"
DOC = ROOT / "docs" / "security.md"
#: Seeds read natively (no qemu-nbd per case): the pipeline target runs on these mostly.
NATIVE = ("mbr", "gpt", "grub", "iso", "lvm", "qcow2")


class Hang(Exception):
    """SIGALRM: a case ran past its time."""


def _alarm(_sig: int, _frame: Any) -> None:
    raise Hang


def mutate(rng: random.Random, seed: str, data: bytes) -> Case:
    """A random Case over ``seed`` (the same shape the hypothesis strategy draws)."""
    regions = hot_regions(seed, data)
    edits = []
    for _ in range(rng.randint(1, 8)):
        lo, hi = rng.choice(regions)
        off = rng.randrange(lo, hi)
        chunk = rng.choice(INTERESTING) if rng.random() < 0.5 else \
            bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        edits.append((off, chunk))
    truncate = rng.randrange(len(data) + 1) if rng.random() < 0.1 else None
    pipeline = rng.random() < (0.15 if seed in NATIVE else 0.03)
    return Case(seed, tuple(edits), truncate, "pipeline" if pipeline else "parsers",
                fixup=seed in ("lvm", "gpt") and rng.random() < 0.5)


def campaign(seconds: float, seed: int, hang: float) -> dict[str, Any]:
    """Run cases for ``seconds``; the figures."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    signal.signal(signal.SIGALRM, _alarm)
    rng = random.Random(seed)
    OUT.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"runs": 0, "pipeline_runs": 0, "crashes": 0, "hangs": 0,
                             "unique": collections.Counter(), "slowest": 0.0,
                             "slowest_case": ""}
    with seed_dir() as d:
        seeds = build_seeds(d)
        names = sorted(SEEDS)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            name = rng.choice(names)
            case = mutate(rng, name, seeds[name])
            t0 = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, hang)
            try:
                run_case(case, seeds)
            except Crash as exc:
                stats["crashes"] += 1
                where = traceback.extract_tb(exc.__cause__.__traceback__)[-1] \
                    if exc.__cause__ else None
                key = f"{type(exc.__cause__).__name__} at " + \
                    (f"{pathlib.Path(where.filename).name}:{where.lineno}" if where else "?")
                if not stats["unique"][key]:
                    (OUT / f"crash-{len(stats['unique']):03d}.json").write_text(
                        Case(case.seed, case.edits, case.truncate, case.target,
                             f"{key}: {exc}"[:300], case.fixup).to_json())
                stats["unique"][key] += 1
            except Hang:
                stats["hangs"] += 1
                (OUT / f"hang-{stats['hangs']:03d}.json").write_text(case.to_json())
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            took = time.monotonic() - t0
            if took > stats["slowest"]:
                stats["slowest"], stats["slowest_case"] = took, f"{case.seed}/{case.target}"
            stats["runs"] += 1
            stats["pipeline_runs"] += case.target == "pipeline"
        stats["seconds"] = time.monotonic() - started
    stats["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stats["peak_rss_children"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return stats


def report(stats: dict[str, Any], seconds: float, seed: int) -> str:
    """The docs/security.md section."""
    unique = "; ".join(f"{k} ({n})" for k, n in stats["unique"].most_common()) or "none"
    return (
        "## Fuzz campaign\n\n"
        f"`python -m bench.fuzz --seconds {seconds:g} --seed {seed}` (`make fuzz`) on "
        f"{time.strftime('%Y-%m-%d')}: seeds {', '.join(sorted(SEEDS))} (built by qemu-img, "
        "sfdisk, sgdisk, mkfs.vfat, xorriso, grub-mkimage), 1-8 byte edits in their "
        "structures, LVM/GPT checksums fixed up half the time.\n\n"
        "| figure | value |\n|---|---|\n"
        f"| runs | {stats['runs']} ({stats['pipeline_runs']} through the in-process "
        "info + diagnose pipeline, the rest through detect + layout + boot + LVM/VMDK text) |\n"
        f"| seconds | {stats['seconds']:.0f} ({stats['runs'] / max(stats['seconds'], 1):.1f} "
        "runs/s on 2 shared cores) |\n"
        f"| crashes | {stats['crashes']} (unique: {unique}) |\n"
        f"| hangs (> {HANG:g} s) | {stats['hangs']} |\n"
        f"| slowest case | {stats['slowest']:.1f} s ({stats['slowest_case']}) |\n"
        f"| peak memory | {stats['peak_rss'] >> 20} MiB (this process), "
        f"{stats['peak_rss_children'] >> 20} MiB (largest qemu-nbd) |\n"
    )


HANG = 20.0


def main(argv: list[str] | None = None) -> int:
    """Run the campaign, print and record the figures; exit 1 on any crash or hang."""
    global HANG
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--hang", type=float, default=HANG)
    p.add_argument("--no-docs", action="store_true", help="do not write docs/security.md")
    args = p.parse_args(argv)
    HANG = args.hang
    stats = campaign(args.seconds, args.seed, args.hang)
    text = report(stats, args.seconds, args.seed)
    print(text)
    if not args.no_docs:
        replace_section("## Fuzz campaign", text, DOC)
    return 1 if stats["crashes"] or stats["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
