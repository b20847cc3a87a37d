"""The fuzz harness shared by the short run (``tests/fuzz/test_fuzz.py``, in ``make test``),
the regression corpus (``tests/fuzz/corpus/``) and the long run (``bench/fuzz.py``).

Seeds are real images built at test time by real tools (qemu-img, sfdisk, sgdisk, mkfs.vfat,
xorriso, grub-mkimage) plus the hand-built LVM PV of tests/security/craft.py; a *case* is a
seed and a list of edits (byte writes at offsets, and an optional truncation). Every target
runs a parser, or the in-process ``info``/``diagnose`` pipeline, on the mutated bytes: a
DiskkitError (ImageError, UserError...) is a fine answer, any other exception is a crash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from diskkit.errors import DiskkitError, InternalError
from diskkit.runner import run

MiB = 1 << 20
GRUB_PC = pathlib.Path("/usr/lib/grub/i386-pc")


# --- seeds --------------------------------------------------------------------------------

def _mbr_disk(path: pathlib.Path) -> None:
    run(["truncate", "-s", "4M", str(path)], timeout=10)
    run(["sfdisk", "-q", str(path)], input=(
        "label: dos\nstart=2048, size=2048, type=83, bootable\nstart=4096, size=1024, type=c\n"
        "start=5120, type=5\nstart=5632, size=512, type=83\nstart=6656, size=512, type=82\n"),
        timeout=30)
    fat = path.with_suffix(".fat")
    run(["mkfs.vfat", "-C", str(fat), "512"], timeout=30)
    run(["mmd", "-i", str(fat), "::/EFI", "::/EFI/BOOT"], timeout=30)
    run(["dd", f"if={fat}", f"of={path}", "bs=512", "seek=4096", "conv=notrunc",
         "status=none"], timeout=30)
    fat.unlink()


def _gpt_disk(path: pathlib.Path) -> None:
    run(["truncate", "-s", "4M", str(path)], timeout=10)
    run(["sgdisk", "-q", "-n", "1:2048:+1M", "-t", "1:ef00", "-n", "2:0:+512K", "-t",
         "2:8300", "-n", "3:0:+256K", "-t", "3:ef02", str(path)], timeout=30)
    fat = path.with_suffix(".fat")
    run(["mkfs.vfat", "-C", str(fat), "1024"], timeout=30)
    run(["mmd", "-i", str(fat), "::/EFI", "::/EFI/BOOT"], timeout=30)
    efi = path.with_suffix(".efi")
    efi.write_bytes(b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40) + b"PE\0\0"
                    + struct.pack("<H", 0x8664) + bytes(200))
    run(["mcopy", "-i", str(fat), str(efi), "::/EFI/BOOT/BOOTX64.EFI"], timeout=30)
    run(["dd", f"if={fat}", f"of={path}", "bs=512", "seek=2048", "conv=notrunc",
         "status=none"], timeout=30)
    fat.unlink()
    efi.unlink()


def _grub_disk(path: pathlib.Path) -> None:
    """boot.img + a real core.img (grub-mkimage) embedded after the MBR, its blocklist set as
    grub-bios-setup would, one partition."""
    core = path.with_suffix(".core")
    run(["grub-mkimage", "-O", "i386-pc", "-p", "(hd0,msdos1)/boot/grub", "-o", str(core),
         "biosdisk", "part_msdos", "ext2"], timeout=60)
    data = core.read_bytes()
    core.unlink()
    buf = bytearray(2 * MiB)
    buf[0:440] = (GRUB_PC / "boot.img").read_bytes()[:440]
    struct.pack_into("<Q", buf, 0x5C, 1)
    struct.pack_into("<B3sB3sII", buf, 446, 0x80, b"\0\0\0", 0x83, b"\0\0\0", 2048, 2048)
    buf[510:512] = b"\x55\xaa"
    buf[512:512 + len(data)] = data
    struct.pack_into("<QHH", buf, 512 + 0x1F4, 2, -(-(len(data) - 512) // 512), 0x820)
    path.write_bytes(bytes(buf))


def _iso(path: pathlib.Path) -> None:
    root = path.with_suffix(".d")
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "boot.img").write_bytes(bytes(2048))
    fat = root / "boot" / "efi.img"
    run(["mkfs.vfat", "-C", str(fat), "256"], timeout=30)
    run(["mmd", "-i", str(fat), "::/EFI", "::/EFI/BOOT"], timeout=30)
    (root / "hello.txt").write_text("hi\n")
    run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(path), "-R", "-J",
         "-b", "boot/boot.img", "-no-emul-boot", "-boot-load-size", "4",
         "-eltorito-alt-boot", "-e", "boot/efi.img", "-no-emul-boot", str(root)], timeout=60)
    shutil.rmtree(root)


def _lvm(path: pathlib.Path) -> None:
    from tests.security.craft import lvm_pv, vg_text

    lvm_pv(path, vg_text(), size=5 * MiB)


#: Seed name -> (file suffix, builder over the MBR disk or on its own).
SEEDS: dict[str, str] = {
    "mbr": "raw", "gpt": "raw", "grub": "raw", "iso": "iso", "lvm": "raw", "lvm-text": "txt",
    "qcow2": "qcow2", "vmdk": "vmdk", "vmdk-stream": "vmdk", "vhd": "vhd", "vhdx": "vhdx",
    "vdi": "vdi",
}
#: The qemu-img -O format and options of the container seeds (made from the MBR disk).
_CONTAINERS = {"qcow2": ("qcow2", ()), "vmdk": ("vmdk", ()),
               "vmdk-stream": ("vmdk", ("-o", "subformat=streamOptimized")),
               "vhd": ("vpc", ()), "vhdx": ("vhdx", ()), "vdi": ("vdi", ())}


def build_seeds(d: pathlib.Path) -> dict[str, bytes]:
    """Every seed, built into ``d``; name -> bytes."""
    d.mkdir(parents=True, exist_ok=True)
    paths: dict[str, pathlib.Path] = {}
    for name, fn in (("mbr", _mbr_disk), ("gpt", _gpt_disk), ("grub", _grub_disk),
                     ("iso", _iso), ("lvm", _lvm)):
        p = d / f"{name}.{SEEDS[name]}"
        fn(p)
        paths[name] = p
    for name, (qfmt, opts) in _CONTAINERS.items():
        p = d / f"{name}.{SEEDS[name]}"
        run(["qemu-img", "convert", "-f", "raw", "-O", qfmt, *opts, str(paths["mbr"]), str(p)],
            timeout=60)
        paths[name] = p
    out = {name: p.read_bytes() for name, p in paths.items()}
    from tests.security.craft import vg_text

    out["lvm-text"] = vg_text()
    return out


# --- checksum fix-ups ---------------------------------------------------------------------

def _fix_lvm(data: bytearray) -> None:
    """The LVM seed's metadata header and text checksums (layout: tests/security/craft.py)."""
    from diskkit.layout.lvm import lvm_crc

    hdr = 4096
    if len(data) < hdr + 512:
        return
    off, length = struct.unpack_from("<QQ", data, hdr + 40)
    start = hdr + off
    if 0 < length <= 1 << 22 and start + length <= len(data):
        struct.pack_into("<I", data, hdr + 56, lvm_crc(bytes(data[start:start + length])))
    struct.pack_into("<I", data, hdr, lvm_crc(bytes(data[hdr + 4:hdr + 512])))


