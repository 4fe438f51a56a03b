"""How many CPU threads torch uses: chosen from what this process may use, not from the machine.

torch's default is one intra-op thread per core of the machine. Its OpenMP threads wait for each
other at the end of every operation, so when another busy process holds one of those cores, every
operation waits for the thread that shares it, and a small model's training collapses rather than
slowing in proportion (measured on a 2-core machine: see ``benchmarks/threads.py``).

:func:`choose_threads` takes the cores this process may run on (its CPU affinity), capped by
``OMP_NUM_THREADS`` when that is set, divided among the processes torchrun starts on this machine
(``LOCAL_WORLD_SIZE``). An explicit ``--threads N`` wins.
"""

from __future__ import annotations

import os
import time


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), or the machine's count where there is none."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def _positive_env(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _cpu_ticks() -> tuple[int, int] | None:
    """``(busy, total)`` jiffies of all CPUs since boot, or None where ``/proc/stat`` is not there."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class CpuLoad:
    """Measures how many cores other processes keep busy, from its creation to :meth:`busy_elsewhere`.

    A command creates one before its slow start (importing torch takes most of a second) and reads
    it after, so the measurement costs no waiting of its own; this process's CPU time is
    subtracted."""

    def __init__(self) -> None:
        self._start, self._ticks, self._own = time.monotonic(), _cpu_ticks(), os.times()

    def busy_elsewhere(self, min_window: float = 0.25) -> float | None:
        """The cores other processes kept busy since creation, after waiting until at least
        ``min_window`` seconds have passed (None: unknown, where there is no ``/proc/stat``)."""
        if self._ticks is None:
            return None
        time.sleep(max(0.0, min_window - (time.monotonic() - self._start)))
        ticks, own = _cpu_ticks(), os.times()
        if ticks is None:
            return None
        window = time.monotonic() - self._start
        total = (ticks[1] - self._ticks[1]) or 1
        busy_cores = (ticks[0] - self._ticks[0]) / total * (os.cpu_count() or 1)
        own_cores = (own.user + own.system - self._own.user - self._own.system) / window
        return max(0.0, busy_cores - own_cores)


def busy_elsewhere(window: float = 0.25) -> float | None:
    """How many cores other processes keep busy over the next ``window`` seconds (None: unknown)."""
    return CpuLoad().busy_elsewhere(window)


def choose_threads(requested: int | None = None, others: float | None = None) -> int:
    """Intra-op threads for torch in this process.

    Args:
        requested: an explicit count (``--threads``); None chooses: the usable CPUs, at most
            ``OMP_NUM_THREADS``, shared among torchrun's ``LOCAL_WORLD_SIZE`` processes, less the
            cores busy elsewhere, at least 1.
        others: the cores other processes keep busy (default: measured with :func:`busy_elsewhere`).

    Raises:
        ValueError: ``requested`` is not a positive integer, or exceeds the machine's CPUs.
    """
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"threads must be a positive integer, got {requested!r}")
        most = usable_cpus()
        if requested > most:  # more threads than CPUs only wait on each other (and 10**5 of them exhaust the machine)
            raise ValueError(f"threads must be at most the {most} CPUs this process may use, got {requested}")
        return requested
    cpus = usable_cpus()
    n = cpus
    omp = _positive_env("OMP_NUM_THREADS")
    if omp is not None:
        n = min(n, omp)
    local = _positive_env("LOCAL_WORLD_SIZE") or 1
    n = n // local
    if others is None:
        others = busy_elsewhere()
    if others is not None:  # a busy core makes every OpenMP thread wait on the one that shares it
        n = min(n, int((cpus - others) / local + 0.5))
    return max(1, n)


def set_threads(requested: int | None = None, others: float | None = None) -> int:
    """Set torch's intra-op threads with :func:`choose_threads`; returns the count."""
    import torch

    n = choose_threads(requested, others)
    torch.set_num_threads(n)
    return n
