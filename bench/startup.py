"""Start-up benchmark: ``diskkit info --json IMG`` against ``qemu-img info --output=json IMG``
on a qcow2, side by side, the way scripts call both (one process per call).

    .venv/bin/python -m bench.startup [--reps 40] [--baseline DIR] [--no-write]

The commands run interleaved (each round runs every command once, in a rotating order, so
a burst of load on the machine hits all of them alike); the figures are medians of the wall
and CPU time. Next to them, the floors: the interpreter alone (``python -c pass``, and
``python -I -S -c pass``: isolated, no ``site``), the standard modules any diskkit command
needs (argparse, json, dataclasses, typing, re, struct, enum), ``diskkit --version``
(interpreter + argparse CLI, no command module), and ``python -m diskkit`` (runpy) beside
the console script. Then ``python -X importtime`` of ``diskkit
info --json``: how many modules it loads, and the median self and cumulative time of the
biggest. ``--baseline DIR`` adds the same rows for another diskkit tree (``DIR/diskkit``,
run as ``python -m diskkit`` with ``PYTHONPATH=DIR``), e.g. an older commit extracted with
``git archive COMMIT diskkit | tar -x -C DIR``, measured in the same interleaved rounds.

Bytecode: this project's sandboxes set ``PYTHONDONTWRITEBYTECODE=1``, so without care every
process would compile every diskkit module again (an installed package has its ``.pyc``
files). The bench drops that variable and caches bytecode under bench/out/pycache
(``PYTHONPYCACHEPREFIX``) for every command, and measures one more row with no cache at all
to show what the sandbox setting costs. Writes the "## Start-up" section of
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


#: The standard modules every diskkit command loads (argparse CLI, JSON output, frozen
#: dataclasses, struct-parsed headers): the floor of a Python CLI built like this one.
STDLIB_FLOOR = "import argparse, json, dataclasses, typing, re, struct, enum"

Command = tuple[list[str], dict[str, str] | None]


def _env(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _wall(cmd: Command) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``cmd`` (stdout discarded; it
    must exit 0)."""
    argv, env = cmd
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   timeout=60, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(commands: dict[str, Command], reps: int) -> dict[str, tuple[float, float]]:
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


def importtime(argv: list[str], runs: int, env: dict[str, str] | None = None
               ) -> tuple[dict[str, float], dict[str, float], int]:
    """``python -X importtime ARGV``, ``runs`` times: the median self and cumulative
    microseconds of every module, and how many modules were imported."""
    selfs: dict[str, list[int]] = {}
    cums: dict[str, list[int]] = {}
    count = 0
    for _ in range(runs):
        err = subprocess.run([PYTHON, "-X", "importtime", *argv], capture_output=True,
                             text=True, check=True, timeout=60, env=env).stderr
        count = 0
        for line in err.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            own, cumulative, name = line[len("import time:"):].split("|")
            selfs.setdefault(name.strip(), []).append(int(own))
            cums.setdefault(name.strip(), []).append(int(cumulative))
            count += 1
    return ({n: statistics.median(v) for n, v in selfs.items()},
            {n: statistics.median(v) for n, v in cums.items()}, count)


_WORK = """
import contextlib, io, sys, time
from diskkit.cli.main import run_cli
args = ["info", "--json", sys.argv[1]]
with contextlib.redirect_stdout(io.StringIO()):
    run_cli(args)  # imports everything
    best = None
    for _ in range(20):
        c = time.process_time()
        run_cli(args)
        c = time.process_time() - c
        best = c if best is None else min(best, c)
print(best * 1000)
"""


def work_ms(img: str, env: dict[str, str] | None) -> float:
    """CPU milliseconds of ``info --json IMG`` once everything is imported (best of 20
    calls in one process): the work itself, without start-up."""
    out = subprocess.run([PYTHON, "-c", _WORK, img], capture_output=True, text=True,
                         check=True, timeout=120, env=env).stdout
    return float(out)


