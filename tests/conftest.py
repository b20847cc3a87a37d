"""Shared test set-up.

Session-scoped fixtures for the expensive real things (the libguestfs appliance, the Ceph
cluster, the throwaway VM) live in ``tests/fixtures/<name>.py``, one module each, and are loaded
here as plugins, so each area adds its own without touching this file.
"""

from __future__ import annotations

import os
import pathlib

# Linux guests hang under KVM on these machines: every appliance and VM the tests start uses TCG.
os.environ.setdefault("LIBGUESTFS_BACKEND", "direct")
os.environ.setdefault("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")

_FIXTURES = pathlib.Path(__file__).parent / "fixtures"
pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in _FIXTURES.glob("*.py") if p.stem != "__init__"
)
