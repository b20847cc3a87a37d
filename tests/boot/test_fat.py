"""The FAT reader against mkfs.vfat + mtools: every path and every byte, for FAT12/16/32."""

from __future__ import annotations

import contextlib
import os
import pathlib

import pytest

from diskkit.boot.fat import FatFs
from diskkit.errors import ImageError
from diskkit.readers.base import BytesReader, SliceReader
from diskkit.readers.raw import FileReader
from diskkit.runner import run

NAMES = ["EFI/BOOT/BOOTX64.EFI", "EFI/debian/grubx64.efi", "EFI/debian/shim x64 (copy).efi",
         "Ünïcödé-名前 long name.txt", "readme.txt", "UPPER.TXT", "MixedCase.Txt",
         "deep/a/b/c/d/e/file-in-a-deep-directory.bin", "big.bin"]


def _walk(fs: FatFs, cluster: int = 0, prefix: str = "::/") -> list[tuple[str, int, int]]:
    out = []
    for e in fs.listdir(cluster):
        path = prefix + e.name + ("/" if e.is_dir else "")
        out.append((path, e.cluster, e.size))
        if e.is_dir:
            out.extend(_walk(fs, e.cluster, path))
    return out


@pytest.fixture(scope="module", params=[12, 16, 32])
def fat_image(request, tmp_path_factory) -> tuple[pathlib.Path, int, int]:
    bits = request.param
    tmp = tmp_path_factory.mktemp(f"fat{bits}")
    img = tmp / "fs.img"
    size_k = {12: 1900, 16: 20000, 32: 40000}[bits]
    offset = 1 << 20  # inside a bigger file, as a partition is: mtools' IMG@@OFFSET
    run(["truncate", "-s", str(offset + size_k * 1024), str(img)], timeout=10)
    part = tmp / "part.img"
    run(["mkfs.vfat", "-F", str(bits), "-s", "1", "-C", str(part), str(size_k)], timeout=30)
    run(["dd", f"if={part}", f"of={img}", "bs=1M", "seek=1", "conv=notrunc", "status=none"],
        timeout=30)
    spec = f"{img}@@{offset}"
    src = tmp / "src"
    src.mkdir()
    dirs = sorted({str(pathlib.PurePosixPath(n).parent) for n in NAMES} - {"."})
    for d in dirs:
        parts = d.split("/")
        for i in range(1, len(parts) + 1):
            run(["mmd", "-D", "s", "-i", spec, "::/" + "/".join(parts[:i])], timeout=10,
                check=False)
    for i, n in enumerate(NAMES):
        f = src / f"f{i}"
        f.write_bytes(os.urandom(300_000) if n == "big.bin" else f"{n}\n".encode() * (i + 1))
        run(["mcopy", "-i", spec, str(f), "::/" + n], timeout=10)
    # A directory of 300 entries spans several clusters.
    run(["mmd", "-i", spec, "::/many"], timeout=10)
    for k in range(300):
        (src / f"entry-number-{k:03d}.dat").write_bytes(b"x" * k)
    run(["mcopy", "-i", spec, *[str(src / f"entry-number-{k:03d}.dat") for k in range(300)],
         "::/many/"], timeout=60)
    return img, offset, bits


def test_listing_matches_mdir(fat_image):
    img, offset, bits = fat_image
    want = run(["mdir", "-/", "-b", "-i", f"{img}@@{offset}", "::/"], timeout=30).stdout
    with FileReader(str(img)) as r:
        fs = FatFs(SliceReader(r, offset, r.size - offset))
        assert fs.bits == bits
        got = sorted(p for p, _c, _s in _walk(fs))
    assert got == sorted(want.split("\n")[:-1])
    assert len(got) > 300


def test_every_file_reads_as_mcopy_gives_it(fat_image):
    img, offset, _bits = fat_image
    with FileReader(str(img)) as r:
        fs = FatFs(SliceReader(r, offset, r.size - offset))
        files = [(p, c, s) for p, c, s in _walk(fs) if not p.endswith("/")]
        checked = 0
        for path, _c, _s in files[:20] + [f for f in files if "big" in f[0]]:
            want = run(["mcopy", "-n", "-i", f"{img}@@{offset}", path, "-"], timeout=30,
                       binary=True).stdout
            entry = fs.lookup(path[3:])
            assert entry is not None and fs.read_file(entry) == want
            checked += 1
        assert checked >= 10
        assert fs.lookup("/efi/boot/bootx64.efi").size == fs.lookup("/EFI/BOOT/BOOTX64.EFI").size
        assert fs.lookup("/EFI/nothing.efi") is None
        assert fs.lookup("/readme.txt/below") is None


def test_fat_loop_and_garbage_are_bounded(fat_image):
    img, offset, bits = fat_image
    with FileReader(str(img)) as r:
        data = bytearray(r.read(offset, 4 << 20))
    fs = FatFs(BytesReader(bytes(data)))
    big = fs.lookup("/big.bin")
    first = big.cluster
    # Make the chain of big.bin loop back to its first cluster after two steps.
    second = fs.chain(first)[1]
    if bits in (16, 32):
        width = bits // 8
        at = fs.fat_offset + second * width
        data[at:at + width] = first.to_bytes(width, "little")
    else:  # a 12-bit entry straddles bytes: 12 bits at cluster*1.5 (fatgen103)
        at = fs.fat_offset + second + second // 2
        word = int.from_bytes(data[at:at + 2], "little")
        word = (word & 0x000F) | (first << 4) if second & 1 else (word & 0xF000) | first
        data[at:at + 2] = word.to_bytes(2, "little")
    looped = FatFs(BytesReader(bytes(data)))
    assert looped.chain(first) == [first, second]
    with pytest.raises(ImageError):
        FatFs(BytesReader(b"\0" * 4096))
    for seed in range(50):
        junk = bytearray(data[:512]) + os.urandom(8192)
        junk[seed * 7 % 500:seed * 7 % 500 + 8] = os.urandom(8)
        with contextlib.suppress(ImageError):
            FatFs(BytesReader(bytes(junk))).listdir()
