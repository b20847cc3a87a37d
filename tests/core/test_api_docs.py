"""docs/api.md's examples run (every ```python block, in order, in one namespace) against
images built here with sfdisk, mkfs.ext4 and qemu-img; and the API's ``to_json()`` is what
the CLI prints with --json (run as a real process)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from diskkit.runner import run, which

REPO = pathlib.Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "api.md"
MiB = 1 << 20


def blocks() -> list[str]:
    """The ```python code blocks of docs/api.md (```py blocks are not run)."""
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    d = tmp_path_factory.mktemp("api-docs")
    raw = d / "disk.raw"
    run(["truncate", "-s", str(32 * MiB), str(raw)])
    run(["sfdisk", "-q", str(raw)], input="label: dos\nstart=2048, type=83\n")
    tree = d / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("api-example\n")
    part = d / "p1.ext4"
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(tree), str(part), "30M"])
    with open(raw, "r+b") as out:
        out.seek(2048 * 512)
        out.write(part.read_bytes())
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(d / "disk.qcow2")],
        timeout=120)
    raw.unlink()
    part.unlink()
    run(["truncate", "-s", str(8 * MiB), str(d / "blank.raw")])
    return d


def test_the_page_has_examples_of_every_function() -> None:
    text = "\n".join(blocks())
    for name in ("inspect", "check", "open_image", "validate", "diagnose", "boot_test",
                 "convert", "mount"):
        assert f"diskkit.{name}(" in text, name


def test_docs_examples_run(workdir: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                           tmp_path: pathlib.Path) -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control") or \
            which("qemu-storage-daemon") is None:
        pytest.skip("the mount example needs root, loop devices and qemu-storage-daemon")
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("DISKKIT_RUN_DIR", str(tmp_path / "run"))
    namespace: dict[str, object] = {}
    for i, code in enumerate(blocks()):
        try:
            exec(compile(code, f"docs/api.md block {i + 1}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"docs/api.md block {i + 1} failed:\n{code}") from exc
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def _cli_json(*args: str) -> object:
    proc = subprocess.run([sys.executable, "-m", "diskkit", *args, "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def test_to_json_is_what_the_cli_prints(workdir: pathlib.Path) -> None:
    import diskkit

    img = str(workdir / "disk.qcow2")
    assert diskkit.inspect(img).to_json() == _cli_json("info", img)
    assert diskkit.check(img, "raw").to_json() == _cli_json("check", img, "--disk-format",
                                                             "raw")
    api = diskkit.diagnose(str(workdir / "blank.raw")).to_json()
    cli = _cli_json("diagnose", str(workdir / "blank.raw"))
    assert isinstance(api, dict) and isinstance(cli, dict)
    api.pop("seconds", None)
    cli.pop("seconds", None)
    assert api == cli


def test_import_diskkit_is_cheap() -> None:
    """``import diskkit`` loads no other diskkit module (the CLI starts with it)."""
    code = ("import sys; before = set(sys.modules); import diskkit; "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('diskkit')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert eval(out) == ["diskkit"]
