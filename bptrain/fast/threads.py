"""How many BLAS threads the fast engine's steps run on, and when the epoch thread may work beside them.

The engine asks one object, :class:`StepThreads`: ``run`` a group of steps on the count chosen now,
``may_prepare`` (the epoch thread's gate) and ``count`` (what validation runs on). From sizes alone
(:func:`step_threads`), steps too small for two threads run on one, and distorted epochs of small
networks leave a core to the epoch thread; the rest adapt (:class:`ThreadPolicy`): on a busy machine
one thread is often several times faster, so groups of steps are timed, now and then one probes the
other count, and the faster wins. The same numbers on any count: :mod:`.same_bits`. The measurements
behind the constants: benchmarks/README.md ("A busy machine").
"""

from __future__ import annotations

import contextlib
import os
import time

from ..environment import epoch_thread_forced, most_threads_bound, usable_cores
from . import blas
from .same_bits import step_agrees

#: Below this many multiply-adds per step (batch size x weights), the steps of each kind of update
#: run on one BLAS thread (batch size 1 always does: all its products are matrix-vector).
ONE_THREAD_BELOW = {"gemm": 0, "gemm+axpy": 2_000_000, "ufuncs": 2_000_000}
#: With distortions on, the steps of networks up to this many weights leave a core to the epoch thread
#: (distorting an epoch costs about as much as training it); larger networks' products outweigh it.
CORE_FOR_DISTORTIONS_UP_TO = 1_000_000


# ------------------------------------------------------------------ the plan, from sizes alone
def most_threads() -> int:
    """The most BLAS threads the steps may use: OpenBLAS's count, the usable cores and $BPTRAIN_BLAS_THREADS."""
    most = min(blas.threads(), usable_cores())
    bound = most_threads_bound()
    return max(1, min(most, bound) if bound else most)


def weights(sizes) -> int:
    """The network's weights: the multiply-adds of one image's forward pass."""
    return sum(m * n for m, n in zip(sizes[:-1], sizes[1:]))


def step_macs(sizes, batch_size: int) -> int:
    """Multiply-adds of one step's forward products (the backward ones scale the same way)."""
    return batch_size * weights(sizes)


def _one_thread(sizes, batch_size: int, update_kind: str) -> bool:
    return batch_size == 1 or step_macs(sizes, batch_size) < ONE_THREAD_BELOW[update_kind]


