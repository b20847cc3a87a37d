"""The pasted fix commands (diskkit/diagnose/guestfixes.py) on hostile guest text: a shell
parses each command into exactly the words intended (checked with bash itself), text outside
the safe set never reaches a command, and the image copy never follows a backing file."""

from __future__ import annotations

import shlex

import pytest

from diskkit.diagnose import guestfixes
from diskkit.guest.fstab import FstabEntry
from diskkit.guest.vfs import Source
from diskkit.runner import run


def _entry(spec: str, mountpoint: str = "/srv/data", options: tuple[str, ...] = ("defaults",),
           ) -> FstabEntry:
    text = f"{spec} {mountpoint} ext4 {','.join(options)} 0 2"
    return FstabEntry(spec, mountpoint, "ext4", options, 2, Source("/etc/fstab", 4, text),
                      "uuid", None)


def _words(cmd: str) -> list[str]:
    """How bash splits ``cmd`` into words (printf one per line, no expansion run)."""
    out = run(["bash", "-c", "printf '%s\\0' " + cmd.replace("&&", "'&&'")], timeout=30,
              binary=True).stdout
    return [w.decode() for w in out.split(b"\0")[:-1]]


def test_fstab_fix_is_one_sed_inside_the_guest() -> None:
    fix = guestfixes.fstab_nofail(_entry("UUID=0b5e55ed-0000-4000-8000-00000000da7a"), "qcow2")
    assert len(fix.commands) == 2
    words = _words(fix.commands[1])
    assert words[:5] == ["virt-customize", "--format", "qcow2", "-a", "FIXED.qcow2"]
    assert words[5:] == ["--run-command", "sed -i '4s|.*|UUID=0b5e55ed-0000-4000-8000-"
                         "00000000da7a /srv/data ext4 defaults,nofail 0 2|' /etc/fstab"]


@pytest.mark.parametrize("spec", ["UUID=x;reboot", "LABEL=$(reboot)", "UUID=a'b", "/dev/x|y",
                                  "UUID=a b", "LABEL=`id`"])
def test_hostile_fstab_text_gives_words_not_commands(spec: str) -> None:
    fix = guestfixes.fstab_nofail(_entry(spec), "qcow2")
    assert fix.commands == ()
    assert "virt-customize --edit" in fix


def test_copy_never_follows_a_backing_file() -> None:
    for fmt in ("qcow2", "vmdk", "qed"):
        words = shlex.split(guestfixes.copy_command(fmt))
        assert words[:4] == ["qemu-img", "convert", "-O", "qcow2"]
        assert '"backing": null' in words[4] and words[5] == "FIXED.qcow2"
    assert shlex.split(guestfixes.copy_command("raw"))[4:7] == ["-f", "raw", "IMAGE"]


@pytest.mark.parametrize("uuid", ["5e1f0c3a-9d2b-4e7a-8c61-0d15c0de1201", "x; reboot"])
def test_restore_uuid_only_with_a_uuid(uuid: str) -> None:
    fix = guestfixes.restore_uuid(uuid, "partition 1", "ext4", "qcow2")
    if ";" in uuid:
        assert fix.commands == ()
    else:
        assert _words(fix.commands[1])[-2:] == ["/dev/sda1", uuid]
