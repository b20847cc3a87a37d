"""Writes docs/schemas/<command>.schema.json (JSON Schema draft 2020-12), one per command.

    .venv/bin/python docs/schemas/generate.py

The schemas state the JSON vocabulary of docs/json.md: every command's output is validated
against its schema by tests/cli/test_json_schemas.py, with the real command's output. Keys
the vocabulary retired (``detected_format``, ``allocated``, a disk's ``size``) are refused
where they used to appear. Objects stay open (new keys may be added); the keys listed are
required and typed.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
DRAFT = "https://json-schema.org/draft/2020-12/schema"

NULL_INT = {"type": ["integer", "null"], "minimum": 0}
NULL_STR = {"type": ["string", "null"]}
NULL_BOOL = {"type": ["boolean", "null"]}
STR = {"type": "string"}
INT = {"type": "integer", "minimum": 0}
BOOL = {"type": "boolean"}
NUM = {"type": "number", "minimum": 0}
#: A format name: OpenStack's (diskkit's), never qemu's driver name where they differ.
FORMAT = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$", "not": {"enum": ["vpc"]}}
NULL_FORMAT = {"anyOf": [FORMAT, {"type": "null"}]}

EVIDENCE = {
    "type": "object", "required": ["note"],
    "properties": {"note": STR, "offset": INT, "space": STR,
                   "bytes": {"type": "string", "pattern": "^([0-9a-f]{2})*$"}},
}
FINDING = {
    "type": "object", "required": ["code", "severity", "message", "evidence", "fix"],
    "properties": {
        "code": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "severity": {"enum": ["info", "warning", "error", "critical"]},
        "message": STR, "evidence": {"type": "array", "items": {"$ref": "#/$defs/evidence"}},
        "fix": NULL_STR, "details": {"type": "object"},
    },
}
FINDINGS = {"type": "array", "items": {"$ref": "#/$defs/finding"}}
#: boot-test's stages (diagnose ``reaches``, boot-test ``stage``).
REACHES = ["firmware", "boot-loader", "kernel", "initramfs", "userspace", "login"]
#: One link of diagnose's boot chain.
STAGE = {
    "type": "object", "required": ["stage", "verdict", "reason", "evidence", "outcome",
                                   "findings"],
    "properties": {
        "stage": {"enum": ["firmware", "boot-code", "boot-loader", "kernel", "initramfs",
                           "root-filesystem", "init", "login"]},
        "verdict": {"enum": ["ok", "fails", "cannot-tell", "not-checked"]},
        "reason": STR, "evidence": {"type": "array", "items": STR}, "outcome": NULL_STR,
        "findings": {"type": "array", "items": STR},
    },
}
#: Keys retired by the one vocabulary (docs/json.md): never at the top of a command's output.
RETIRED = {"not": {"anyOf": [{"required": ["detected_format"]}, {"required": ["allocated"]}]}}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None,
        **extra: Any) -> dict[str, Any]:
    """An open object whose ``required`` keys must be present."""
    return {"type": "object", "required": list(required),
            "properties": {**required, **(optional or {})}, **extra}


def arr(items: dict[str, Any]) -> dict[str, Any]:
    """An array of ``items``."""
    return {"type": "array", "items": items}


def schema(command: str, title: str, body: dict[str, Any]) -> dict[str, Any]:
    """A complete schema document for ``command``."""
    out = {"$schema": DRAFT,
           "$id": f"https://diskkit.invalid/schemas/{command}.schema.json",
           "title": f"diskkit {command} --json", "description": title}
    out.update(body)
    out.setdefault("allOf", []).append(RETIRED)
    out["$defs"] = {"finding": FINDING, "evidence": EVIDENCE}
    return out


MOUNT_ROW = obj({"location": STR, "fstype": STR, "path": STR, "mountpoint": STR},
                {"device": NULL_STR})
SKIPPED = obj({"spec": STR, "mountpoint": STR, "reason": STR})
FILE_STAT = obj({"path": STR, "kind": {"enum": ["file", "dir", "symlink", "other"]},
                 "size": NULL_INT, "link_target": NULL_STR},
                {"mode": NULL_STR, "uid": NULL_INT, "gid": NULL_INT,
                 "mtime": {"type": ["number", "null"]}, "inode": NULL_INT})
REPORT = {"target": STR, "format": FORMAT, "formats_matched": arr(FORMAT),
          "virtual_size": NULL_INT, "actual_size": NULL_INT, "file_size": NULL_INT,
          "safe": BOOL, "findings": FINDINGS}
CONVERTED = obj({"status": {"const": "converted"}, "source": STR, "target": STR,
                 "source_format": FORMAT, "target_format": FORMAT, "virtual_size": NULL_INT,
                 "required_bytes": INT, "available_bytes": NULL_INT, "target_bytes": NULL_INT,
                 "convert_seconds": NUM, "verify_seconds": NUM, "seconds": NUM,
                 "verified": NULL_BOOL, "command": arr(STR), "findings": FINDINGS},
                {"throughput_bytes_per_second": NULL_INT, "finish_seconds": NUM,
                 "verify_method": {"enum": ["qemu-img", "digest", None]},
                 "copied_by": {"enum": ["qemu-img", "diskkit"]}})
REFUSED = obj({"status": {"const": "refused"}, "source": STR, "target": STR,
               "findings": FINDINGS})
ITEM = obj({"index": {"type": "integer", "minimum": 1}, "status":
            {"enum": ["converted", "skipped", "refused", "failed"]}, "source": STR,
            "target": STR, "target_format": FORMAT},
           {"error": obj({"code": STR, "message": STR})})

SCHEMAS: dict[str, dict[str, Any]] = {
    "info": schema("info", "What an image is: format, sizes, details, sections, findings.", obj(
        {**REPORT, "details": {"type": "object"}},
        {"partition_table_signature": {"type": ["object", "null"]},
         "partitions": arr(obj({"number": {"type": "integer", "minimum": 1},
                                "start": INT, "size": INT})),
         "filesystems": arr(obj({"location": STR, "type": STR})),
         "boot": {"type": "object"}, "backing_file": NULL_STR, "data_file": NULL_STR})),
    "check": schema("check", "Upload safety; the damaged-image form has no formats_matched.",
                    obj({"target": STR, "format": NULL_FORMAT, "virtual_size": NULL_INT,
                         "file_size": NULL_INT, "safe": BOOL, "findings": FINDINGS,
                         "declared_format": NULL_STR},
                        {"formats_matched": arr(FORMAT), "actual_size": NULL_INT,
                         "glance_accepts": NULL_BOOL, "nova_accepts": NULL_BOOL})),
    "diagnose": schema("diagnose", "Will it boot: format = the bytes, open_format = what the "
                       "hypervisor is told.", obj(
                           {"target": STR, "format": FORMAT, "open_format": FORMAT,
                            "firmware": {"enum": ["bios", "uefi"]},
                            "as": {"enum": ["disk", "cdrom"]}, "will_boot": NULL_BOOL,
                            "reason": STR, "cause": NULL_STR, "findings": FINDINGS,
                            "facts": {"type": "object"}, "seconds": NUM,
                            "bus": {"enum": ["virtio", "scsi", "sata", "ide"]},
                            "reaches": {"enum": [None, *REACHES]}, "outcome": NULL_STR,
                            "os_followed": BOOL, "stages": arr(STAGE)},
                           {"verify": obj({"agree": NULL_BOOL, "outcome": STR},
                                          {"compared": {"type": "object"}})})),
    "boot-test": schema("boot-test", "A boot under real firmware.", obj(
        {"outcome": STR, "booted": NULL_BOOL, "loader": NULL_STR,
         "firmware": {"enum": ["bios", "uefi"]}, "as": {"enum": ["disk", "cdrom"]}, "bus": STR,
         "open_format": FORMAT, "accel": STR, "seconds": NUM, "firmware_messages": arr(STR),
         "screen": STR, "screenshot": NULL_STR},
        {"console": STR, "until": {"enum": ["loader", "login"]}, "stage": NULL_STR,
         "evidence": arr(STR), "expected": NULL_STR, "as_expected": NULL_BOOL})),
    "convert": schema("convert", "One conversion (converted or refused), or a manifest's "
                      "items (index from 1) and summary.",
                      {"oneOf": [CONVERTED, REFUSED, obj(
                          {"items": arr(ITEM), "summary": obj(
                              {"converted": INT, "skipped": INT, "refused": INT,
                               "failed": INT})})]}),
    "scan": schema("scan", "Every image of a Ceph pool.", obj(
        {"pool": STR, "namespace": NULL_STR, "images": INT, "bootability": STR,
         "rows": arr({**obj({"image": STR, "spec": STR, "virtual_size": NULL_INT,
                             "actual_size": NULL_INT, "format": NULL_FORMAT,
                             "parent": NULL_STR, "parent_format": NULL_FORMAT,
                             "raw": NULL_BOOL, "safe": NULL_BOOL, "will_boot": NULL_BOOL,
                             "findings": arr(STR), "flagged": BOOL, "error": NULL_STR}),
                      "not": {"anyOf": [{"required": ["size"]},
                                        {"required": ["allocated"]}]}}),
         "not_raw": arr(STR), "flagged": arr(STR), "seconds": NUM})),
    "mount": schema("mount", "What a mount made.", obj(
        {"root": STR, "backend": {"enum": ["loop", "nbd", "guestfs"]}, "run": STR,
         "mounts": arr(MOUNT_ROW), "skipped": arr(SKIPPED)})),
    "umount": schema("umount", "What umount undid.",
                     obj({"root": STR, "run": STR, "unmounted": {"const": True}})),
    "run": schema("run", "The mounts made for COMMAND and its exit status.", obj(
        {"target": STR, "command": {**arr(STR), "minItems": 1},
         "exit_status": {"type": "integer", "minimum": 0, "maximum": 255},
         "backend": {"enum": ["loop", "nbd", "guestfs"]}, "run": STR,
         "mounts": arr(MOUNT_ROW), "skipped": arr(SKIPPED)})),
    "cat": schema("cat", "A guest file: its metadata and its content in the named encoding.",
                  obj({"path": STR, "type": {"const": "file"}, "size": INT,
                       "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                       "encoding": {"enum": ["utf-8", "base64"]}, "content": STR})),
    "ls": schema("ls", "A guest directory's entries.", obj(
        {"path": STR, "entries": arr(obj({"name": STR, "type": STR, "size": NULL_INT}))})),
    "cleanup": schema("cleanup", "What was cleaned up, or (--list) the runs.", {"oneOf": [
        obj({"cleaned": arr(obj({"run": STR, "mountpoint": NULL_STR, "undone": arr(STR)},
                                {"error": STR}))}),
        obj({"runs": arr(obj({"run": STR, "mountpoint": NULL_STR, "target": NULL_STR,
                              "complete": BOOL, "owner_alive": BOOL, "steps": arr(STR)}))}),
    ]}),
    "doctor": schema("doctor", "What this host can do.", obj(
        {"checks": arr(obj({"name": STR, "kind": STR, "ok": NULL_BOOL, "detail": STR,
                            "needed_for": STR, "fix": NULL_STR})),
         "missing": arr(STR)})),
    "validate": schema("validate", "Upload safety, Glance's verdict, readiness, properties.",
                       obj({"target": STR, "verdict": STR, "exit_code": INT,
                            "upload": obj({"format": NULL_FORMAT, "virtual_size": NULL_INT,
                                           "safe": BOOL, "findings": FINDINGS}),
                            "readiness": FINDINGS})),
    "find": schema("find", "Guest files by name and kind.", obj(
        {"top": STR, "results": arr(FILE_STAT), "truncated": BOOL})),
    "stat": schema("stat", "A guest file's metadata.", FILE_STAT),
}


def main() -> None:
    """Write every schema file (and nothing else)."""
    for name, s in SCHEMAS.items():
        (HERE / f"{name}.schema.json").write_text(json.dumps(s, indent=2) + "\n")


if __name__ == "__main__":
    main()
