"""In-process verification of a conversion into Ceph: compare allocation maps first, then read
only the ranges either side says may hold data, the RBD side with several reads in flight.

Used where it beats ``qemu-img compare`` (measured, docs/convert.md): an RBD output, whose
reads are network round trips that ``qemu-img compare`` issues one at a time, from a raw or
qcow2 source that diskkit reads itself (page cache, C-speed map). Everything else is verified
with ``qemu-img compare``.

The check is the same as qemu-img compare's, plus the size: the guest-visible sizes must be
equal, and every byte must be equal, where a range neither side lists as data reads as zeros on
both (so it is not read). A range one side lists as data and the other not is read on both.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
from collections.abc import Iterator

from diskkit.readers.base import Extent, Reader

#: Bytes compared per request (RBD's default object size).
CHUNK = 4 << 20
#: RBD reads in flight at once.
IN_FLIGHT = 8


def _data_ranges(a: Reader, b: Reader) -> Iterator[tuple[int, int]]:
    """The union of both readers' data extents, merged, as (offset, end)."""
    extents = sorted([*((e.offset, e.end) for e in a.data_extents()),
                      *((e.offset, e.end) for e in b.data_extents())])
    cur: list[int] | None = None
    for lo, hi in extents:
        if cur is not None and lo <= cur[1]:
            cur[1] = max(cur[1], hi)
            continue
        if cur is not None:
            yield cur[0], cur[1]
        cur = [lo, hi]
    if cur is not None:
        yield cur[0], cur[1]


def _chunks(ranges: Iterator[tuple[int, int]]) -> Iterator[Extent]:
    for lo, hi in ranges:
        for pos in range(lo, hi, CHUNK):
            yield Extent(pos, min(CHUNK, hi - pos))


def compare_readers(source: Reader, target: Reader, *, in_flight: int = IN_FLIGHT
                    ) -> tuple[bool, str]:
    """(identical, message). ``target`` is read from worker threads (its reads must be
    thread-safe: librbd's are); ``source`` only from the calling thread."""
    if source.size != target.size:
        return False, (f"the guest-visible sizes differ: {source.size} bytes in the source, "
                       f"{target.size} in the output")
    pending: collections.deque[tuple[Extent, cf.Future[bytes]]] = collections.deque()
    chunks = _chunks(_data_ranges(source, target))
    with cf.ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="verify") as pool:
        try:
            while True:
                while len(pending) < in_flight:
                    ext = next(chunks, None)
                    if ext is None:
                        break
                    pending.append((ext, pool.submit(target.read, ext.offset, ext.length)))
                if not pending:
                    return True, "Images are identical."
                ext, fut = pending.popleft()
                want = source.read(ext.offset, ext.length)
                got = fut.result()
                if want != got:
                    at = ext.offset + next(i for i in range(len(want)) if want[i] != got[i])
                    return False, f"Content mismatch at offset {at}!"
        finally:
            for _ext, fut in pending:
                fut.cancel()
