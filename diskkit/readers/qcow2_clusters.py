"""Pieces of the qcow2 reader that know nothing of qcow2 tables (the VMDK and VHDX readers use
them too): a bounded LRU cache, runs of evenly spaced table entries, and the
decompressors of compressed clusters (qcow2.txt "Compressed Clusters Descriptor"; the
compression_type header field: 0 zlib, written by qemu as raw deflate, 1 zstd)."""

from __future__ import annotations

import io
import zlib
from array import array
from collections import OrderedDict

from diskkit.errors import ImageError


class LruCache:
    """A least-recently-used cache bounded by total bytes (always keeps the newest item)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.items: OrderedDict[tuple[str, int], tuple[int, object]] = OrderedDict()

    def get(self, key: tuple[str, int]) -> object | None:
        """The value cached under ``key`` (now the most recently used), or None."""
        item = self.items.get(key)
        if item is None:
            return None
        self.items.move_to_end(key)
        return item[1]

    def put(self, key: tuple[str, int], value: object, nbytes: int) -> None:
        """Cache ``value`` (``nbytes`` big), evicting the least recently used beyond the limit."""
        old = self.items.pop(key, None)
        if old is not None:
            self.used -= old[0]
        self.items[key] = (nbytes, value)
        self.used += nbytes
        while self.used > self.limit and len(self.items) > 1:
            _, (n, _v) = self.items.popitem(last=False)
            self.used -= n


def inflate(raw: bytes, size: int) -> bytes:
    """Raw deflate (no zlib header), as qemu writes it; at most ``size`` bytes out."""
    try:
        return zlib.decompressobj(-15).decompress(raw, size)
    except zlib.error as exc:
        raise ImageError(f"bad deflate data in a compressed cluster: {exc}",
                         code="qcow2-unreadable") from None


def unzstd(raw: bytes, size: int) -> bytes:
    """zstd frames (qemu may write several); at most ``size`` bytes out."""
    import zstandard  # here: only a zstd-compressed cluster needs it (start-up, docs/cli.md)

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw),
                                                            read_across_frames=True)
        chunks, got = [], 0
        while got < size:
            chunk = reader.read(size - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    except zstandard.ZstdError as exc:
        raise ImageError(f"bad zstd data in a compressed cluster: {exc}",
                         code="qcow2-unreadable") from None


def same_step(table: array, i: int, value: int, step: int, count: int) -> int:
    """How many entries from ``table[i]`` (at most ``count``) read ``value + k * step``.

    The run's end is found on single entries (doubling, then bisection: a few dozen
    comparisons), then the whole run is checked with one array comparison; only a table
    whose entries leave the run and come back to it falls back to a plain loop."""
    if step:
        count = min(count, ((1 << 64) - 1 - value) // step + 1)  # the array holds u64s
    if count < 2 or table[i + 1] != value + step:
        return 1
    n = 2
    while n < count:  # doubling on the entry at the end of the candidate run
        m = min(count, 2 * n)
        if table[i + m - 1] != value + (m - 1) * step:
            break
        n = m
    lo, hi = n, min(count, 2 * n)  # the entry at lo-1 matches, the one at hi-1 does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if table[i + mid - 1] == value + (mid - 1) * step:
            lo = mid
        else:
            hi = mid
    expected = array("Q", [value]) * lo if not step else \
        array("Q", range(value, value + lo * step, step))
    if table[i : i + lo] == expected:
        return lo
    k = 2
    while k < count and table[i + k] == value + k * step:
        k += 1
    return k
