"""The command table: every command's name, handler and arguments, in one place.

``diskkit`` builds its argparse parser from :data:`COMMANDS` and imports a command's module
only when that command runs, so ``diskkit info --json`` never pays for ``convert``, ``rich``
or ``boot-test``. This module imports nothing but the standard library's ``argparse`` types it
names (no typer, no pydantic: see docs/cli.md "Start-up time").

To add a command: write ``diskkit/cli/<name>.py`` with a function taking the argument
``dest`` names as keyword arguments and returning the exit code (``int``, ``None`` = 0), then
add one entry here::

    "stat": ("diskkit.cli.stat:stat", "Show a guest file's metadata.",
             [TARGET, _a("path", help="Path inside the guest."), JSON]),

Each argument is ``_a(*flags, **kwargs)``: ``flags`` and ``kwargs`` are exactly those of
``argparse.ArgumentParser.add_argument``. Bad values (``type=`` raising ``ValueError`` or
``argparse.ArgumentTypeError``) become one line and exit 2.
"""

from __future__ import annotations

import argparse

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Arg = tuple[tuple[str, ...], dict[str, Any]]


def _a(*flags: str, **kwargs: Any) -> Arg:
    return flags, kwargs


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in the range {low}..{high}")
        return value

    parse.__name__ = "integer"
    return parse


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (partition numbers count from 1)."""
    return int_range(1, 1 << 31)(text)


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


TARGET = _a("target", metavar="TARGET", help="Image path, nbd:// URI or rbd:POOL/IMAGE.")
JSON = _a("--json", dest="json_out", action="store_true", help="Print JSON (docs/json.md).")
_MOUNT_TARGET = _a("target", metavar="TARGET",
                   help="Image file, rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=USER] or NBD URI.")
_PARTITION = _a("--partition", "-p", type=positive_int, metavar="N",
                help="Partition number (as sfdisk counts, from 1).")
_LV = _a("--lv", metavar="VG/LV", help="Logical volume, VG/LV.")
_OS = _a("--os", dest="os_root", action="store_true",
         help="Find the OS root and mount its fstab tree (the default when there is an OS).")
_BACKEND = _a("--backend", "-b", default="auto", metavar="B",
              help="auto, loop, nbd or guestfs (default: auto).")
_SELECT = [_PARTITION, _LV, _OS, _BACKEND]
_FIRMWARE_FORMAT_HELP = "The format the hypervisor opens it with (default: detected)."

#: name -> ("module:function", one-line help, arguments). Keep one command per entry.
COMMANDS: dict[str, tuple[str, str, list[Arg]]] = {
    "info": ("diskkit.cli.info:info",
             "Show what an image is: format, sizes, details, sections and findings.",
             [TARGET, JSON,
              _a("--format", "-f", dest="fmt", metavar="FORMAT",
                 help="Read the disk as this format (detection still runs)."),
              _a("--svg", metavar="FILE",
                 help="Also write the disk layout, drawn to scale, as SVG.")]),
    "check": ("diskkit.cli.check:check",
              "Run every safety check; exit 1 when a finding blocks upload.",
              [TARGET,
               _a("--disk-format", metavar="F",
                  help="The format the image is declared as (Glance disk_format)."),
               JSON]),
    "validate": ("diskkit.cli.validate:validate_cmd",
                 "Before upload: Glance's own verdict, cloud readiness, and the image "
                 "properties to set; exit 0 ready, 1 blocked, 5 ready with warnings.",
                 [TARGET,
                  _a("--disk-format", metavar="F",
                     help="Glance disk_format it will be created with (default: detected)."),
                  _a("--container-format", metavar="C",
                     help="Glance container_format (default: bare)."),
                  _a("--cloud", default="openstack", help="The cloud (openstack)."),
                  JSON]),
    "diagnose": ("diskkit.cli.diagnose:diagnose_cmd",
                 "Say whether the target will boot, why not, and the fix.",
                 [TARGET,
                  _a("-f", "--format", dest="fmt", metavar="FORMAT",
                     help="The format the hypervisor opens it with (a Ceph volume is raw). "
                     "Default: raw for rbd:, else the detected format."),
                  _a("--firmware", default="auto",
                     help="bios, uefi, or auto (BIOS: Nova's default)."),
                  _a("--as", dest="media", default="disk", help="disk or cdrom."),
                  _a("--bus", default="virtio", choices=("virtio", "scsi", "sata", "ide"),
                     help="The disk bus (Nova's hw_disk_bus; default virtio)."),
                  _a("--verify", dest="do_verify", action="store_true",
                     help="Boot it under real firmware and compare."),
                  _a("--timeout", type=seconds, default=None,
                     help="Seconds for the --verify boot (default 60 to the boot loader, "
                     "600 to the login prompt)."),
                  JSON]),
    "boot-test": ("diskkit.cli.boot_test:boot_test_cmd",
                  "Boot the target (never written: a snapshot overlay) and report the outcome.",
                  [TARGET,
                   _a("-f", "--format", dest="fmt", metavar="FORMAT",
                      help=_FIRMWARE_FORMAT_HELP),
                   _a("--firmware", default="bios", help="bios (SeaBIOS) or uefi (OVMF)."),
                   _a("--as", dest="media", default="disk", help="disk or cdrom."),
                   _a("--bus", default="virtio", help="virtio, ide, sata or scsi."),
                   _a("--timeout", type=seconds, default=60.0,
                      help="Give up after this many seconds (default 60)."),
                   _a("--screenshot", metavar="PNG",
                      help="Save the screen as a PNG at the end."),
                   _a("--until", default="loader",
                      help="loader (stop at the boot loader or kernel) or login (boot to the "
                      "login prompt or where it stops; give --timeout 600 under TCG)."),
                   _a("--expect", metavar="OUTCOME",
                      help="The outcome the guest should reach (default with --until login: "
                      "login); exit 0 only when it does."),
                   JSON]),
    "convert": ("diskkit.cli.convert:convert",
                "Convert a disk image safely: detect and check the source, measure the room, "
                "convert with qemu-img under a temporary name, verify, rename.",
                [_a("source", nargs="?", metavar="SOURCE",
                    help="Image to convert: path, nbd:// URI or rbd: spec."),
                 _a("target", nargs="?", metavar="TARGET",
                    help="Output: path, block device, nbd:// or rbd:."),
                 _a("--output-format", "-O", metavar="FORMAT",
                    help="Output format: raw, qcow2, vmdk, vhd, vhdx, vdi."),
                 _a("--source-format", "-f", metavar="FORMAT",
                    help="Declared source format (refused if it disagrees with the "
                    "detected one)."),
                 _a("--compress", "-c", action="store_true", help="Compressed qcow2/vmdk."),
                 _a("--preallocate", action="store_true", help="Allocate the output fully."),
                 _a("--no-verify", action="store_true",
                    help="Skip the verification of the output against the source."),
                 _a("--copier", choices=("auto", "qemu-img"), default="auto",
                    help="Into a new RBD image: diskkit copies a raw or qcow2 source itself "
                    "through librbd (auto), or qemu-img always copies."),
                 _a("--force", action="store_true", help="Replace an existing target."),
                 _a("--allow-unsafe", action="store_true",
                    help="Convert a source whose safety checks fail."),
                 _a("--jobs", "-m", type=int_range(1, 16), metavar="N",
                    help="qemu-img coroutines (default 16); with --manifest, conversions run "
                    "at once (default 2)."),
                 _a("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                    help="Output format option KEY=VALUE (qemu-img -o)."),
                 _a("--manifest", metavar="FILE",
                    help="JSON or CSV list of conversions (source, target, format)."),
                 _a("--json", dest="json_out", action="store_true",
                    help="Print the result as JSON.")]),
    "scan": ("diskkit.cli.scan:scan",
             "Check every image of a Ceph pool; exit 1 when any is not raw, unsafe or "
             "unreadable.",
             [_a("pool", metavar="rbd:POOL",
                 help="The pool: rbd:POOL[:conf=PATH][:id=USER][:keyring=PATH]."),
              _a("--namespace", "-n", metavar="NS",
                 help="Only the images in this RBD namespace."),
              _a("--jobs", "-j", type=int_range(1, 64), default=4, metavar="N",
                 help="Images checked at the same time (default 4)."),
              JSON]),
    "mount": ("diskkit.cli.mount:mount",
              "Mount an image read-only (never replaying a journal); `diskkit umount DIR` "
              "undoes it.",
              [_MOUNT_TARGET, _a("directory", metavar="DIR", help="Empty directory to mount at."),
               *_SELECT, JSON]),
    "umount": ("diskkit.cli.mount:umount",
               "Unmount and detach, in reverse, everything `diskkit mount` made for DIR.",
               [_a("directory", metavar="DIR", help="Where `diskkit mount` mounted."), JSON]),
    "run": ("diskkit.cli.mount:run",
            "Mount, run COMMAND with the root in $DISKKIT_ROOT, tear down; exit with its "
            "status.",
            [_MOUNT_TARGET, _a("command", nargs="+", metavar="COMMAND",
                               help="The command, after `--`."),
             *_SELECT,
             _a("--timeout", type=seconds, default=3600.0,
                help="Seconds COMMAND may run (default 3600)."),
             JSON]),
    "cat": ("diskkit.cli.mount:cat",
            "Print a file of the image (symlinks resolved inside the guest, never on the host).",
            [_MOUNT_TARGET, _a("path", help="Path inside the guest, e.g. /etc/fstab."),
             *_SELECT, JSON]),
    "ls": ("diskkit.cli.mount:ls_", "List a directory of the image.",
           [_MOUNT_TARGET, _a("path", nargs="?", default="/", help="Directory inside the guest."),
            *_SELECT, JSON]),
    "find": ("diskkit.cli.find:find",
             "Find files in the image by name and kind (no root, no mount where possible).",
             [_MOUNT_TARGET, _a("top", nargs="?", default="/", metavar="DIR",
                                help="Directory inside the guest to search (default /)."),
              _a("--name", metavar="GLOB", help="Only names matching this glob, e.g. '*.cfg'."),
              _a("--type", dest="kind", choices=["file", "dir", "symlink", "other"],
                 help="Only entries of this kind."),
              _a("--max-depth", type=int_range(0, 4096), default=64, metavar="N",
                 help="Directory levels below DIR (default 64)."),
              _a("--limit", type=int_range(1, 10_000_000), default=10_000, metavar="N",
                 help="Most results (default 10000)."),
              *_SELECT, JSON]),
    "stat": ("diskkit.cli.stat:stat",
             "Show a guest file's metadata (kind, size, mode, owner, mtime, link target).",
             [_MOUNT_TARGET, _a("path", help="Path inside the guest."),
              _a("--no-follow", dest="no_follow", action="store_true",
                 help="Describe a final symlink itself, not what it points to."),
              *_SELECT, JSON]),
    "cleanup": ("diskkit.cli.mount:cleanup",
                "Undo what crashed diskkit runs left attached (loop, nbd, dm, mounts, qemu "
                "daemons).",
                [_a("--all", dest="all_runs", action="store_true",
                    help="Undo every diskkit mount, not only the leftovers of crashed runs."),
                 _a("--list", dest="list_only", action="store_true", help="Only list the runs."),
                 JSON]),
    "doctor": ("diskkit.cli.doctor:doctor",
               "Check kernel modules, programs, Python bindings, FUSE and KVM; say what is "
               "missing.",
               [JSON, _a("--no-kvm-probe", action="store_true",
                         help="Skip the KVM probe (a few seconds).")]),
}