def step_threads(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> int | None:
    """BLAS threads for the steps: a number, or None: adapt, up to :func:`most_threads`."""
    if _one_thread(sizes, batch_size, update_kind):
        return 1
    if distorts and usable_cores() > 1 and weights(sizes) <= CORE_FOR_DISTORTIONS_UP_TO:
        return max(1, min(most_threads(), usable_cores() - 1))  # a core for the epoch thread
    return None


def several_threads(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> bool:
    """Whether the steps would use several threads on a quiet machine: the form momentum keeps for the run
    (:mod:`.same_bits`). Not the count a run ends up with, which the load and the bounds decide."""
    if _one_thread(sizes, batch_size, update_kind):
        return False
    if distorts and weights(sizes) <= CORE_FOR_DISTORTIONS_UP_TO:
        return usable_cores() > 2  # every core but the epoch thread's
    return True


def epoch_thread(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> bool:
    """Whether a thread prepares the next epoch while this one trains: when a core may be left for it (steps
    that adapt may drop to one thread at any time, so it runs for them too); $BPTRAIN_EPOCH_THREAD decides first."""
    forced = epoch_thread_forced()
    if forced is not None:
        return forced
    return usable_cores() > (step_threads(sizes, batch_size, update_kind, distorts) or 1)


def describe(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> str:
    """How the cores are used, for ``bench``: "1+1" is one BLAS thread and the epoch thread, "2" two BLAS
    threads, "1-2" one or two, whichever is faster as the steps run; "+1": and the epoch thread."""
    threads = step_threads(sizes, batch_size, update_kind, distorts)
    text = str(threads) if threads is not None else ("1-" if most_threads() > 1 else "") + str(most_threads())
    return f"{text}+1" if epoch_thread(sizes, batch_size, update_kind, distorts) else text


# ------------------------------------------------------------------ the engine's one object
class StepThreads:
    """The count the steps of ``optimizer`` (over parameters ``params``) run on, group by group; the gate.
    ``policy``: a :class:`ThreadPolicy` to use instead of the plan's (the tests' made-up ones)."""

    #: What a probe leaves of its group is timed only if it is at least this share of the group.
    SHARE_TO_JUDGE = 0.5

    def __init__(self, sizes, batch_size: int, optimizer, params, distorts: bool = False, policy=None):
        kind = optimizer.update_kind
        fixed = step_threads(sizes, batch_size, kind, distorts)
        self.most = fixed or most_threads()
        adapts = fixed is None and self.most > 1 and blas.can_set_threads()
        self.policy = policy or (ThreadPolicy(self.most, others=OtherProcesses().busy) if adapts
                                 else FixedThreads(self.most))
        self.epoch_thread = epoch_thread(sizes, batch_size, kind, distorts)
        self.several_when_quiet = several_threads(sizes, batch_size, kind, distorts)
        self.bits_checked = not self.policy.adapts  # the first probe of another count checks the bits first
        self._params, self._optimizer = params, optimizer
        self._running = self.policy.current  # the steps' count now (a probe's, during one)
        self._first_epoch_ready = False

    @property
    def count(self) -> int:
        """The count the steps last found faster (what validation and inline preparation run on)."""
        return self.policy.current

    def may_prepare(self) -> bool:
        """Whether the epoch thread may work beside the steps now: not while they adapt and run on several
        threads, nor during a probe (a chunk begun then would go on beside the steps after it)."""
        return not self.policy.adapts or max(self._running, self.policy.current) == 1

    @contextlib.contextmanager
    def steps(self):
        """An epoch's steps: OpenBLAS bounded by the plan's count, set to the policy's; restored after."""
        with blas.threads_at_most(self.most):
            blas.set_threads(self.policy.current)
            yield

    def run(self, step, start: int, stop: int, batch_size: int, preparation=None) -> None:
        """The steps of the group of rows [start, stop), ``step(first, end)`` one batch, on the count chosen now;
        ``preparation``: the engine's :class:`.epoch_thread.BackgroundEpochImages`, if any."""
        policy = self.policy
        full = start + (stop - start) // batch_size * batch_size
        self._first_epoch_ready = (self._first_epoch_ready or preparation is None
                                   or preparation.first_epoch_prepared())
        first = start
        if (stop - start) // batch_size >= 2 and self._first_epoch_ready and policy.probe_due():
            if preparation is not None:
                policy.serial_per_row = preparation.serial_seconds_per_row()
            first = self._probe(step, start, full, batch_size, preparation)
            policy = self.policy  # the bit check may have fixed the count
        if first < stop:
            began = policy.clock()
            for batch in range(first, full, batch_size):
                step(batch, batch + batch_size)
            if full < stop:  # a partial last batch runs on one thread: no probe checked its shapes
                blas.set_threads(1)
                step(full, stop)
                blas.set_threads(policy.current)
            if stop - first >= self.SHARE_TO_JUDGE * (stop - start):
                policy.record(stop - first, policy.clock() - began)

    def _probe(self, step, start: int, full: int, batch_size: int, preparation) -> int:
        """Steps on the policy's other count until the group's full batches are done or that count is clearly
        slower; tells the policy; returns the row after the probe's steps."""
        policy, first = self.policy, start
        self._running = policy.other  # shuts the gate for several threads
        if policy.other > 1 and preparation is not None:
            preparation.between_chunks()  # time the steps as they would run: the epoch thread waiting
        if not self.bits_checked:
            self.bits_checked = True
            if not step_agrees(lambda: step(first, first + batch_size), self._params, self._optimizer, policy.other):
                self.policy, self._running = FixedThreads(1), 1  # the one-thread numbers, for the whole run
                blas.set_threads(1)
                return first + batch_size
            first += batch_size  # that step ran on the other count last: the probe's first, untimed
        blas.set_threads(policy.other)
        began, rows = policy.clock(), 0
        while first < full:
            step(first, first + batch_size)
            first, rows = first + batch_size, rows + batch_size
            if policy.clear(policy.clock() - began, rows):  # no need to lose more time on the slower count
                break
        if rows:
            policy.probed((policy.clock() - began) / rows, rows)
        self._running = policy.current
        blas.set_threads(policy.current)
        return first


# ------------------------------------------------------------------ the policy
class ThreadPolicy:
    """One BLAS thread or ``most``, whichever is faster now, from the times of whole groups of steps.

    A probe runs one group on the other count and compares its seconds per row with the current count's last
    :attr:`BASELINE_GROUPS` groups (:meth:`baseline`), each with the next epoch's preparation that steps on
    several threads leave undone (:attr:`serial_per_row`). It stops at :attr:`CLEAR` times what the current
    count would have taken (:meth:`clear`). The first group after a move goes back if the count it left was
    faster. One thread must be :attr:`ONE_THREAD_MARGIN` faster than several to take over (a group's time leaves
    out part of what several threads save). Each win of the current count doubles the groups before the next
    probe, from :attr:`FIRST_WAIT` to :attr:`LONGEST_WAIT`, and a probe that lost time Δ waits at least Δ /
    :attr:`BUDGET` seconds. A group more than :attr:`CHANGED` from the baseline is set aside; a second in a row
    on the same side starts a new baseline and a probe. A probe of more threads is skipped, as if lost, unless
    :attr:`FREE_SHARE` of the cores it would add are free (``others()``: cores other processes kept busy lately,
    or None). It only reads ``clock`` and the times it is given: the tests drive it with made-up ones.
    """

    CLEAR = 2.0
    FIRST_WAIT = 2
    LONGEST_WAIT = 64
    BUDGET = 0.02
    CHANGED = 1.3
    BASELINE_GROUPS = 4
    ONE_THREAD_MARGIN = 1.1
    FREE_SHARE = 0.5

    def __init__(self, most: int, clock=time.perf_counter, others=None, cores: int | None = None):
        self.clock = clock
        self.others = others
        self.cores = cores if cores is not None else usable_cores()
        self.skipped = 0      # probes skipped while other processes held the cores
        self.current = 1
        self.other = most if most > 1 else None
        #: Seconds per row that steps on several threads add by leaving the next epoch's preparation
        #: undone until they wait for it; on one thread it runs beside them.
        self.serial_per_row = 0.0
        self._interval = 0       # groups between the last probe and the next, doubling while the current wins
        self._wait = self.FIRST_WAIT  # groups to run before the next probe (the first: once a baseline is seen)
        self._not_before = 0.0   # ... and the clock time before which none runs
        self._recent = []        # seconds per row of the current count's last groups
        self._aside = None       # the last group's, if it was far from them
        self._trial = None       # after a move: the count left's groups, cost per row and wait between probes

    @property
    def adapts(self) -> bool:
        return self.other is not None

    def baseline(self) -> float | None:
        """The current count's seconds per row: the mean of its last groups (None before the first)."""
        return sum(self._recent) / len(self._recent) if self._recent else None

    def probe_due(self) -> bool:
        """Whether the next group of steps is a probe (counts it as a group otherwise)."""
        if self.other is None or not self._recent:
            return False
        if self._wait <= 0 and self.clock() >= self._not_before:
            if self.other > self.current and not self._cores_free():
                self.skipped += 1
                self._interval = self._wait = self._longer(self._interval)  # as after a lost probe
                return False
            return True
        self._wait -= 1
        return False

    def _cores_free(self) -> bool:
        """Whether enough of the cores a probe of :attr:`other` threads would add look free (unknown: yes)."""
        busy = self.others() if self.others is not None else None
        return busy is None or self.cores - busy - self.current >= self.FREE_SHARE * (self.other - self.current)

    def clear(self, seconds: float, rows: int) -> bool:
        """Whether a probe that took ``seconds`` for ``rows`` rows is clearly slower than the current count."""
        level = self.baseline()
        return level is not None and seconds > self.CLEAR * level * rows

    def probed(self, other_per_row: float, rows: int) -> None:
        """A probe's result: ``rows`` rows on :attr:`other` at ``other_per_row`` seconds each."""
        current_per_row = self.baseline() or other_per_row
        other_cost, current_cost = self._cost(self.other, other_per_row), self._cost(self.current, current_per_row)
        lost = max(0.0, other_cost - current_cost) * rows  # what running the slower count cost
        if self._weighed(self.other, other_cost) < self._weighed(self.current, current_cost):
            self._trial = self._recent, current_cost, self._interval  # to go back to, should the next group say so
            self.current, self.other = self.other, self.current
            self._recent = [other_per_row]
            self._interval = self.FIRST_WAIT
        else:
            self._interval = self._longer(self._interval)
        self._wait = self._interval
        self._not_before = self.clock() + lost / self.BUDGET

    def _longer(self, interval: int) -> int:
        return min(max(2 * interval, self.FIRST_WAIT), self.LONGEST_WAIT)

    def _weighed(self, count: int, cost: float) -> float:
        """A cost to compare: one thread's times :attr:`ONE_THREAD_MARGIN`, which it must beat several by."""
        return cost * self.ONE_THREAD_MARGIN if count == 1 else cost

    def _cost(self, count: int, step_per_row: float) -> float:
        """Seconds per row on ``count`` threads: the steps', and the preparation they leave undone."""
        return step_per_row + (self.serial_per_row if count > 1 else 0.0)

    def record(self, rows: int, seconds: float) -> None:
        """Steps on :attr:`current` took ``seconds`` for ``rows`` rows (a group, or what a probe left of it)."""
        if self.other is None or rows <= 0:
            return
        now = seconds / rows
        if self._trial is not None:  # the first group after a move: was the probe's group a lucky one?
            recent, left_cost, interval = self._trial
            self._trial = None
            cost = self._cost(self.current, now)
            if self._weighed(self.current, cost) > self._weighed(self.other, left_cost):
                # the count it left is faster: back to it, as after a lost probe
                self.current, self.other = self.other, self.current
                self._recent = recent
                self._interval = self._wait = self._longer(interval)
                self._not_before = self.clock() + max(0.0, cost - left_cost) * rows / self.BUDGET
                return
        level = self.baseline()
        if level is not None and not level / self.CHANGED <= now <= level * self.CHANGED:
            aside, self._aside = self._aside, now
            if aside is None or (aside > level) != (now > level):
                return  # set aside: the next group says whether the machine changed
            self._aside = None  # it did: a new baseline, and a probe next
            self._recent = [aside, now]
            self._interval = self.FIRST_WAIT
            self._wait = 0
            return
        self._aside = None
        self._recent = (self._recent + [now])[-self.BASELINE_GROUPS:]


class FixedThreads(ThreadPolicy):
    """Always ``count`` threads: steps too small for a second thread, or whose bits would change with it."""

    def __init__(self, count: int):
        super().__init__(1)
        self.current = count


# ------------------------------------------------------------------ the machine's load
#: A look over less than this many seconds says nothing: /proc/stat and the CPU times count in ticks of 10 ms.
SHORTEST_WINDOW = 0.1
#: The window's start moves to the latest look once it spans this many seconds.
WINDOW = 0.25
#: /proc/stat's columns after the core's name that are time it was busy: user, nice, system, irq,
#: softirq, steal (idle and iowait are not; guest is counted in user already).
BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


class OtherProcesses:
    """Cores of this process's CPU affinity that other processes kept busy lately: Linux's /proc/stat less
    this process's own CPU time (the rest is other processes' and a hypervisor's steal). The arguments:
    for the tests."""

    def __init__(self, stat_path: str = "/proc/stat", process_seconds=None, clock=time.monotonic,
                 cores: set[int] | None = None):
        self._stat_path = stat_path
        self._process_seconds = process_seconds or (lambda: sum(os.times()[:2]))  # user + system, all threads
        self._clock = clock
        try:
            self._tick = float(os.sysconf("SC_CLK_TCK"))
        except (AttributeError, ValueError, OSError):
            self._tick = None
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
        shorter than :data:`SHORTEST_WINDOW`; None when nothing is known (the policy then probes)."""
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
        return None if busy is None else (self._clock(), busy, self._process_seconds())

    def _busy_seconds(self) -> float | None:
        if self._tick is None:
            return None
        try:
            with open(self._stat_path) as stat:
                rows = [line.split() for line in stat if line.startswith("cpu") and not line.startswith("cpu ")]
            ticks = [sum(int(row[1 + i]) for i in BUSY_COLUMNS if 1 + i < len(row)) for row in rows
                     if self._cores is None or int(row[0][3:]) in self._cores]
        except (OSError, ValueError):
            return None
        return sum(ticks) / self._tick if ticks else None