def _fix_gpt(data: bytearray) -> None:
    """The primary GPT's entry-array and header CRC32s (UEFI spec 5.3.2)."""
    import zlib

    if len(data) < 1024 or data[512:520] != b"EFI PART":
        return
    size = struct.unpack_from("<I", data, 512 + 12)[0]
    lba, count, esize = struct.unpack_from("<QII", data, 512 + 72)
    n = count * esize
    if lba == 2 and 0 < n <= 1 << 22 and 1024 + n <= len(data):
        struct.pack_into("<I", data, 512 + 88, zlib.crc32(bytes(data[1024:1024 + n])))
    if 92 <= size <= 512:
        struct.pack_into("<I", data, 512 + 16, 0)
        struct.pack_into("<I", data, 512 + 16, zlib.crc32(bytes(data[512:512 + size])))


FIXUPS: dict[str, Callable[[bytearray], None]] = {"lvm": _fix_lvm, "gpt": _fix_gpt}


# --- cases --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    """A seed and the edits that make it hostile (a regression corpus entry)."""

    seed: str
    edits: tuple[tuple[int, bytes], ...] = ()
    truncate: int | None = None
    target: str = "parsers"
    note: str = ""
    fixup: bool = False

    def apply(self, seeds: dict[str, bytes]) -> bytes:
        """The mutated bytes (an edit past the end grows the data; with ``fixup`` the
        checksums a parser checks first are made right again, so the mutation reaches what
        lies behind them)."""
        data = bytearray(seeds[self.seed])
        for off, chunk in self.edits:
            if off <= len(data):
                data[off:off + len(chunk)] = chunk
        if self.fixup and self.seed in FIXUPS:
            FIXUPS[self.seed](data)
        if self.truncate is not None:
            del data[self.truncate:]
        return bytes(data)

    def to_json(self) -> str:
        """The corpus file form."""
        return json.dumps({"seed": self.seed, "target": self.target, "note": self.note,
                           "truncate": self.truncate, "fixup": self.fixup,
                           "edits": [[off, chunk.hex()] for off, chunk in self.edits]},
                          indent=1)

    @classmethod
    def from_json(cls, text: str) -> Case:
        """A corpus file."""
        d = json.loads(text)
        return cls(d["seed"], tuple((int(o), bytes.fromhex(h)) for o, h in d["edits"]),
                   d.get("truncate"), d.get("target", "parsers"), d.get("note", ""),
                   bool(d.get("fixup", False)))


CORPUS = pathlib.Path(__file__).parent / "corpus"


def corpus() -> list[tuple[str, Case]]:
    """The regression cases kept in tests/fuzz/corpus/ (file name, case)."""
    return [(p.name, Case.from_json(p.read_text())) for p in sorted(CORPUS.glob("*.json"))]


