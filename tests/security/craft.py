"""Hostile images built at test time (by hand, byte by byte, from the formats' specifications,
on top of real tools' output where one helps), and a way to run the CLI on them under limits.
"""

from __future__ import annotations

import os
import pathlib
import resource
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass

from diskkit.layout.lvm import INITIAL_CRC, MDA_MAGIC, lvm_crc
from tests.helpers import create, qemu_img

MiB = 1 << 20


@dataclass(frozen=True)
class Limited:
    """What a CLI run under limits gave."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    #: Peak resident memory of the process, in bytes.
    peak_rss: int


#: Runs ``python -m diskkit ARGS`` in this fresh process and writes its peak memory (VmHWM:
#: the peak since exec; ru_maxrss would also carry the peak of the process that forked it,
#: the test runner's own, hundreds of MB late in a full run) to the file $DISKKIT_TEST_HWM.
_WRAP = r"""
import os, runpy, sys
sys.argv = ["diskkit", *sys.argv[1:]]
try:
    runpy.run_module("diskkit", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(os.environ["DISKKIT_TEST_HWM"], "w") as f:
        f.write(str(kb))
"""


def run_limited(*args: str, address_space: int = 2 << 30, timeout: float = 60,
                env: dict[str, str] | None = None) -> Limited:
    """``python -m diskkit ARGS`` with RLIMIT_AS = ``address_space`` and a timeout; its peak
    RSS (VmHWM)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    fd, hwm_file = tempfile.mkstemp(prefix="diskkit-hwm-")
    os.close(fd)
    try:
        started = time.monotonic()
        try:
            res = subprocess.run([sys.executable, "-c", _WRAP, *args], capture_output=True,
                                 preexec_fn=limit, timeout=timeout, check=False,
                                 env={**os.environ, **(env or {}),
                                      "DISKKIT_TEST_HWM": hwm_file})
        except subprocess.TimeoutExpired as exc:
            err = (exc.stderr or b"").decode(errors="replace")
            raise AssertionError(f"diskkit {' '.join(args)} did not finish within {timeout} s;"
                                 f" stderr: {err[-500:]}") from None
        seconds = time.monotonic() - started
        text = pathlib.Path(hwm_file).read_text().strip()
    finally:
        os.unlink(hwm_file)
    assert text, f"no peak memory written; stderr: {res.stderr.decode(errors='replace')[-500:]}"
    return Limited(res.returncode, res.stdout.decode(errors="replace"),
                   res.stderr.decode(errors="replace"), seconds, int(text) * 1024)


# --- LVM: a PV whose metadata text is whatever the test wants, with valid checksums ---------

def lvm_pv(path: pathlib.Path, text: bytes, size: int = 8 * MiB) -> pathlib.Path:
    """A whole-disk LVM2 PV (label in sector 1, one metadata area at 4 KiB) whose current
    metadata is ``text``; checksums as lvm2 computes them (lib/format_text/format-text.c)."""
    mda_start, mda_size = 4096, 4 * MiB
    assert len(text) + 512 < mda_size
    buf = bytearray(size)
    lab = bytearray(512)
    lab[0:8] = b"LABELONE"
    struct.pack_into("<QII", lab, 8, 1, 0, 32)
    lab[24:32] = b"LVM2 001"
    pv = 32
    lab[pv:pv + 32] = b"Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8Ii9Jj0Kk"[:32]
    struct.pack_into("<Q", lab, pv + 32, size)
    pos = pv + 40
    struct.pack_into("<QQ", lab, pos, mda_start + mda_size, 0)  # data area
    struct.pack_into("<QQ", lab, pos + 16, 0, 0)
    struct.pack_into("<QQ", lab, pos + 32, mda_start, mda_size)  # metadata area
    struct.pack_into("<QQ", lab, pos + 48, 0, 0)
    struct.pack_into("<I", lab, 16, lvm_crc(bytes(lab[20:]), INITIAL_CRC))
    buf[512:1024] = lab
    hdr = bytearray(512)
    hdr[4:20] = MDA_MAGIC
    struct.pack_into("<IQQ", hdr, 20, 1, mda_start, mda_size)
    struct.pack_into("<QQII", hdr, 40, 512, len(text), lvm_crc(text), 0)
    struct.pack_into("<I", hdr, 0, lvm_crc(bytes(hdr[4:])))
    buf[mda_start:mda_start + 512] = hdr
    buf[mda_start + 512:mda_start + 512 + len(text)] = text
    path.write_bytes(bytes(buf))
    return path


def vg_text(stripe_extent: str = "0", extent_size: str = "8192") -> bytes:
    """A one-PV, one-LV VG whose LV segment's stripe extent and extent size are as given."""
    return (
        "vg0 {\nid = \"AAAAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAAAA\"\nseqno = 1\n"
        f"extent_size = {extent_size}\n"
        "physical_volumes {\npv0 {\nid = \"Aa1Bb2-Cc3D-d4Ee-5Ff6-Gg7H-h8Ii-9Jj0Kk\"\n"
        "device = \"/dev/sda\"\npe_start = 8192\npe_count = 1\n}\n}\n"
        "logical_volumes {\nlv0 {\nid = \"BBBBBB-BBBB-BBBB-BBBB-BBBB-BBBB-BBBBBB\"\n"
        "status = [\"READ\", \"VISIBLE\"]\nsegment_count = 1\nsegment1 {\nstart_extent = 0\n"
        "extent_count = 1\ntype = \"striped\"\nstripe_count = 1\n"
        f"stripes = [\"pv0\", {stripe_extent}]\n}}\n}}\n}}\n}}\n"
    ).encode()


# --- GRUB: boot.img + diskboot.img from grub-pc-bin, then a core whose LZMA payload is zeros --

GRUB_PC = pathlib.Path("/usr/lib/grub/i386-pc")


def grub_zero_payload(path: pathlib.Path, core_sectors: int = 800) -> pathlib.Path:
    """An MBR disk whose boot.img points at a diskboot.img whose blocklist covers
    ``core_sectors`` sectors of a core.img that claims 16 MiB uncompressed and holds only zeros
    after its header: every zero byte is a place an LZMA stream may start, and zeros decode
    for a long time without error (the 3,553-attempt, 50-minute attack)."""
    size = 4 * MiB
    buf = bytearray(size)
    boot = (GRUB_PC / "boot.img").read_bytes()
    buf[0:440] = boot[:440]
    struct.pack_into("<Q", buf, 0x5C, 1)  # kernel sector: 1
    struct.pack_into("<B3sB3sII", buf, 446, 0x80, b"\0\0\0", 0x83, b"\0\0\0", 2048,
                     size // 512 - 2048)
    buf[510:512] = b"\x55\xaa"
    diskboot = bytearray((GRUB_PC / "diskboot.img").read_bytes()[:512])
    struct.pack_into("<QHH", diskboot, 0x1F4, 2, core_sectors, 0x820)
    buf[512:1024] = diskboot
    core = 2 * 512
    struct.pack_into("<II", buf, core + 0x08, core_sectors * 512 - 0x40, 16 << 20)
    path.write_bytes(bytes(buf))
    return path


# --- GPT with N entries, all typed ESP, all over the same FAT --------------------------------

ESP = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")


def gpt_many_esps(path: pathlib.Path, fat: pathlib.Path, entries: int = 32768) -> pathlib.Path:
    """A GPT disk whose ``entries`` partition entries (UEFI spec 5.3) all name the same FAT
    filesystem (``fat``, made by mkfs.vfat) as an EFI system partition."""
    fat_bytes = fat.read_bytes()
    array = entries * 128
    first = 2 + array // 512
    fat_lba = -(-first // 2048) * 2048
    fat_sectors = len(fat_bytes) // 512
    total = fat_lba + fat_sectors + 2048 + 33
    buf = bytearray(total * 512)
    buf[fat_lba * 512:fat_lba * 512 + len(fat_bytes)] = fat_bytes
    # protective MBR
    struct.pack_into("<B3sB3sII", buf, 446, 0, b"\0\2\0", 0xEE, b"\xff\xff\xff", 1,
                     min(total - 1, 0xFFFFFFFF))
    buf[510:512] = b"\x55\xaa"
    ent = bytearray(array)
    for i in range(entries):
        o = i * 128
        ent[o:o + 16] = ESP.bytes_le
        ent[o + 16:o + 32] = uuid.UUID(int=i + 1).bytes_le
        struct.pack_into("<QQQ", ent, o + 32, fat_lba, fat_lba + fat_sectors - 1, 0)
    buf[1024:1024 + array] = ent
    hdr = bytearray(92)
    hdr[0:8] = b"EFI PART"
    struct.pack_into("<IIII", hdr, 8, 0x00010000, 92, 0, 0)
    struct.pack_into("<QQQQ", hdr, 24, 1, total - 1, first, total - 34)
    hdr[56:72] = uuid.UUID(int=12345).bytes_le
    struct.pack_into("<QIII", hdr, 72, 2, entries, 128, zlib.crc32(bytes(ent)))
    struct.pack_into("<I", hdr, 16, zlib.crc32(bytes(hdr)))
    buf[512:512 + 92] = hdr
    path.write_bytes(bytes(buf))
    return path


# --- qcow2: 1 TiB whose every L1 entry shares one L2 table of alternating data/holes ---------

def qcow2_fragmented(path: pathlib.Path, size: str = "1T", pattern: int = 0x41) -> pathlib.Path:
    """A qcow2 of ``size`` (64 KiB clusters) of a few hundred KiB whose L1 entries all point at
    one L2 table whose entries alternate between one data cluster (of ``pattern`` bytes) and
    holes: 8 million data extents for anyone who walks them all."""
    create(path, "qcow2", size)
    qemu_img("resize", "-f", "qcow2", path, size)  # no-op; keeps the image consistent
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {pattern} 0 64k", str(path)],
                   check=True, capture_output=True, timeout=60)
    with open(path, "r+b") as f:
        head = f.read(104)
        l1_size, l1_off = struct.unpack_from(">IQ", head, 36)
        f.seek(l1_off)
        l1 = struct.unpack(f">{l1_size}Q", f.read(8 * l1_size))
        l2_off = l1[0] & 0x00FFFFFFFFFFFE00
        f.seek(l2_off)
        first = struct.unpack(">Q", f.read(8))[0]
        l2 = [first if i % 2 == 0 else 0 for i in range(8192)]
        f.seek(l2_off)
        f.write(struct.pack(">8192Q", *l2))
        f.seek(l1_off)
        f.write(struct.pack(f">{l1_size}Q", *([l1[0]] * l1_size)))
    return path


# --- MBR: an EBR chain longer than any real disk has ------------------------------------------

def ebr_chain(path: pathlib.Path, logicals: int = 300) -> pathlib.Path:
    """An MBR disk whose extended partition (at sector 2048) chains ``logicals`` EBRs, two
    sectors apart, each with a one-sector logical partition (the layout fdisk writes)."""
    ext_start, step = 2048, 2
    size = (ext_start + step * logicals + 2048) * 512
    buf = bytearray(size)
    struct.pack_into("<B3sB3sII", buf, 446, 0, b"\0\0\0", 0x05, b"\0\0\0", ext_start,
                     step * logicals)
    buf[510:512] = b"\x55\xaa"
    for i in range(logicals):
        ebr = (ext_start + step * i) * 512
        struct.pack_into("<B3sB3sII", buf, ebr + 446, 0, b"\0\0\0", 0x83, b"\0\0\0", 1, 1)
        if i + 1 < logicals:
            struct.pack_into("<B3sB3sII", buf, ebr + 462, 0, b"\0\0\0", 0x05, b"\0\0\0",
                             step * (i + 1), step)
        buf[ebr + 510:ebr + 512] = b"\x55\xaa"
    path.write_bytes(bytes(buf))
    return path
