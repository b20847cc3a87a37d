"""Start-up benchmark: ``diskkit info --json IMG`` against ``qemu-img info --output=json IMG``
on a qcow2, side by side, the way scripts call both (one process per call).

    .venv/bin/python -m bench.startup [--reps 40] [--no-write]

The commands run interleaved (each round runs every command once, in a rotating order, so
a burst of load on the machine hits all of them alike); the figures are medians of the wall
time. Next to them, two floors: the interpreter alone (``python -c pass``, with and without
``site``) and ``diskkit --version`` (interpreter + argparse CLI, no command module). Then
``python -X importtime`` of ``diskkit info --json``: the median cumulative time of the
biggest imports, what ``import diskkit`` costs, and (when typer is installed) what the typer
CLI diskkit had before cost at start-up. Writes the "## Start-up" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from bench._docs import replace_section

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV_BIN = pathlib.Path(sys.executable).parent
DISKKIT = str(VENV_BIN / "diskkit")
PYTHON = sys.executable
HEADING = "## Start-up"

_TYPER_APP = """
import time; t0 = time.perf_counter()
import typer
app = typer.Typer(add_completion=False)
@app.command()
def info(target: str, json_out: bool = typer.Option(False, "--json")) -> None:
    pass
@app.command()
def check(target: str) -> None:
    pass
cmd = typer.main.get_command(app)
t1 = time.perf_counter()
cmd.main(args=["info", "x", "--json"], standalone_mode=False)
t2 = time.perf_counter()
print(f"{(t1 - t0) * 1000:.1f} {(t2 - t1) * 1000:.1f}")
"""


def _wall(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv`` (stdout discarded; it
    must exit 0)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   timeout=60)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(commands: dict[str, list[str]], reps: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each command, interleaved over ``reps`` rounds."""
    names = list(commands)
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for n in names:  # warm the page cache and the .pyc files
        _wall(commands[n])
    for r in range(reps):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            times[n].append(_wall(commands[n]))
    return {n: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for n, v in times.items()}


def importtime(argv: list[str], runs: int) -> dict[str, float]:
    """Median cumulative import microseconds of every top-level import of ``python -X
    importtime ARGV`` (the module's line with no indentation)."""
    seen: dict[str, list[int]] = {}
    for _ in range(runs):
        err = subprocess.run([PYTHON, "-X", "importtime", *argv], capture_output=True,
                             text=True, check=True, timeout=60).stderr
        for line in err.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            _self, cumulative, name = line[len("import time:"):].split("|")
            if name.startswith(" ") and not name.startswith("  "):  # top level: one space
                seen.setdefault(name.strip(), []).append(int(cumulative))
    return {n: statistics.median(v) for n, v in seen.items()}


def typer_cost() -> tuple[float, float] | None:
    """(import + app build ms, first parse ms) of a two-command typer app, or None."""
    try:
        out = subprocess.run([PYTHON, "-c", _TYPER_APP], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
    except subprocess.CalledProcessError:
        return None
    return float(out[0]), float(out[1])


def main() -> None:
    """Run the benchmark and write its figures (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--no-write", action="store_true", help="Print only; leave the docs.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="diskkit-startup-") as d:
        img = os.path.join(d, "disk.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "1G"], check=True,
                       timeout=60)
        commands = {
            "qemu-img info --output=json": ["qemu-img", "info", "--output=json", img],
            "diskkit info --json": [DISKKIT, "info", "--json", img],
            "diskkit --version": [DISKKIT, "--version"],
            "python -c pass": [PYTHON, "-c", "pass"],
            "python -S -c pass": [PYTHON, "-S", "-c", "pass"],
        }
        med = measure(commands, args.reps)
        imports = importtime(["-m", "diskkit", "info", "--json", img], 7)
        pkg = importtime(["-c", "import diskkit"], 7).get("diskkit", 0.0)
    typer = typer_cost()
    base, base_cpu = med["qemu-img info --output=json"]
    load = os.getloadavg()[0]
    lines = [HEADING, "",
             f"`diskkit info --json` against `qemu-img info --output=json` on a fresh 1 GiB "
             f"qcow2, one process per call as scripts call both ({args.reps} interleaved "
             f"rounds, median wall time; `python -m bench.startup`; {os.cpu_count()} cores, "
             f"load average {load:.1f} while it ran).", "",
             "| command | median wall | × qemu-img | median CPU (user+sys) | × qemu-img |",
             "|---|---:|---:|---:|---:|"]
    for name, (sec, cpu) in med.items():
        lines.append(f"| `{name}` | {sec * 1000:.1f} ms | {sec / base:.1f} | "
                     f"{cpu * 1000:.1f} ms | {cpu / base_cpu:.1f} |")
    ratio = med["diskkit info --json"][0] / base
    floor = med["python -c pass"][0] / base
    lines += ["", f"**Ratio diskkit/qemu-img: {ratio:.1f}× wall** (target: at most 5×; the "
              f"interpreter alone, `python -c pass`, is {floor:.1f}× qemu-img). CPU time is "
              "shown too: it is less disturbed by other load on the machine than wall time.",
              "",
              "`python -X importtime -m diskkit info --json IMG`, median cumulative time of "
              "the biggest top-level imports (7 runs):", "",
              "| import | cumulative |", "|---|---:|"]
    top = sorted(imports.items(), key=lambda kv: -kv[1])[:14]
    for name, us in top:
        lines.append(f"| `{name}` | {us / 1000:.1f} ms |")
    lines += ["", f"`import diskkit` alone: {pkg / 1000:.1f} ms."]
    if typer is not None:
        lines += ["", f"The typer CLI diskkit had before: importing typer and building a "
                  f"two-command app took {typer[0]:.0f} ms, and its first parse "
                  f"{typer[1]:.0f} ms more (`python -X importtime`: the first parse imports "
                  f"`typer._adapters`, which builds pydantic TypeAdapters, and pydantic's "
                  f"plugin loader), in every process: that alone is many times qemu-img's "
                  f"whole run, hence the argparse CLI (docs/cli.md)."]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        replace_section(HEADING, section)


if __name__ == "__main__":
    main()
