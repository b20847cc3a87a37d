"""Pieces of the qcow2 reader that know nothing of qcow2 tables: a bounded LRU cache, and the
decompressors of compressed clusters (qcow2.txt "Compressed Clusters Descriptor"; the
compression_type header field: 0 zlib, written by qemu as raw deflate, 1 zstd)."""

from __future__ import annotations

import io
import zlib
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
