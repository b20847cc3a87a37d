"""In-process verification of a conversion: sizes first, then only the data, hashed while
qemu-img copies.

``qemu-img compare`` was the reference check and stays for what diskkit does not read
itself. It was slow where diskkit is not: a VHDX output (qemu 7.2's vhdx driver has no block
status, so compare reads and zero-checks the whole virtual disk: 1.6 s for a 2 GiB disk
holding 512 MiB), a streamOptimized VMDK source (every grain inflated a second time: 1.1 s,
as long as the copy), and after any copy it read both sides again (0.15 s for 512 MiB).

For a local source and output in formats diskkit reads (raw, qcow2, VHDX, hosted-sparse
VMDK), the source's data is read and hashed in the background *while qemu-img copies*
(:class:`SourceDigest`, on the core qemu-img leaves free), so after the copy only the
output is read and hashed (0.03-0.07 s for 512 MiB). The disk is cut into ``CHUNK`` pieces
on a fixed grid; each piece either side lists as data is compared by an XXH3-128 digest
(:func:`compare_digests`; a piece only the output lists as data must hash as zeros; a range
neither lists as data reads as zeros on both and is not read). The guest-visible sizes must
be equal too (qemu-img compare only warns). On a mismatch the exact first differing offset
is found by reading that piece of both sides again.

An RBD output is hashed the same way, through librbd with IN_FLIGHT reads at once (each is
a network round trip; qemu-img compare issues one at a time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from diskkit.errors import InternalError
from diskkit.readers.base import Extent, Reader

#: Opens a fresh reader of one side (each verifying thread reads through its own).
Opener = Callable[[], Reader]
#: The digest of one piece (both sides of one comparison use the same).
DigestFn = Callable[[bytes], bytes]

#: Bytes compared or hashed per piece (RBD's default object size).
CHUNK = 4 << 20
#: RBD reads in flight at once.
IN_FLIGHT = 8
#: Threads hashing (or reading, for readers whose reads may run in parallel) on this host.
WORKERS = 2

#: Sources whose reading costs CPU (a VMDK's grains are inflated): hashed by two threads
#: during the copy; the others by one (reading them is a copy from the page cache).
COSTLY_SOURCES = ("vmdk",)


def digest_workers(src_format: str) -> int:
    """Threads hashing the source during the copy."""
    return WORKERS if src_format in COSTLY_SOURCES else 1


def open_local(path: str, fmt: str) -> Reader | None:
    """diskkit's own reader of the local file ``path`` in qemu format ``fmt``, or None when
    diskkit does not read it itself (then ``qemu-img compare`` is used):
    :func:`diskkit.disk.open_in_process`."""
    from diskkit.disk import open_in_process

    return open_in_process(path, fmt)


def opener(path: str, fmt: str) -> Opener | None:
    """A function opening diskkit's own reader of ``path`` (each call a fresh one), or None
    when diskkit does not read this file itself (tried once, here)."""
    first = open_local(path, fmt)
    if first is None:
        return None
    first.close()

    def open_again() -> Reader:
        reader = open_local(path, fmt)
        if reader is None:
            raise InternalError(f"{path}: could be read in process, then not")
        return reader

    return open_again


def method(src_format: str, out_format: str, target_kind: str, strict: bool) -> str:
    """How a finished local output is verified: ``"digest"`` (the source hashed during the
    copy, then the output) when diskkit reads both formats itself, else ``"qemu-img"``
    (qemu-img compare; also for ``strict``: allocation must match too). RBD outputs are
    handled by the caller."""
    if strict or target_kind != "file":
        return "qemu-img"
    if not (_reads_in_process(src_format) and _reads_in_process(out_format)):
        return "qemu-img"
    return "digest"


def _reads_in_process(fmt: str) -> bool:
    """Whether the registry has diskkit read this format itself (registry ``ReadVia``)."""
    from diskkit.formats.registry import ReadVia, lookup

    info = lookup(fmt)
    return info is not None and info.read in (ReadVia.IN_PLACE, ReadVia.QCOW2, ReadVia.VMDK,
                                              ReadVia.VHDX)


def pieces_of(extents: Iterable[Extent], size: int) -> list[int]:
    """Grid indices of the CHUNK pieces that ``extents`` touch."""
    out: list[int] = []
    last = -1
    for e in extents:
        if not e.length:
            continue
        lo, hi = e.offset // CHUNK, (min(e.end, size) - 1) // CHUNK
        out.extend(range(max(lo, last + 1), hi + 1))
        last = max(last, hi)
    return out


def span(index: int, size: int) -> tuple[int, int]:
    start = index * CHUNK
    return start, min(CHUNK, size - start)


def _digest(data: bytes) -> bytes:
    """XXH3-128 of a piece (python-xxhash: tens of GB/s, where SHA-256 does 1.7 GB/s on
    this hardware, which was the whole cost of hashing the output after the copy). What it
    guards against is a wrong or lost write, not a forger: the source's own bytes are what
    qemu-img copies, so nobody gains by making the two hash alike; a 128-bit hash misses a
    random difference with probability 2**-128."""
    from xxhash import xxh3_128_digest  # the digest method only

    return xxh3_128_digest(data)


def _in_workers(first: list[Reader], openers: list[Opener], count: int, workers: int,
                job: Callable[[list[Reader], int], None],
                stop: threading.Event | None = None, nice: int = 0) -> None:
    """Run ``job(readers, k)`` for k in range(count), split over ``workers`` threads. Readers
    whose reads may run in parallel (``concurrent_reads``: files, librbd, the VHDX and VMDK
    readers) are shared; otherwise each thread reads through readers of its own (worker 0
    uses ``first``, the others open theirs with ``openers``): the qcow2 reader keeps caches
    that one thread fills while reading. The first exception stops every worker and is
    re-raised."""
    halt = stop or threading.Event()
    shared = all(r.concurrent_reads for r in first)

    def run(w: int, failed: list[BaseException]) -> None:
        own: list[Reader] = []
        if nice:
            _lower_priority(nice)
        try:
            readers = first if w == 0 or shared else [o() for o in openers]
            own = [] if readers is first else readers
            for k in range(w, count, workers):
                if halt.is_set() or failed:
                    return
                job(readers, k)
        finally:
            for r in own:
                r.close()

    spread(run, min(workers, count), "diskkit-verify")


def spread(body: Callable[[int, list[BaseException]], None], workers: int, name: str) -> None:
    """Run ``body(w, failed)`` for w in range(workers), each in a thread of its own, and wait;
    ``failed`` holds the exceptions raised so far (a body stops early when it is not empty);
    the first is re-raised here.

    The calling thread only waits: glibc gives each thread its own malloc arena, where the
    4 MiB buffers freed by one piece are reused by the next; in the main arena each came back
    as fresh pages (1024 page faults a piece: measured 4x slower)."""
    failed: list[BaseException] = []

    def guarded(w: int) -> None:
        try:
            body(w, failed)
        except BaseException as exc:  # re-raised below, in the calling thread
            failed.append(exc)

    threads = [threading.Thread(target=guarded, args=(w,), name=f"{name}-{w}", daemon=True)
               for w in range(max(1, workers))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException as exc:  # Ctrl-C while waiting
        # The workers stop after the piece in hand (bounded by the readers' timeouts); the
        # caller closes the readers and handles they use only once none is left running.
        failed.append(exc)
        for t in threads:
            t.join()
        raise
    if failed:
        raise failed[0]


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority (Linux: a thread's id names it for
    setpriority); nothing where that is not possible."""
    import contextlib
    import os

    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


