"""Shared test set-up.

Session-scoped fixtures for the expensive real things (the libguestfs appliance, the Ceph
cluster, the throwaway VM) live in ``tests/fixtures/<name>.py``, one module each, and are loaded
here as plugins, so each area adds its own without touching this file.
"""

from __future__ import annotations

import os
import pathlib
import signal

# Linux guests hang under KVM on these machines: every appliance and VM the tests start uses TCG.
os.environ.setdefault("LIBGUESTFS_BACKEND", "direct")
os.environ.setdefault("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")

# A suite started in the background by a non-interactive shell (`make test &`, nohup) has
# SIGINT ignored, and every process it starts inherits that: the Ctrl-C tests would then
# send a signal their diskkit cannot receive. A handler here becomes the default disposition
# in the children (a caught signal is reset by exec), as when the suite runs in a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_FIXTURES = pathlib.Path(__file__).parent / "fixtures"
pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in _FIXTURES.glob("*.py") if p.stem != "__init__"
)
