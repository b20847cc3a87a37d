"""Independent tools the layout tests compare diskkit against: sfdisk --json, blkid -p,
pyparted. All commands go through diskkit's runner (timeouts)."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

from diskkit.layout import Layout, inspect_layout
from diskkit.readers.raw import FileReader
from diskkit.runner import run

MiB = 1 << 20


def inspect(path: pathlib.Path) -> Layout:
    """diskkit's view of the image file at ``path``."""
    with FileReader(str(path)) as r:
        return inspect_layout(r)


def sfdisk_json(path: pathlib.Path | str) -> dict[str, Any]:
    """``sfdisk --json``'s partition table, with "start"/"size" turned into bytes."""
    table = json.loads(run(["sfdisk", "--json", str(path)], timeout=30).stdout)["partitiontable"]
    ss = table.get("sectorsize", 512)
    for p in table["partitions"]:
        p["number"] = int(re.search(r"(\d+)$", p["node"]).group(1))
        p["start_bytes"] = p["start"] * ss
        p["size_bytes"] = p["size"] * ss
    return table


def sfdisk_write(path: pathlib.Path, script: str, *extra: str) -> None:
    """Write a partition table with an sfdisk script."""
    run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", *extra, str(path)],
        input=script, timeout=30)


def blkid(path: pathlib.Path, offset: int = 0, size: int | None = None) -> dict[str, str]:
    """``blkid -p -o export`` on the image file at ``offset`` (low-level probe, no cache)."""
    argv = ["blkid", "-p", "-o", "export", "-O", str(offset)]
    if size is not None:
        argv += ["-S", str(size)]
    res = run([*argv, str(path)], timeout=30, check=False)
    out: dict[str, str] = {}
    for line in res.stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v.replace("\\ ", " ")
    return out


def blank(path: pathlib.Path, size: int) -> pathlib.Path:
    """A sparse file of ``size`` bytes."""
    run(["truncate", "-s", str(size), str(path)], timeout=30)
    return path