def hash_pieces(first: Reader, opener: Opener, pieces: list[int], *, workers: int = WORKERS,
                stop: threading.Event | None = None, nice: int = 0,
                digest_fn: DigestFn | None = None) -> dict[int, bytes]:
    """The digest (XXH3-128 unless ``digest_fn``) of each listed piece, read by ``workers``
    threads (xxhash and zlib release the GIL). Stops early, with what it has, when ``stop``
    is set."""
    size = first.size
    out: dict[int, bytes] = {}
    fn = digest_fn or _digest

    def job(readers: list[Reader], k: int) -> None:
        start, n = span(pieces[k], size)
        out[pieces[k]] = fn(readers[0].read(start, n))

    _in_workers([first], [opener], len(pieces), workers, job, stop, nice)
    return out


class PieceDigests(Protocol):
    """The source's side of a comparison: its size, the pieces it holds data in and their
    digests (:class:`SourceDigest`, or the in-process copy into RBD that hashed what it
    wrote: :class:`diskkit.convert.rbdcopy.RbdCopy`)."""

    size: int
    pieces: list[int]
    digest_fn: DigestFn

    def result(self) -> dict[int, bytes]:
        """The digests by piece index (waits for them)."""
        ...


class SourceDigest(threading.Thread):
    """Hashes the source's data pieces in the background (started before qemu-img copies,
    so the decompression runs on the core qemu-img leaves free). :meth:`result` waits for
    it and re-raises its error; :meth:`cancel` stops it early (the conversion failed)."""

    #: Priority of the digest threads: below qemu-img's (the copy must not slow down for
    #: them; measured: a qcow2 -> raw copy took 0.44 s with them at its priority, 0.37 s
    #: without them).
    NICE = 10

    def __init__(self, opener: Opener, workers: int = 1,
                 digest_fn: DigestFn | None = None) -> None:
        super().__init__(name="diskkit-source-digest", daemon=True)
        self.opener, self.workers = opener, workers
        #: The digest of a piece: XXH3-128, or what the output's check needs (an RBD
        #: output's OSDs hash with xxhash64 only: osdverify.trimmed_digest).
        self.digest_fn: DigestFn = digest_fn or _digest
        self.digests: dict[int, bytes] = {}
        self.pieces: list[int] = []
        self.size = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            with self.opener() as reader:
                self.size = reader.size
                self.pieces = pieces_of(reader.data_extents(), reader.size)
                self.digests = hash_pieces(reader, self.opener, self.pieces,
                                           workers=self.workers, stop=self._stop_event,
                                           nice=self.NICE, digest_fn=self.digest_fn)
        except BaseException as exc:  # re-raised by result()
            self.error = exc

    def cancel(self) -> None:
        """Stop as soon as the pieces in flight are done."""
        self._stop_event.set()
        if self.is_alive():
            self.join()

    def result(self) -> dict[int, bytes]:
        """The digests by piece index (waits for the thread)."""
        self.join()
        if self.error is not None:
            raise self.error
        if self._stop_event.is_set():
            raise InternalError("the source digest was cancelled")
        return self.digests


