"""Start-up cost of the CLI (issue 10 item 8): a command imports only what the image needs.

``diskkit info --json`` on a fresh qcow2 (built here by qemu-img) must not import another
format's module, the boot modules for GRUB / El Torito / MBR loaders, LVM, the guest's
readers (no filesystem can hold an OS root), or the slow standard modules (urllib,
importlib.metadata, subprocess, logging, hashlib's OpenSSL). Detection must still find every
format: the gates' copied constants agree with the format modules', and a vmdk is detected
by importing vmdk. The figures are in docs/benchmarks.md ("Start-up", ``python -m
bench.startup``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

from tests.helpers import create

#: Imports a fresh qcow2's ``info --json`` has no use for.
NOT_FOR_A_BLANK_QCOW2 = (
    "diskkit.formats.vmdk", "diskkit.formats.vhdx", "diskkit.formats.vhd",
    "diskkit.formats.vdi", "diskkit.formats.qed", "diskkit.formats.qcow1",
    "diskkit.formats.luks", "diskkit.formats.compressed", "diskkit.formats.tar",
    "diskkit.formats.parallels", "diskkit.formats.bochs", "diskkit.formats.cloop",
    "diskkit.formats.dmg", "diskkit.formats.partitions", "diskkit.formats.pmbr",
    "diskkit.boot.eltorito", "diskkit.boot.grub", "diskkit.boot.grubcore",
    "diskkit.boot.prefix", "diskkit.boot.loaders", "diskkit.boot.uefi", "diskkit.boot.efi",
    "diskkit.boot.fat", "diskkit.layout.lvm",
    "diskkit.guest.inspect", "diskkit.guest.fs", "diskkit.guest.windows",
    "diskkit.guest.kernels", "diskkit.guest.initramfs", "diskkit.guest.bootcfg",
    "diskkit.guest.cloud", "diskkit.guest.identity",
    "urllib.parse", "ipaddress", "importlib.metadata", "pkg_resources", "subprocess",
    "logging", "_hashlib", "zstandard", "uuid", "rich", "typer", "pydantic",
)

_RUN = """
import contextlib, io, json, sys
args, result = json.loads(sys.argv[1]), sys.argv[2]
sys.argv = ["diskkit", *args]
from diskkit.cli.main import run_cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = run_cli(args)
with open(result, "w") as f:
    json.dump({"rc": rc, "stdout": out.getvalue(), "modules": sorted(sys.modules)}, f)
"""


def _imports(tmp: pathlib.Path, *argv: str) -> dict:
    """Run the CLI in a fresh interpreter; its exit code, output and every module loaded."""
    subprocess.run([sys.executable, "-c", _RUN, json.dumps(argv), str(tmp / "run.json")],
                   capture_output=True, text=True, timeout=120, check=True)
    got: dict = json.loads((tmp / "run.json").read_text())
    return got


def test_info_of_a_blank_qcow2_imports_only_what_it_needs(tmp_path: pathlib.Path) -> None:
    img = create(tmp_path / "fresh.qcow2", "qcow2", "1G")
    got = _imports(tmp_path, "info", "--json", str(img))
    assert got["rc"] == 0
    assert json.loads(got["stdout"])["format"] == "qcow2"
    loaded = set(got["modules"])
    assert "diskkit.formats.qcow2_checks" in loaded  # the probe that matched
    assert sorted(loaded & set(NOT_FOR_A_BLANK_QCOW2)) == []


def test_detection_imports_the_probe_that_can_match(tmp_path: pathlib.Path) -> None:
    img = create(tmp_path / "disk.vmdk", "vmdk", "64M")
    got = _imports(tmp_path, "info", "--json", str(img))
    assert json.loads(got["stdout"])["format"] == "vmdk"
    loaded = set(got["modules"])
    assert "diskkit.formats.vmdk" in loaded
    assert not loaded & {"diskkit.formats.vhdx", "diskkit.formats.qcow2_checks",
                         "diskkit.formats.vdi", "diskkit.formats.qed"}


def test_gate_constants_are_the_format_modules_own() -> None:
    from diskkit.formats import detect, dmg, iso, qcow1, vdi, vhd, vmdk

    copied = {  # detect's copy: the format module's own value
        detect._VMDK_MAGIC: vmdk.MAGIC,
        detect._VDI_SIGNATURE: vdi.SIGNATURE.to_bytes(4, "little"),
        detect._VHD_COOKIE: vhd.COOKIE,
        detect._ISO_MIN_HEAD: iso.START + iso.SECTOR,
        detect._DMG_MAGIC: dmg.MAGIC,
        b"QFI\xfb\0\0\0\x01": qcow1.MAGIC + qcow1.VERSION.to_bytes(4, "big"),  # _qcow
    }
    for mine, theirs in copied.items():
        assert mine == theirs
    for name, spec in detect.PROBES:  # every "module:function" names a probe that exists
        assert callable(detect._probe(spec)), name


def test_console_script_loads_no_package_metadata() -> None:
    script = pathlib.Path(sys.executable).parent / "diskkit"
    assert "pkg_resources" not in script.read_text()
    p = subprocess.run([sys.executable, "-X", "importtime", str(script), "--version"],
                       capture_output=True, text=True, timeout=60, check=True)
    names = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()
             if line.startswith("import time:")}
    assert "diskkit.cli.main" in names
    assert not names & {"importlib.metadata", "pkg_resources", "diskkit.pipeline", "rich"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_one_command_parser_is_the_full_parsers_command() -> None:
    """``diskkit CMD ...`` builds only CMD's parser; its help and usage are the same."""
    from diskkit.cli.commands import COMMANDS
    from diskkit.cli.main import build_parser

    full = _subparsers(build_parser())
    assert list(full) == list(COMMANDS)
    for name in COMMANDS:
        one = _subparsers(build_parser(only=name))
        assert list(one) == [name]
        assert one[name].format_help() == full[name].format_help()
