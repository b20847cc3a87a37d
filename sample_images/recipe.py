"""What a sample image recipe is.

Each module in ``sample_images/recipes/`` defines ``RECIPES: list[Recipe]``. A recipe builds one
image from scratch with real tools into the output folder and says what diskkit should find
in it: the manifest (``sample_images/out/manifest.json``) is what the demo and the tests read.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """One sample image."""

    #: File name in the output folder (also the recipe's identity).
    name: str
    #: One line: what operators meet that this image stands for.
    description: str
    #: Builds the image at the given path (the folder exists). Use diskkit.runner.run.
    build: Callable[[pathlib.Path], None]
    #: The format a hypervisor or Glance would be told (OpenStack disk_format).
    disk_format: str = "raw"
    #: Whatever diskkit is expected to report, e.g. {"format": "qcow2", "codes": [...],
    #: "will_boot": False, "firmware": "not-bootable"}.
    expected: dict[str, Any] = field(default_factory=dict)
    #: Bump to force a rebuild when the recipe changes.
    version: int = 1