def _first_difference(source: Reader, target: Reader, start: int, n: int) -> int:
    want, got = source.read(start, n), target.read(start, n)
    return start + next((k for k in range(n) if want[k] != got[k]), 0)


def compare_digests(open_source: Opener, digest: PieceDigests, open_target: Opener, *,
                    workers: int = WORKERS) -> tuple[bool, str]:
    # ``workers``: threads hashing the output (IN_FLIGHT for RBD: each read a round trip)
    """(identical, message): the output against the digests the source's
    :class:`SourceDigest` made (waited for). A piece only the output lists as data must
    hash as zeros. The first differing offset is found by reading the source again."""
    with open_target() as target:
        theirs = digest.result()
        if digest.size != target.size:
            return False, size_message(digest.size, target.size)
        size = target.size
        pieces = sorted(set(pieces_of(target.data_extents(), size)) | set(digest.pieces))
        got = hash_pieces(target, open_target, pieces, workers=workers,
                          digest_fn=digest.digest_fn)
    zero: dict[int, bytes] = {}
    for i in pieces:
        want = theirs.get(i)
        if want is None:
            n = span(i, size)[1]
            want = zero.get(n) or zero.setdefault(n, digest.digest_fn(bytes(n)))
        if got[i] != want:
            return mismatch(open_source, open_target, i, size)
    return True, "Images are identical."


def mismatch(open_source: Opener, open_target: Opener, piece: int,
             size: int) -> tuple[bool, str]:
    """(False, message) naming the first offset where piece ``piece`` of the two sides
    differs (both read again)."""
    with open_source() as source, open_target() as target:
        at = _first_difference(source, target, *span(piece, size))
    return False, f"Content mismatch at offset {at}!"


def size_message(a: int, b: int) -> str:
    return f"the guest-visible sizes differ: {a} bytes in the source, {b} in the output"
