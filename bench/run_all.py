"""Run every benchmark script in bench/ (``make bench``); each writes its own figures."""

from __future__ import annotations

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main() -> None:
    """Run bench/<name>.py for every benchmark module, in name order."""
    failed = []
    for script in sorted(HERE.glob("*.py")):
        if script.stem in ("__init__", "run_all") or script.stem.startswith("_"):
            continue
        print(f"== bench/{script.name}", flush=True)
        rc = subprocess.run([sys.executable, "-m", f"bench.{script.stem}"], check=False).returncode
        if rc:
            failed.append(script.name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