def typer_cost() -> tuple[float, float] | None:
    """(import + app build ms, first parse ms) of a two-command typer app, or None."""
    try:
        out = subprocess.run([PYTHON, "-c", _TYPER_APP], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
    except subprocess.CalledProcessError:
        return None
    return float(out[0]), float(out[1])


def _commands(img: str, baseline: str | None) -> dict[str, Command]:
    cached = _env(PYTHONDONTWRITEBYTECODE=None,
                  PYTHONPYCACHEPREFIX=str(ROOT / "bench" / "out" / "pycache"))
    commands: dict[str, Command] = {
        "qemu-img info --output=json": (["qemu-img", "info", "--output=json", img], None),
        "diskkit info --json": ([DISKKIT, "info", "--json", img], cached),
        "python -m diskkit info --json": ([PYTHON, "-m", "diskkit", "info", "--json", img],
                                          cached),
    }
    if baseline:
        base_env = dict(cached, PYTHONPATH=baseline,
                        PYTHONPYCACHEPREFIX=str(ROOT / "bench" / "out" / "pycache-baseline"))
        commands["diskkit info --json (baseline)"] = (
            [PYTHON, "-m", "diskkit", "info", "--json", img], base_env)
    commands.update({
        "diskkit info --json, no .pyc cache": (
            [DISKKIT, "info", "--json", img],
            _env(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=None)),
        "diskkit --version": ([DISKKIT, "--version"], cached),
        "python -c pass": ([PYTHON, "-c", "pass"], cached),
        "python -I -S -c pass": ([PYTHON, "-I", "-S", "-c", "pass"], cached),
        f"python -c '{STDLIB_FLOOR}'": ([PYTHON, "-c", STDLIB_FLOOR], cached),
    })
    return commands


def _import_lines(title: str, argv: list[str], env: dict[str, str] | None) -> list[str]:
    own, cum, count = importtime(argv, 7, env)
    ours = sum(1 for n in own if n == "diskkit" or n.startswith("diskkit."))
    lines = ["", f"{title}: {count} modules imported ({ours} of them diskkit's), "
             f"{sum(own.values()) / 1000:.1f} ms of import time in all (sum of self times; "
             "median of 7 runs). Biggest self times:", "",
             "| module | self | cumulative |", "|---|---:|---:|"]
    for name, us in sorted(own.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"| `{name}` | {us / 1000:.1f} ms | {cum[name] / 1000:.1f} ms |")
    return lines


def main() -> None:
    """Run the benchmark and write its figures (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--baseline", metavar="DIR",
                    help="another diskkit tree (DIR/diskkit) to measure beside this one")
    ap.add_argument("--no-write", action="store_true", help="Print only; leave the docs.")
    args = ap.parse_args()
    baseline = os.path.abspath(args.baseline) if args.baseline else None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="diskkit-startup-") as d:
        # Every command runs in the temporary directory: ``python -m diskkit`` puts the
        # working directory first on sys.path, which must not be a diskkit tree.
        os.chdir(d)
        img = os.path.join(d, "disk.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "1G"], check=True,
                       timeout=60)
        commands = _commands(img, baseline)
        med = measure(commands, args.reps)
        load_after = os.getloadavg()
        argv = ["-m", "diskkit", "info", "--json", img]
        work = work_ms(img, commands["diskkit info --json"][1])
        imports = _import_lines("`python -X importtime -m diskkit info --json IMG`", argv,
                                commands["diskkit info --json"][1])
        if baseline:
            imports += _import_lines(f"The same for the baseline tree ({args.baseline})",
                                     argv, commands["diskkit info --json (baseline)"][1])
        os.chdir(ROOT)
    typer = typer_cost()
    base, base_cpu = med["qemu-img info --output=json"]
    lines = [HEADING, "",
             f"`diskkit info --json` against `qemu-img info --output=json` on a fresh 1 GiB "
             f"qcow2, one process per call as scripts call both ({args.reps} interleaved "
             f"rounds, medians; `python -m bench.startup"
             + (" --baseline DIR" if baseline else "") + f"`; {os.cpu_count()} cores; load "
             f"average (1 min) {load_before[0]:.1f} before and {load_after[0]:.1f} after the "
             "rounds: other jobs shared the machine, so wall times carry their waits; CPU "
             "time (user + system of the process) is the steadier figure). Bytecode cached "
             "(as for an installed package) except where the row says otherwise.", "",
             "| command | median wall | × qemu-img | median CPU | × qemu-img |",
             "|---|---:|---:|---:|---:|"]
    for name, (sec, cpu) in med.items():
        lines.append(f"| `{name}` | {sec * 1000:.1f} ms | {sec / base:.1f} | "
                     f"{cpu * 1000:.1f} ms | {cpu / base_cpu:.1f} |")
    ratio = med["diskkit info --json"][0] / base
    ratio_cpu = med["diskkit info --json"][1] / base_cpu
    floor = med["python -I -S -c pass"][0] / base
    floor_cpu = med["python -I -S -c pass"][1] / base_cpu
    lines += ["", f"**diskkit/qemu-img: {ratio:.1f}× wall, {ratio_cpu:.1f}× CPU** (target: "
              f"at most 5× wall). The bare interpreter (`python -I -S -c pass`) is already "
              f"{floor:.1f}× wall and {floor_cpu:.1f}× CPU."]
    stdlib = med[f"python -c '{STDLIB_FLOOR}'"][1]
    lines += ["", f"Where the CPU time goes: the interpreter with the standard modules every "
              f"diskkit command needs (the `python -c 'import argparse, ...'` row) is "
              f"{stdlib * 1000:.0f} ms ({stdlib / base_cpu:.1f}× qemu-img) before any diskkit "
              f"module runs; the work of `info --json` on this image, once everything is "
              f"imported, is {work:.1f} ms (best of 20 calls in one process); the rest is "
              "importing diskkit's own modules (below). Why 5× is out of reach for a CPython "
              "CLI, and what would reach it: docs/cli.md, \"Start-up time\"."]
    lines += imports
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
