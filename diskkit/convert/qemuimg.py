"""qemu-img command lines, and running ``qemu-img convert`` with its progress read live.

The options (see docs/convert.md and docs/benchmarks.md "## Conversion" for the measurements):
- ``-f``/``-O`` always: qemu never probes a format (CVE-2008-2004, CVE-2024-40767).
- ``-p``: progress lines ``    (12.34/100%)\\r`` on stdout, parsed by :func:`parse_progress`.
- ``-m 16 -W`` unless compressing: 16 coroutines (qemu's maximum) with out-of-order writes;
  ``-W`` is not allowed with ``-c``, and is left out for VMDK sources (measured slower).
- ``-S 4k``: runs of 4 KiB of zeros become holes (sparse output).
- ``-t writeback``: the output is flushed before qemu-img exits, so a renamed file is on
  disk; ``-t none`` (O_DIRECT) measured slower on virtio disks, qemu-img's own default
  (``unsafe``) never flushes.
- ``-n [--target-is-zero]``: the target exists already (a block device, an NBD export, an RBD
  image created with librbd).
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from diskkit.errors import CommandError, CommandTimeout, UserError
from diskkit.formats import registry
from diskkit.runner import run, spawn

#: Test hook: a rate limit (bytes/s) given to ``qemu-img convert -r`` to slow it down.
RATE_LIMIT_ENV = "DISKKIT_CONVERT_RATE_LIMIT"
#: Option keys that would make qemu-img open or write other host files: never passed through.
FORBIDDEN_OPTIONS = ("backing_file", "backing_fmt", "data_file", "data_file_raw", "encrypt",
                     "key-secret")

_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


@dataclass(frozen=True)
class ConvertOptions:
    """How to run one ``qemu-img convert``."""

    src_format: str
    out_format: str
    compress: bool = False
    preallocate: bool = False
    coroutines: int = 16
    #: qemu-img ``-o`` options (``key=value``), already validated.
    options: tuple[str, ...] = ()
    #: The target exists (``-n``); ``target_is_zero`` adds ``--target-is-zero``.
    no_create: bool = False
    target_is_zero: bool = False
    cache: str = "writeback"
    #: ``-W``: out-of-order writes (see :func:`out_of_order`).
    out_of_order: bool = False


def create_options(out_format: str, options: tuple[str, ...]) -> tuple[str, ...]:
    """``options`` plus the options the registry says qemu-img needs to create the format
    faithfully (``create_options``: vpc ``force_size=on``, the exact virtual size) that the
    user did not set; a user's ``-o`` for the same key wins."""
    info = registry.by_qemu(out_format)
    keys = {o.split("=", 1)[0] for o in options}
    extra = info.create_options if info is not None else ()
    return options + tuple(o for o in extra if o.split("=", 1)[0] not in keys)


def out_of_order(src_format: str, out_format: str, target_kind: str) -> bool:
    """Whether ``-W`` helps (measured, docs/convert.md "Options chosen"): into RBD, where it
    lets writes overlap network round trips; not into local files, where it was no faster
    (raw, qcow2, vdi, vpc outputs) or slower (vhdx outputs, VMDK sources: qemu's vmdk driver
    serialises its requests)."""
    return target_kind == "rbd" and src_format != "vmdk"


