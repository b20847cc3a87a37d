"""``diskkit validate`` from the shell: exit codes 0 ready / 1 blocked / 5 warnings / 2 bad
input, one JSON document, and one line (no traceback) for bad input."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from diskkit import exitcodes
from tests.cli import schema
from tests.helpers import create

DISKKIT = str(pathlib.Path(sys.executable).parent / "diskkit")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DISKKIT, "validate", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_exit_codes_and_json(tmp_path: pathlib.Path) -> None:
    assert exitcodes.WARNINGS == 5
    empty = create(tmp_path / "empty.qcow2", "qcow2", "64M")  # no OS: ready with warnings
    r = _run(str(empty), "--json")
    assert r.returncode == 5, r.stderr
    out = schema.validate("validate", r.stdout)  # docs/schemas/validate.schema.json
    assert out["verdict"] == "warnings" and out["exit_code"] == 5
    assert out["glance_accepts"] is True and out["upload"]["glance"]["oslo_format"] == "qcow2"
    assert out["command"].startswith("openstack image create --disk-format qcow2 ")
    assert out["image"]["min_disk"] == 1
    blocked = create(tmp_path / "x.hds", "parallels", "16M")
    r = _run(str(blocked), "--json")
    assert r.returncode == 1 and schema.validate("validate", r.stdout)["verdict"] == "blocked"
    assert json.loads(r.stdout)["command"] is None
    r = _run(str(blocked))
    assert r.returncode == 1 and "parallels-image" in r.stdout and "BLOCKED" in r.stdout
    assert "qemu-img convert -f parallels -O qcow2" in r.stdout


def test_bad_input_is_one_line_exit_2(tmp_path: pathlib.Path) -> None:
    img = create(tmp_path / "a.qcow2", "qcow2", "1M")
    for args, code in (((str(img), "--disk-format", "ploopy"), "bad-format"),
                       ((str(img), "--container-format", "tgz"), "bad-format"),
                       ((str(tmp_path / "missing.img"),), "not-found")):
        r = _run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith(f"diskkit: error[{code}]: "), r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""


def test_check_on_a_damaged_image_is_a_verdict(tmp_path: pathlib.Path) -> None:
    full = create(tmp_path / "full.qcow2", "qcow2", "64M", "compat=1.1")
    cut = tmp_path / "cut.qcow2"
    cut.write_bytes(full.read_bytes()[:100])
    r = subprocess.run([DISKKIT, "check", str(cut), "--json"], capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 1, r.stderr
    out = schema.validate("check", r.stdout)
    assert out["safe"] is False
    assert "image-unreadable" in {f["code"] for f in out["findings"]}
