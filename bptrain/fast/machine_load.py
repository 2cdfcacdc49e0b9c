"""What other processes use of this process's cores: a probe of more BLAS threads is pointless while they are busy.

Timing a probe is how :class:`.threads.ThreadPolicy` learns that two threads are slower
than one, but on a busy machine the probe itself is the cost: one step whose second
thread waits for a time slice can take a hundred steps' time. Linux says how busy every
core has been (``/proc/stat``); less this process's own CPU time, that is what the other
processes (and, on a virtual machine, the hypervisor's steal) took. Where the system does
not say, nothing is known and the policy probes as before.
"""

from __future__ import annotations

import os
import time

#: A look over less than this many seconds says nothing: /proc/stat and the CPU times count in ticks of 10 ms.
SHORTEST_WINDOW = 0.1
#: The window's start moves to the latest look once it spans this many seconds.
WINDOW = 0.25
#: /proc/stat's columns after the core's name that are time it was busy: user, nice, system, irq,
#: softirq, steal (idle and iowait are not; guest is counted in user already).
BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


class OtherProcesses:
    """Cores of this process's (its CPU affinity's) that other processes kept busy, on average, since a recent look.

    ``stat_path``, ``process_seconds`` and ``clock`` are for the tests: a made-up /proc/stat, CPU time
    and clock.
    """

    def __init__(self, stat_path: str = "/proc/stat", process_seconds=None, clock=time.monotonic,
                 cores: set[int] | None = None):
        self._stat_path = stat_path
        self._process_seconds = process_seconds or _process_seconds
        self._clock = clock
        self._tick = _clock_ticks()
        if cores is None:
            try:
                cores = os.sched_getaffinity(0)
            except (AttributeError, OSError):
                cores = None
        self._cores = cores
        self._start = self._reading()
        self._last = None  # the answer over the last window long enough to say

    def busy(self) -> float | None:
        """Cores busy with other work since the window's start, or over the window before it when this one is
        shorter than :data:`SHORTEST_WINDOW`; None when nothing is known."""
        now = self._reading()
        if now is None or self._start is None:
            self._start = now
            return None
        (start_time, start_busy, start_own), (time_now, busy_now, own_now) = self._start, now
        seconds = time_now - start_time
        if seconds < SHORTEST_WINDOW:
            return self._last
        if seconds >= WINDOW:
            self._start = now
        self._last = max(0.0, (busy_now - start_busy) - (own_now - start_own)) / seconds
        return self._last

    def _reading(self):
        """(clock, busy seconds of the usable cores, this process's CPU seconds), or None."""
        busy = self._busy_seconds()
        if busy is None:
            return None
        return self._clock(), busy, self._process_seconds()

    def _busy_seconds(self) -> float | None:
        if self._tick is None:
            return None
        try:
            with open(self._stat_path) as stat:
                lines = stat.read().splitlines()
        except OSError:
            return None
        ticks, seen = 0, False
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu":
                continue
            try:
                core = int(name[3:])
                columns = [int(value) for value in rest.split()]
            except ValueError:
                return None
            if self._cores is not None and core not in self._cores:
                continue
            ticks += sum(columns[i] for i in BUSY_COLUMNS if i < len(columns))
            seen = True
        return ticks / self._tick if seen else None


def _process_seconds() -> float:
    """CPU seconds of every thread of this process (not of its children)."""
    times = os.times()
    return times.user + times.system


def _clock_ticks() -> float | None:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return None
