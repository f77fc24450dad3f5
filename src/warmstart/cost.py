"""What a run cost: wall time, CPU time, peak resident memory, trainable parameters.

Peak memory is sampled from ``/proc/self/statm`` every 20 ms on a background thread (and once at the end), so it
reports this run's peak rather than the process's lifetime maximum that ``getrusage`` gives. Short spikes
between samples can be missed; it is a measurement of the order of magnitude, not an exact bound.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident memory of this process now (falls back to the lifetime peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Cost:
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    start_rss_mb: float = 0.0

    def to_dict(self) -> dict:
        return {k: round(v, 3) for k, v in asdict(self).items()}


@contextmanager
def measure(interval: float = 0.02) -> Iterator[Cost]:
    """Measure the block: ``with measure() as cost: ...`` then read ``cost.wall_seconds`` etc.

    Example:
        >>> with measure() as c:
        ...     _ = sum(range(10000))
        >>> c.wall_seconds >= 0 and c.peak_rss_mb > 0
        True
    """
    cost = Cost()
    start_rss = rss_bytes()
    peak = [start_rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield cost
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], rss_bytes())
        cost.wall_seconds = time.perf_counter() - wall
        cost.cpu_seconds = time.process_time() - cpu
        cost.peak_rss_mb = peak[0] / 2**20
        cost.start_rss_mb = start_rss / 2**20
