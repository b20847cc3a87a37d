"""Every command's real ``--json`` output validates against docs/schemas/<command>.schema.json,
and says the same thing the same way (docs/json.md): ``format`` is what the bytes are,
``open_format`` what the hypervisor is told, sizes are virtual_size/actual_size, format names
are OpenStack's, numbering starts at 1, ``safe`` is upload safety in every command."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib

import pytest

from diskkit.runner import run
from docs.schemas.generate import SCHEMAS
from tests.cli.conftest import BLOB, HOSTNAME, CliImages, dk, needs_root
from tests.cli.schema import SCHEMAS as SCHEMA_DIR
from tests.cli.schema import validate
from tests.helpers import create, qemu_img_info


def test_schema_files_are_generated() -> None:
    """docs/schemas/*.json are exactly what docs/schemas/generate.py writes."""
    on_disk = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert on_disk == set(SCHEMAS)
    for name, schema in SCHEMAS.items():
        assert json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text()) == schema, name


def test_every_command_has_a_schema() -> None:
    from diskkit.cli.commands import COMMANDS

    assert set(COMMANDS) == set(SCHEMAS)
    for name, (_where, _help, args) in COMMANDS.items():
        assert any("--json" in flags for flags, _kw in args), f"{name} has no --json"


def test_info_and_check_agree_on_safe(cli_images: CliImages, run_env: dict[str, str]) -> None:
    """A fresh qemu-img qcow2 has no boot code: a boot finding, not an upload-safety one."""
    info = dk("info", cli_images.fresh_qcow2, "--json", env=run_env)
    out = validate("info", info.stdout)
    q = qemu_img_info(cli_images.fresh_qcow2, "qcow2")
    assert out["format"] == q["format"] and out["virtual_size"] == q["virtual-size"]
    assert out["actual_size"] == q["actual-size"]
    chk = dk("check", cli_images.fresh_qcow2, "--json", env=run_env)
    assert chk.returncode == 0, chk.stderr
    assert out["safe"] is validate("check", chk.stdout)["safe"] is True
    assert "no-boot-code" in {f["code"] for f in out["findings"]}


def test_info_partitions_count_from_1(cli_images: CliImages, run_env: dict[str, str]) -> None:
    out = validate("info", dk("info", cli_images.os_raw, "--json", env=run_env).stdout)
    sfdisk = json.loads(run(["sfdisk", "--json", str(cli_images.os_raw)]).stdout
                        )["partitiontable"]["partitions"]
    assert [p["number"] for p in out["partitions"]] == list(range(1, len(sfdisk) + 1))
    assert [p["start"] // 512 for p in out["partitions"]] == [p["start"] for p in sfdisk]


def test_diagnose_names_both_formats(cli_images: CliImages, run_env: dict[str, str]) -> None:
    r = dk("diagnose", cli_images.fresh_qcow2, "-f", "raw", "--json", env=run_env)
    out = validate("diagnose", r.stdout)
    assert (out["format"], out["open_format"]) == ("qcow2", "raw")
    assert r.returncode == 1


def test_boot_test_json(cli_images: CliImages, run_env: dict[str, str]) -> None:
    r = dk("boot-test", cli_images.fresh_qcow2, "--json", "--timeout", "40", env=run_env)
    out = validate("boot-test", r.stdout)
    assert out["open_format"] == "qcow2" and out["booted"] is False, out


def test_convert_json_uses_openstack_names(cli_images: CliImages, tmp_path: pathlib.Path,
                                           run_env: dict[str, str]) -> None:
    r = dk("convert", cli_images.fresh_qcow2, tmp_path / "out.vhd", "-O", "vpc", "--json",
           env=run_env)
    assert r.returncode == 0, r.stderr
    out = validate("convert", r.stdout)
    assert (out["source_format"], out["target_format"]) == ("qcow2", "vhd")
    assert qemu_img_info(tmp_path / "out.vhd", "vpc")["format"] == "vpc"  # what qemu calls it
    backed = create(tmp_path / "backed.qcow2", "qcow2", "64M",
                    f"backing_file={cli_images.os_raw},backing_fmt=raw")
    r = dk("convert", backed, tmp_path / "no.raw", "-O", "raw", "--json", env=run_env)
    assert r.returncode == 1
    assert validate("convert", r.stdout)["status"] == "refused"


def test_manifest_index_counts_from_1(cli_images: CliImages, tmp_path: pathlib.Path,
                                      run_env: dict[str, str]) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{cli_images.fresh_qcow2},a.raw,raw\n{cli_images.fresh_qcow2},"
                        f"b.vhd,vpc\n")
    r = dk("convert", "--manifest", manifest, "--json", env=run_env)
    assert r.returncode == 0, r.stderr
    out = validate("convert", r.stdout)
    assert [(i["index"], i["target_format"]) for i in out["items"]] == [(1, "raw"), (2, "vhd")]
    text = dk("convert", "--manifest", manifest, env=run_env).stdout  # skipped: already done
    assert text.splitlines()[0].startswith("#1 skipped")


def test_doctor_json(run_env: dict[str, str]) -> None:
    r = dk("doctor", "--json", "--no-kvm-probe", env=run_env)
    assert r.returncode == 0, r.stderr
    validate("doctor", r.stdout)


def test_validate_json(cli_images: CliImages, run_env: dict[str, str]) -> None:
    r = dk("validate", cli_images.os_raw, "--json", env=run_env)
    assert r.returncode in (0, 1, 5), r.stderr
    validate("validate", r.stdout)


def test_find_and_stat_json(cli_images: CliImages, run_env: dict[str, str]) -> None:
    r = dk("stat", cli_images.os_raw, "/etc/hostname", "--json", env=run_env)
    assert r.returncode == 0, r.stderr
    assert validate("stat", r.stdout)["size"] == len(HOSTNAME)
    r = dk("find", cli_images.os_raw, "/etc", "--json", env=run_env)
    assert r.returncode == 0, r.stderr
    paths = {x["path"] for x in validate("find", r.stdout)["results"]}
    assert {"/etc/hostname", "/etc/os-release", "/etc/fstab"} <= paths


@needs_root
def test_cat_json_text_and_binary(cli_images: CliImages, run_env: dict[str, str]) -> None:
    out = validate("cat", dk("cat", cli_images.os_raw, "/etc/hostname", "--json",
                             env=run_env).stdout)
    assert (out["encoding"], out["content"], out["size"]) == ("utf-8", HOSTNAME, len(HOSTNAME))
    out = validate("cat", dk("cat", cli_images.os_raw, "/bin/blob", "--json",
                             env=run_env).stdout)
    assert out["encoding"] == "base64" and base64.b64decode(out["content"]) == BLOB
    assert out["sha256"] == hashlib.sha256(BLOB).hexdigest()


@needs_root
def test_mount_umount_ls_cleanup_json(cli_images: CliImages, tmp_path: pathlib.Path,
                                      run_env: dict[str, str]) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = dk("mount", cli_images.os_raw, mnt, "-p", "2", "--json", env=run_env)
    assert r.returncode == 0, r.stderr
    try:
        out = validate("mount", r.stdout)
        assert out["mounts"][0]["location"] == "partition 2"
    finally:
        r = dk("umount", mnt, "--json", env=run_env)
    assert r.returncode == 0, r.stderr
    validate("umount", r.stdout)
    r = dk("ls", cli_images.os_raw, "/etc", "--json", env=run_env)
    names = {e["name"] for e in validate("ls", r.stdout)["entries"]}
    assert {"hostname", "os-release", "fstab"} <= names
    validate("cleanup", dk("cleanup", "--json", env=run_env).stdout)
    validate("cleanup", dk("cleanup", "--list", "--json", env=run_env).stdout)


@needs_root
def test_run_json(cli_images: CliImages, run_env: dict[str, str]) -> None:
    r = dk("run", cli_images.os_raw, "--json", "--", "sh", "-c",
           'cat "$DISKKIT_ROOT/etc/hostname"; exit 3', env=run_env)
    assert r.returncode == 3, r.stderr
    out = validate("run", r.stdout)
    assert out["exit_status"] == 3 and HOSTNAME in r.stderr  # COMMAND's output: stderr
    assert out["mounts"][0]["location"] == "partition 1" and out["mounts"][0]["mountpoint"] == "/"


@pytest.mark.parametrize("command", ["info", "check", "diagnose"])
def test_no_retired_keys(cli_images: CliImages, run_env: dict[str, str], command: str) -> None:
    doc = json.loads(dk(command, cli_images.os_raw, "--json", env=run_env).stdout)
    assert not {"detected_format", "allocated", "size"} & set(doc)


@pytest.mark.parametrize("command", ["info", "check", "diagnose"])
def test_api_to_json_is_what_the_cli_prints(cli_images: CliImages, run_env: dict[str, str],
                                            command: str) -> None:
    """docs/api.md: ``to_json()`` of the Python API is exactly the command's JSON."""
    import diskkit

    api = {"info": diskkit.inspect, "check": diskkit.check, "diagnose": diskkit.diagnose}
    doc = api[command](str(cli_images.os_raw)).to_json()
    cli = validate(command, dk(command, cli_images.os_raw, "--json", env=run_env).stdout)
    validate(command, json.dumps(doc))
    doc.pop("seconds", None)
    cli.pop("seconds", None)
    assert doc == cli
