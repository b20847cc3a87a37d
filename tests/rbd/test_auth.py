"""Rights: a cluster with cephx on, a user whose caps do not cover the pool. The error must
be one clear line naming the fix (``ceph auth caps``), not a librados traceback or a hang."""

from __future__ import annotations

import time

import pytest

from diskkit.errors import HostError
from diskkit.readers.rbd import RbdReader
from diskkit.runner import run
from tests.fixtures.ceph import CephCluster
from tests.rbd.conftest import DISKKIT

TIMEOUT = 4


@pytest.mark.slow
def test_user_without_caps_on_the_pool(ceph_cluster_cephx: CephCluster, monkeypatch) -> None:
    c = ceph_cluster_cephx
    c.rbd("create", "--size", "8M", "rbd/vol")
    limited = c.dir / "limited.keyring"
    c.ceph("auth", "get-or-create", "client.limited", "mon", "profile rbd",
           "osd", "profile rbd pool=elsewhere", "-o", str(limited))
    reader_ok = c.dir / "reader.keyring"
    c.ceph("auth", "get-or-create", "client.reader", "mon", "profile rbd",
           "osd", "profile rbd-read-only pool=rbd", "-o", str(reader_ok))
    monkeypatch.setenv("DISKKIT_RBD_TIMEOUT", str(TIMEOUT))
    # Read-only caps are enough: diskkit never writes.
    with RbdReader(f"rbd:rbd/vol:conf={c.conf}:id=reader:keyring={reader_ok}") as r:
        assert r.size == 8 << 20 and r.read(0, 512) == b"\0" * 512
    uri = f"rbd:rbd/vol:conf={c.conf}:id=limited:keyring={limited}"
    with pytest.raises(HostError) as exc:
        RbdReader(uri)
    assert exc.value.code == "ceph-permission"
    assert "ceph auth caps" in (exc.value.hint or "")
    res = run([DISKKIT, "check", uri], check=False, timeout=60)
    assert res.returncode == 3
    assert res.stderr.startswith("diskkit: error[ceph-permission]: ")
    assert len(res.stderr.strip().splitlines()) == 2
    # A user the cluster does not know: refused within the timeout, with the key hint.
    started = time.monotonic()
    with pytest.raises(HostError) as exc:
        RbdReader(f"rbd:rbd/vol:conf={c.conf}:id=nobody:keyring={limited}")
    assert time.monotonic() - started < TIMEOUT * 3
    assert exc.value.code in ("ceph-unreachable", "ceph-permission")
    assert ":keyring=" in (exc.value.hint or "") or "caps" in (exc.value.hint or "")
