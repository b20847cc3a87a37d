"""The demo: run diskkit on every sample image and show what it says.

``python -m sample_images.demo`` (``make demo`` builds the samples first).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
DISKKIT = [sys.executable, "-m", "diskkit"]


def main() -> None:
    """Run ``diskkit check`` on each sample with its declared format."""
    manifest = json.loads((HERE / "out" / "manifest.json").read_text())
    for entry in manifest:
        print(f"\n=== {entry['name']}: {entry['description']}", flush=True)
        cmd = [*DISKKIT, "check", entry["path"], "--disk-format", entry["disk_format"]]
        print("$ diskkit " + " ".join(cmd[3:]), flush=True)
        subprocess.run(cmd, timeout=300, check=False)


if __name__ == "__main__":
    main()
