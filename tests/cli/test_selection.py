"""``mount`` and ``run`` without --partition/--lv find the operating system's root as ``cat``
does (guestmount -i style), and ask only when there is no OS and several filesystems."""

from __future__ import annotations

import json
import os
import pathlib

from tests.cli.conftest import HELLO, HOSTNAME, CliImages, dk, needs_root

pytestmark = needs_root


def test_mount_finds_the_os_root(cli_images: CliImages, tmp_path: pathlib.Path,
                                 run_env: dict[str, str]) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = dk("mount", cli_images.os_raw, mnt, "--json", env=run_env)
    assert r.returncode == 0, r.stderr
    try:
        out = json.loads(r.stdout)
        # The root and, from its fstab (LABEL=data /srv), partition 2 below it.
        assert [(m["location"], m["mountpoint"]) for m in out["mounts"]] == \
            [("partition 1", "/"), ("partition 2", "/srv")]
        assert (mnt / "etc" / "hostname").read_text() == HOSTNAME
        assert (mnt / "srv" / "hello.txt").read_text() == HELLO
    finally:
        assert dk("umount", mnt, env=run_env).returncode == 0
    assert not os.listdir(mnt)


def test_run_finds_the_os_root(cli_images: CliImages, run_env: dict[str, str]) -> None:
    r = dk("run", cli_images.os_raw, "--", "sh", "-c",
           'cat "$DISKKIT_ROOT/etc/hostname" "$DISKKIT_ROOT/srv/hello.txt"', env=run_env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == HOSTNAME + HELLO


def test_cat_mount_run_agree(cli_images: CliImages, run_env: dict[str, str]) -> None:
    """The same default everywhere: cat reads what run sees."""
    cat = dk("cat", cli_images.os_raw, "/etc/hostname", env=run_env)
    run = dk("run", cli_images.os_raw, "--", "sh", "-c", 'cat "$DISKKIT_ROOT/etc/hostname"',
             env=run_env)
    assert cat.returncode == run.returncode == 0 and cat.stdout == run.stdout == HOSTNAME


def test_no_os_and_several_filesystems_asks(cli_images: CliImages, tmp_path: pathlib.Path,
                                            run_env: dict[str, str]) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for args in (("mount", cli_images.noos_raw, mnt), ("run", cli_images.noos_raw, "--", "true"),
                 ("cat", cli_images.noos_raw, "/hello.txt")):
        r = dk(*args, env=run_env)
        assert r.returncode == 2, r.stderr
        first, hint = r.stderr.splitlines()
        assert first.startswith("diskkit: error[choose-partition]: ") and "choose one" in first
        assert "--partition 1 (ext4 'data')" in hint and "--partition 2 (ext4 'other')" in hint
        assert not os.listdir(mnt)
    r = dk("cat", cli_images.noos_raw, "/hello.txt", "-p", "1", env=run_env)
    assert r.stdout == HELLO


def test_no_os_one_filesystem_is_used(cli_images: CliImages, run_env: dict[str, str]) -> None:
    r = dk("run", cli_images.one_raw, "--", "sh", "-c", 'cat "$DISKKIT_ROOT/notes.txt"',
           env=run_env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "no OS here\n"
