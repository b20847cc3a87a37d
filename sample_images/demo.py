"""The demo: run diskkit on every sample image and show what it says.

``python -m sample_images.demo [--verify]`` (``make demo`` builds the samples first). Boot
samples (those whose manifest entry expects a ``will_boot`` verdict) are run through
``diskkit diagnose`` with the format a hypervisor would use, once as OpenStack attaches a
volume and once per variant (--as cdrom, --firmware uefi): the verdict, the cause, the
evidence and the fix. ``--verify`` boots each under real firmware too. The format samples
go through ``diskkit check``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
DISKKIT = [sys.executable, "-m", "diskkit"]


def _show(cmd: list[str]) -> None:
    print("$ diskkit " + " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, timeout=300, check=False)


def _diagnose(entry: dict, verify: bool) -> None:
    base = [*DISKKIT, "diagnose", entry["path"], "-f", entry["disk_format"]]
    if verify:
        base.append("--verify")
    _show(base)
    for variant in entry["expected"].get("variants", []):
        extra = []
        if variant.get("as", "disk") != "disk":
            extra += ["--as", variant["as"]]
        if variant.get("firmware_type", "bios") != "bios":
            extra += ["--firmware", variant["firmware_type"]]
        print(flush=True)
        _show([*base, *extra])


def main() -> None:
    """Diagnose each boot sample; check each format sample."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--verify", action="store_true",
                        help="also boot each boot sample under real firmware (TCG)")
    args = parser.parse_args()
    manifest = json.loads((HERE / "out" / "manifest.json").read_text())
    for entry in manifest:
        print(f"\n=== {entry['name']}: {entry['description']}", flush=True)
        if "will_boot" in entry["expected"]:
            _diagnose(entry, args.verify)
        else:
            _show([*DISKKIT, "check", entry["path"], "--disk-format", entry["disk_format"]])


if __name__ == "__main__":
    main()