# --- targets ------------------------------------------------------------------------------

class Crash(AssertionError):
    """A target raised something other than a DiskkitError."""


def _parsers(data: bytes) -> None:
    """detect, layout, boot and the LVM/VMDK text parsers over the bytes in memory."""
    from diskkit.boot import inspect_boot
    from diskkit.formats import vmdk_descriptor
    from diskkit.formats.detect import detect
    from diskkit.layout import inspect_layout
    from diskkit.layout.lvm_text import parse_text
    from diskkit.readers.base import BytesReader

    reader = BytesReader(data, name="fuzz")
    for step in (lambda: detect(reader).to_dict(),
                 lambda: _layout_boot(reader, inspect_layout, inspect_boot),
                 lambda: parse_text(data[:1 << 16].decode("latin-1")),
                 lambda: vmdk_descriptor.check(vmdk_descriptor.parse(data[:1 << 16]), 0,
                                               data[:512], embedded=False)):
        try:
            step()
        except InternalError:
            raise
        except DiskkitError:
            pass


def _layout_boot(reader: Any, inspect_layout: Callable[..., Any],
                 inspect_boot: Callable[..., Any]) -> None:
    layout = inspect_layout(reader)
    layout.to_dict()
    inspect_boot(reader, layout).to_dict()


def _pipeline(data: bytes, suffix: str) -> None:
    """The in-process ``info`` and ``diagnose`` on the bytes written to a private file."""
    from diskkit.diagnose import diagnose
    from diskkit.pipeline import inspect_target

    fd, path = tempfile.mkstemp(prefix="diskkit-fuzz-", suffix=f".{suffix}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        for step in (lambda: inspect_target(path).to_dict(), lambda: diagnose(path).to_dict()):
            try:
                step()
            except InternalError:
                raise
            except DiskkitError:
                pass
    finally:
        os.unlink(path)


def run_case(case: Case, seeds: dict[str, bytes]) -> None:
    """Run ``case``'s target; :class:`Crash` for any exception that is not a DiskkitError."""
    data = case.apply(seeds)
    try:
        if case.target == "pipeline":
            _pipeline(data, SEEDS[case.seed])
        else:
            _parsers(data)
    except InternalError as exc:  # diskkit's own "this is a bug"
        raise Crash(f"{case.seed}/{case.target}: InternalError: {exc}") from exc
    except DiskkitError:
        pass
    except Exception as exc:  # the definition of a crash
        raise Crash(f"{case.seed}/{case.target}: {type(exc).__name__}: {exc}") from exc


# --- mutations ----------------------------------------------------------------------------

#: Values that break length and offset arithmetic.
INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff",
               b"\x00\x00\x00\x80", b"\xff\xff\xff\xff\xff\xff\xff\x7f",
               b"\x00\x00\x00\x00\x00\x00\x00\x80", b"\x01\x00\x00\x00", b"\x00\x10\x00\x00"]


def hot_regions(seed: str, data: bytes) -> list[tuple[int, int]]:
    """Where the structures of a seed are (mutations go there mostly)."""
    regions = [(0, min(len(data), 4096))]
    if seed == "iso":
        regions += [(16 * 2048, 20 * 2048), (32 * 2048, 40 * 2048)]
    if seed in ("mbr", "gpt"):
        regions += [(2048 * 512, 2048 * 512 + 4096), (4096 * 512, 4096 * 512 + 4096),
                    (5120 * 512, 5120 * 512 + 512), (5632 * 512 - 512, 5632 * 512)]
    if seed == "grub":
        regions += [(512, 512 + 2048)]
    if seed == "lvm":
        regions += [(4096, 4096 + 2048), (512, 1024)]
    if seed == "lvm-text":
        regions = [(0, len(data))]
    if seed in ("vhd", "vhdx", "vdi", "qcow2", "vmdk", "vmdk-stream"):
        regions += [(max(0, len(data) - 512), len(data)), (0, min(len(data), 1 << 18))]
    return [(a, b) for a, b in regions if a < b <= len(data)]


def mutations(draw: Callable[..., Any], st: Any, seed: str, data: bytes) -> Case:
    """A hypothesis-drawn Case over ``seed`` (``draw`` and ``st`` from hypothesis)."""
    regions = hot_regions(seed, data)
    n = draw(st.integers(1, 8))
    edits = []
    for _ in range(n):
        lo, hi = draw(st.sampled_from(regions))
        off = draw(st.integers(lo, hi - 1))
        chunk = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=8)))
        edits.append((off, chunk))
    truncate = draw(st.one_of(st.none(), st.none(), st.none(), st.integers(0, len(data))))
    fixup = seed in FIXUPS and draw(st.booleans())
    return Case(seed, tuple(edits), truncate, fixup=fixup)


@contextlib.contextmanager
def seed_dir() -> Iterator[pathlib.Path]:
    """A private directory for seeds, removed afterwards."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="diskkit-fuzz-seeds-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
