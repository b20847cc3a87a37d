"""Guest files diskkit opens itself are resolved inside the guest root: a guest /etc/fstab that
is a symlink to a host file or a host FIFO opens nothing on the host and never blocks.

Proof by a Python audit hook (every ``open`` event, its path resolved with realpath at that
moment) in a separate interpreter, around the real ``mounted(..., os_root=True)`` of an ext4
image built at test time, and around :mod:`diskkit.guestpath` on a plain directory tree.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator

import pytest

from diskkit import guestpath
from diskkit.errors import ImageError, UserError
from diskkit.runner import run

GUEST_FSTAB = "LABEL=gr / ext4 defaults 0 1\n"

_AUDIT = textwrap.dedent("""
    import json, os, sys
    opened = []
    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes)):
            p = os.fsdecode(args[0])
            if os.path.isabs(p):
                opened.append(os.path.realpath(p))
    sys.addaudithook(hook)
""")


@pytest.fixture()
def host_secret() -> Iterator[str]:
    fd, path = tempfile.mkstemp(prefix="dk-host-secret-")
    os.write(fd, b"HOST-SECRET /srv ext4 defaults 0 2\n")
    os.close(fd)
    yield path
    os.unlink(path)


@pytest.fixture()
def host_fifo() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="dk-host-fifo-")
    path = os.path.join(d, "fifo")
    os.mkfifo(path)
    yield path
    os.unlink(path)
    os.rmdir(d)


def _tree(base: pathlib.Path, fstab_target: str) -> pathlib.Path:
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    os.chmod(root, 0o755)
    (root / "etc" / "os-release").write_text("ID=test\n")
    (root / "etc" / "guest-fstab").write_text(GUEST_FSTAB)
    os.symlink(fstab_target, root / "etc" / "fstab")
    return root


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _AUDIT + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_guestpath_never_opens_a_host_file(tmp_path, host_secret, host_fifo, kind) -> None:
    target = host_secret if kind == "file" else host_fifo
    root = _tree(tmp_path, target)
    # The host target's own name, inside the guest: make it the guest's copy of fstab, so
    # "resolved inside the root" has something to find.
    inner = root / target.lstrip("/")
    inner.parent.mkdir(parents=True, exist_ok=True)
    inner.write_text(GUEST_FSTAB)
    res = _python(f"""
        from diskkit import guestpath
        data = guestpath.read_file({str(root)!r}, "/etc/fstab")
        print(json.dumps({{"data": data.decode(), "opened": opened}}))
    """)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["data"] == GUEST_FSTAB
    assert target not in out["opened"]


def test_guestpath_refuses_fifos_devices_and_escapes(tmp_path) -> None:
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc" / "fifo")
    os.symlink("/dev/null", root / "etc" / "null")  # the guest's /dev/null: absent
    os.symlink("../../../../../../etc/passwd", root / "etc" / "up")
    os.symlink("loop2", root / "etc" / "loop1")
    os.symlink("loop1", root / "etc" / "loop2")
    (root / "etc" / "big").write_bytes(b"x" * 5000)
    with pytest.raises(UserError) as exc:
        guestpath.read_file(str(root), "/etc/fifo")  # returns at once: O_NONBLOCK + S_ISREG
    assert exc.value.code == "not-a-regular-file"
    with pytest.raises(UserError) as exc:
        guestpath.read_file(str(root), "/etc/null")
    assert exc.value.code == "not-found"
    with pytest.raises(UserError) as exc:
        guestpath.read_file(str(root), "/etc/up")  # /etc/passwd of the guest: absent
    assert exc.value.code == "not-found"
    with pytest.raises(ImageError) as exc2:
        guestpath.read_file(str(root), "/etc/loop1")
    assert exc2.value.code == "symlink-loop"
    with pytest.raises(ImageError):
        guestpath.read_file(str(root), "/etc/big", limit=4096)
    assert guestpath.read_file(str(root), "/etc/big", limit=10, truncate=True) == b"x" * 10
    assert guestpath.kind(str(root), "/etc/fifo") == "other"
    assert guestpath.kind(str(root), "/etc/up") == "link"
    assert guestpath.is_dir(str(root), "/etc/../../..") is True
    assert guestpath.resolve(str(root), "/etc/up") == os.path.join(str(root), "etc", "passwd")


def test_walk_fallback_matches(tmp_path, monkeypatch) -> None:
    """The user-space walk (no openat2, or a nosymfollow mount) resolves the same way."""
    root = tmp_path / "r"
    (root / "etc" / "sub").mkdir(parents=True)
    (root / "etc" / "sub" / "f").write_text("guest")
    os.symlink("/etc/sub", root / "etc" / "abs")
    os.symlink("../etc/abs/../sub/f", root / "etc" / "rel")
    monkeypatch.setattr(guestpath, "_openat2_ok", False)
    assert guestpath.read_file(str(root), "/etc/rel") == b"guest"
    assert guestpath.read_file(str(root), "/etc/abs/f") == b"guest"


def _ext4_disk(tmp_path: pathlib.Path, root: pathlib.Path) -> pathlib.Path:
    img = tmp_path / "guest.ext4"
    run(["mkfs.ext4", "-q", "-F", "-L", "gr", "-d", str(root), str(img), "16M"], timeout=60)
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(20 << 20)
    run(["sfdisk", "-q", str(disk)], input="2048,,83\n", timeout=30)
    run(["dd", f"if={img}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc", "status=none"],
        timeout=60)
    return disk


@pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root")
@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_os_mount_reads_no_host_file_through_guest_fstab(tmp_path, host_secret, host_fifo,
                                                         kind) -> None:
    target = host_secret if kind == "file" else host_fifo
    disk = _ext4_disk(tmp_path, _tree(tmp_path, target))
    res = _python(f"""
        from diskkit.backends import mounted
        with mounted({str(disk)!r}, os_root=True, backend="loop") as m:
            result = m.to_dict()
        print(json.dumps({{"opened": opened, "mounts": result["mounts"],
                          "skipped": result.get("skipped", [])}}))
    """, env={"DISKKIT_RUN_DIR": str(tmp_path / "run")})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert target not in out["opened"]
    # The host file's entry (/srv) was never seen: only the root is mounted.
    assert [m["mountpoint"] for m in out["mounts"]] == ["/"]
    assert not any("HOST-SECRET" in s["spec"] for s in out["skipped"])
