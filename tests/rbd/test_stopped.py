"""A cluster stopped mid-way: reads and new connections fail with one clear error within the
timeout (DISKKIT_RBD_TIMEOUT), never a hang. Uses a short-lived cluster of its own."""

from __future__ import annotations

import time

import pytest

from diskkit.errors import HostError
from diskkit.readers.rbd import RbdReader
from diskkit.runner import run
from tests.fixtures.ceph import CephCluster
from tests.rbd.conftest import DISKKIT

MiB = 1 << 20
TIMEOUT = 4


@pytest.mark.slow
def test_cluster_stopped_mid_way(ceph_cluster_private: CephCluster, monkeypatch) -> None:
    c = ceph_cluster_private
    c.rbd("create", "--size", "64M", "rbd/vol")
    run(["rbd", "-c", c.conf, "bench", "--io-type", "write", "--io-size", "4M",
         "--io-total", "64M", "rbd/vol"], timeout=120)
    uri = f"rbd:rbd/vol:conf={c.conf}"
    monkeypatch.setenv("DISKKIT_RBD_TIMEOUT", str(TIMEOUT))
    with RbdReader(uri) as r:
        assert len(r.read(0, MiB)) == MiB
        # The OSD goes away while the volume is open: the next read fails within the timeout.
        c.stop()
        started = time.monotonic()
        with pytest.raises(HostError) as exc:
            r.read(32 * MiB, MiB)
        elapsed = time.monotonic() - started
    assert exc.value.code == "ceph-unreachable"
    assert "did not answer" in exc.value.message and exc.value.hint
    assert elapsed < TIMEOUT * 3, elapsed
    # A new command against the stopped cluster: one line, exit 3 (host), within the timeout.
    started = time.monotonic()
    res = run([DISKKIT, "info", uri], check=False, timeout=TIMEOUT * 10,
              env={"DISKKIT_RBD_TIMEOUT": str(TIMEOUT)})
    elapsed = time.monotonic() - started
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith("diskkit: error[ceph-unreachable]: ")
    assert "Traceback" not in res.stderr
    assert elapsed < TIMEOUT * 4, elapsed
