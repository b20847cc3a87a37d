"""What a conversion reports while it runs: bytes done of the total, throughput and time left.

qemu-img prints a percentage of the guest disk it has processed (``-p``); diskkit turns it into
guest bytes (``percent`` of the virtual size), and measures the throughput over the whole run
so far (steady, not the jumpy last-interval rate: holes are processed far faster than data).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: The phases of one conversion, in order.
CONVERT, FINISH = "convert", "finish"


@dataclass(frozen=True)
class Progress:
    """One progress report of one conversion."""

    #: :data:`CONVERT` (qemu-img copying) or :data:`FINISH` (flush to disk and verification).
    phase: str
    #: 0-100, qemu-img's own figure.
    percent: float
    #: Guest bytes processed so far, and the guest disk's size.
    done_bytes: int
    total_bytes: int
    #: Seconds since the copy started.
    elapsed: float

    @property
    def rate(self) -> float | None:
        """Guest bytes per second so far (None until there is something to divide)."""
        if self.elapsed <= 0 or self.done_bytes <= 0:
            return None
        return self.done_bytes / self.elapsed

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (None while unknown)."""
        rate = self.rate
        if rate is None:
            return None
        return max(0.0, (self.total_bytes - self.done_bytes) / rate)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        rate, eta = self.rate, self.eta
        return {"phase": self.phase, "percent": round(self.percent, 2),
                "done_bytes": self.done_bytes, "total_bytes": self.total_bytes,
                "elapsed_seconds": round(self.elapsed, 3),
                "bytes_per_second": int(rate) if rate else None,
                "eta_seconds": round(eta, 1) if eta is not None else None}


class Tracker:
    """Turns qemu-img's percentages into :class:`Progress` reports for ``sink``."""

    def __init__(self, total_bytes: int, sink: Callable[[Progress], None] | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(0, total_bytes)
        self.sink = sink
        self.clock = clock
        self.started = clock()
        self.last: Progress | None = None

    def percent(self, pct: float, phase: str = CONVERT) -> Progress:
        """Report ``pct`` percent done."""
        pct = min(100.0, max(0.0, pct))
        pct = float(pct)
        p = Progress(phase, pct, int(self.total * pct / 100), self.total,
                     self.clock() - self.started)
        self.last = p
        if self.sink is not None:
            self.sink(p)
        return p

    def phase(self, phase: str) -> Progress:
        """Report a new phase at the last percentage (100 once the copy is done)."""
        return self.percent(self.last.percent if self.last else 0.0, phase)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def describe(p: Progress) -> str:
    """One short line: ``1.2 GiB / 2.0 GiB, 345.0 MiB/s, 0:03 left`` (``syncing and
    verifying`` once the copy is done)."""
    if p.phase == FINISH:
        return f"{_size(p.total_bytes)}, syncing and verifying"
    text = f"{_size(p.done_bytes)} / {_size(p.total_bytes)}"
    rate, eta = p.rate, p.eta
    if rate:
        text += f", {_size(rate)}/s"
    if eta is not None:
        text += f", {int(eta) // 60}:{int(eta) % 60:02d} left"
    return text