def check_options(opts: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Split comma lists and refuse options that name other files (backing, data file)."""
    out: list[str] = []
    for chunk in opts:
        for item in chunk.split(","):
            item = item.strip()
            if not item:
                continue
            key = item.split("=", 1)[0].strip()
            if "=" not in item or any(key.startswith(f) for f in FORBIDDEN_OPTIONS):
                raise UserError(f"-o {item!r}: not allowed", code="bad-option",
                                hint="give format options as key=value; backing and data "
                                "files are never set by diskkit")
            out.append(item)
    return tuple(out)


def _preallocation(fmt: str) -> list[str]:
    info = registry.by_qemu(fmt)
    if info is not None and info.preallocate_options is not None:
        return list(info.preallocate_options)
    raise UserError(f"--preallocate is not supported for {fmt}", code="bad-option",
                    hint="preallocate raw, qcow2, vdi, vhd or vhdx outputs")


def convert_argv(o: ConvertOptions, src: str, dst: str) -> list[str]:
    """The full ``qemu-img convert`` command line for ``o``."""
    options = list(create_options(o.out_format, o.options))
    if o.compress:
        out = registry.by_qemu(o.out_format)
        if out is None or out.compress_options is None:
            raise UserError(f"--compress is not supported for {o.out_format}",
                            code="bad-option", hint="compress qcow2 or vmdk outputs")
        options += [x for x in out.compress_options
                    if x.split("=")[0] not in {y.split("=")[0] for y in options}]
    if o.preallocate:
        options += [x for x in _preallocation(o.out_format)
                    if x.split("=")[0] not in {y.split("=")[0] for y in options}]
    argv = ["qemu-img", "convert", "-p", "-f", o.src_format, "-O", o.out_format,
            "-t", o.cache, "-S", "4k", "-m", str(max(1, min(16, o.coroutines)))]
    if o.compress:
        argv.append("-c")
    elif o.out_of_order:
        argv.append("-W")
    rate = os.environ.get(RATE_LIMIT_ENV)
    if rate:
        argv += ["-r", rate]
    if options and not o.no_create:
        argv += ["-o", ",".join(options)]
    if o.no_create:
        argv.append("-n")
        if o.target_is_zero:
            argv.append("--target-is-zero")
    return [*argv, src, dst]


def parse_progress(buffer: bytes) -> tuple[float | None, bytes]:
    """The last percentage in ``buffer`` (None when there is none) and the unparsed tail."""
    last = None
    end = 0
    for m in _PROGRESS.finditer(buffer):
        last = float(m.group(1))
        end = m.end()
    tail = buffer[end:] if last is not None else buffer[-64:]
    return last, tail


class Cancelled(KeyboardInterrupt):
    """A conversion stopped because another thread asked (batch interrupted)."""


def run_convert(argv: list[str], *, timeout: float,
                on_progress: Callable[[float], None] | None = None,
                cancel: threading.Event | None = None) -> float:
    """Run ``qemu-img convert`` feeding percentages to ``on_progress``; return seconds taken.

    On a timeout, Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI) or ``cancel``, the
    qemu-img process group is killed and reaped (by :func:`diskkit.runner.spawn`) before the
    exception propagates, so the caller can remove the partial output safely.
    """
    started = time.monotonic()
    deadline = started + timeout
    with tempfile.TemporaryFile() as errf, \
            spawn(argv, stdout=subprocess.PIPE, stderr=errf) as proc:  # type: ignore[arg-type]
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending = b""
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if time.monotonic() > deadline:
                raise CommandTimeout(f"qemu-img convert did not finish within {timeout:g} s "
                                     "and was stopped", argv=argv)
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            pct, pending = parse_progress(pending + chunk)
            if pct is not None and on_progress is not None:
                on_progress(pct)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        if rc != 0:
            errf.seek(0)
            stderr = errf.read().decode(errors="replace")
            last = next((ln for ln in reversed(stderr.strip().splitlines()) if ln.strip()),
                        "no message")
            raise CommandError(f"qemu-img convert failed (exit {rc}): {last}", argv=argv,
                               returncode=rc, stderr=stderr)
    return time.monotonic() - started


def compare(src: str, src_format: str, dst: str, dst_format: str, *,
            timeout: float, strict: bool = False) -> tuple[bool, str]:
    """``qemu-img compare -f A -F B [-s]``: (identical, qemu-img's message).

    A difference in guest-visible size is a failure even without ``strict`` (qemu-img
    itself only warns when the longer image's tail reads as zeros): a disk that grew or
    shrank is not the same disk. ``strict`` (``-s``) also fails where one image has data
    the other has as unallocated zeros."""
    argv = ["qemu-img", "compare", "-f", src_format, "-F", dst_format]
    if strict:
        argv.append("-s")
    res = run([*argv, src, dst], timeout=timeout, check=False)
    message = (res.stdout + res.stderr).strip().splitlines()
    text = message[-1] if message else ""
    if any("size mismatch" in line.lower() for line in message):
        return False, "the guest-visible sizes differ (qemu-img compare: Image size mismatch)"
    if res.returncode == 0:
        return True, text
    if res.returncode == 1:
        return False, text
    raise CommandError(f"qemu-img compare failed (exit {res.returncode}): {text}",
                       argv=list(res.argv), returncode=res.returncode, stderr=res.stderr)
