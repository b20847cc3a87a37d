"""Fix texts are safe to paste on the image they are printed for.

A hostile qcow2 whose backing file is a host file (a unique temp file with a marker, and
/etc/passwd, both as raw) gets findings whose printed commands are run here as printed (the
placeholders replaced by the image's path): no output holds a byte of the host file.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from diskkit.runner import run
from tests.helpers import qemu_img_info

MARKER = b"HOST-SECRET-0f3c9a "


def _diskkit(*args: str) -> dict:
    res = subprocess.run([sys.executable, "-m", "diskkit", *args], capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def _fixes(report: dict) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(x: object) -> None:
        if isinstance(x, dict):
            if isinstance(x.get("code"), str) and isinstance(x.get("fix"), str):
                out[x["code"]] = x["fix"]
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(report)
    return out


def _commands(fix: str, program: str) -> list[str]:
    """The ``program ...`` commands in a fix text, each up to ``&&``, ``;``, `` (`` or the
    end (quotes kept whole)."""
    out = []
    for m in re.finditer(re.escape(program), fix):
        words: list[str] = []
        lex = shlex.shlex(fix[m.start():], posix=True, punctuation_chars=";&()")
        lex.whitespace_split = True
        for tok in lex:
            if tok in (";", "&&", "(", ")", "&", ";;") or tok.startswith(("(", ";")):
                break
            words.append(tok)
        out.append(shlex.join(words))
    return out


@pytest.fixture(params=["marker", "passwd"])
def hostile(request, tmp_path: pathlib.Path) -> tuple[pathlib.Path, bytes]:
    if request.param == "marker":
        host = tmp_path / "host-secret.txt"
        host.write_bytes(MARKER * 64)
        needle = MARKER
    else:
        host = pathlib.Path("/etc/passwd")
        needle = host.read_bytes()[:24]
    img = tmp_path / "hostile.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(host), "-F", "raw", str(img),
         "1M"], timeout=30)
    # Control: a naive flatten really does copy the host file into its output.
    flat = tmp_path / "naive.raw"
    run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(img), str(flat)], timeout=60)
    assert needle in flat.read_bytes()
    flat.unlink()
    return img, needle


def test_backing_file_fix_drops_the_reference_without_reading_it(hostile, tmp_path) -> None:
    img, needle = hostile
    fix = _fixes(_diskkit("check", str(img), "--json"))["qcow2-backing-file"]
    assert "qemu-img convert -f qcow2" not in fix  # no flatten of a hostile image
    assert "loses" in fix  # it says what dropping the reference costs
    (cmd,) = _commands(fix, "qemu-img rebase")
    cmd = cmd.replace("IMAGE", shlex.quote(str(img)))
    trace = tmp_path / "strace.log"
    subprocess.run(["strace", "-f", "-e", "trace=open,openat,openat2", "-o", str(trace),
                    "sh", "-c", cmd], check=True, timeout=60, capture_output=True)
    assert str(needle) and "host-secret" not in trace.read_text()
    assert "/etc/passwd" not in trace.read_text()
    info = qemu_img_info(img, "qcow2")
    assert "backing-filename" not in info
    out = tmp_path / "after.raw"
    run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(img), str(out)], timeout=60)
    assert needle not in out.read_bytes()
    # diskkit now calls it safe.
    codes = {f["code"] for f in _diskkit("check", str(img), "--json")["findings"]}
    assert "qcow2-backing-file" not in codes


def test_container_as_raw_fix_reads_no_backing_file(hostile, tmp_path) -> None:
    img, needle = hostile
    fix = _fixes(_diskkit("diagnose", str(img), "--format", "raw", "--json"))[
        "container-as-raw"]
    (cmd,) = _commands(fix, "qemu-img convert")
    work = tmp_path / "work"
    work.mkdir()
    (work / "IMAGE.qcow2").symlink_to(img)
    subprocess.run(["sh", "-c", cmd], cwd=work, check=True, timeout=60, capture_output=True)
    assert needle not in (work / "IMAGE.raw").read_bytes()


def test_extended_l2_fix_reads_no_backing_file(tmp_path) -> None:
    host = tmp_path / "host-secret.txt"
    host.write_bytes(MARKER * 64)
    img = tmp_path / "IMAGE"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "-b", str(host),
         "-F", "raw", str(img), "1M"], timeout=30)
    fix = _fixes(_diskkit("check", str(img), "--json"))["qcow2-extended-l2"]
    (cmd,) = _commands(fix, "qemu-img convert")
    subprocess.run(["sh", "-c", cmd], cwd=tmp_path, check=True, timeout=60,
                   capture_output=True)
    out = tmp_path / "OUT.qcow2"
    raw = tmp_path / "out.raw"
    run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(out), str(raw)], timeout=60)
    assert MARKER not in raw.read_bytes()
