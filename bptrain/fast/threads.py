"""How the fast engine shares the cores: BLAS threads for the steps, a thread for the next epoch.

Two kinds of work compete for the cores. The steps are small matrix products,
which OpenBLAS splits between its threads (they wait for each other at the
end of every product). Preparing an epoch (shuffle, shifts, distortions) is a
few large NumPy operations that can run beside the steps in a thread of their
own (:mod:`.epoch_thread`), since NumPy releases the GIL in them.

Whether a second BLAS thread pays depends on the optimizer's update, which
its ``update_kind`` names (:data:`ONE_THREAD_BELOW`):

- "gemm": plain SGD's whole update is one gemm, which OpenBLAS splits: it
  keeps OpenBLAS's threads.
- "gemm+axpy": momentum SGD, whose update is split alike on several threads
  (:class:`.optimizers.SGD`); below about 2 M multiply-adds a step, one thread
  and the epoch thread beside it are faster and steadier.
- "ufuncs": Adam's element-wise passes are NumPy's, on one core; a second
  thread splits only the gemms of its gradients, which pays from the same size.

With distortions on, preparing an epoch costs about as much as training a
small network, so the steps of networks up to :data:`CORE_FOR_DISTORTIONS_UP_TO`
weights leave a core to the epoch thread; larger networks' products outweigh
the distortions, so their steps may use every BLAS thread, with the epoch
thread beside them for the moments they run on one.

Those boundaries hold on a quiet machine. On a busy one (another process on
the cores, the page's browser, a second run) the threads of one product wait
for each other whenever one is descheduled, and one thread is often several
times faster. So steps that would use several threads are timed as they run,
and :class:`ThreadPolicy` moves them between one thread and the most they may
use, whichever is faster now; while other processes hold the cores (as the
system reports, :mod:`.machine_load`) a probe of several threads is not even
tried. The count must not change the numbers: the
products' long inner dimensions are cut in fixed pieces
(:class:`.piecewise.PiecewiseProduct`), momentum keeps one form for the whole run
(:class:`.optimizers.SGD`), the steps start on one thread (and stay there while
the epoch thread writes the first epoch, which steps on several threads would
wait for), and the first probe of several threads checks that both give the
same bits (where they do not, the run stays on one thread). Validation and an
epoch prepared inline (distortions are many small products) run on the count
the steps last found faster.
Whenever the steps' count adapts, the epoch thread runs too: on a busy machine
it is what a run on one thread gains most from. OpenBLAS's idle threads spin
before they sleep, taking a core from whatever runs next; ``import bptrain``
shortens that (``OPENBLAS_THREAD_TIMEOUT``, when NumPy is not loaded yet).
The measurements behind every boundary are in benchmarks/README.md.
"""

from __future__ import annotations

import os
import time

from . import blas

#: Below this many multiply-adds per step (batch size x weights), the steps of each kind of update
#: run on one BLAS thread (batch size 1 always does: all its products are matrix-vector).
ONE_THREAD_BELOW = {"gemm": 0, "gemm+axpy": 2_000_000, "ufuncs": 2_000_000}
#: With distortions on, the steps of networks up to this many weights leave a core to the epoch thread
#: (distorting an epoch costs about as much as training it); larger networks' products outweigh it.
CORE_FOR_DISTORTIONS_UP_TO = 1_000_000
#: Set to 0 in the environment, this turns the epoch thread off; set to anything else, on.
EPOCH_THREAD_VARIABLE = "BPTRAIN_EPOCH_THREAD"
#: The most BLAS threads the steps may use (``sweep`` gives each run its share of the cores this way:
#: OPENBLAS_NUM_THREADS would also bind OpenBLAS outside the steps). OpenBLAS's own count
#: (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS) and the usable cores bound it too.
MOST_THREADS_VARIABLE = "BPTRAIN_BLAS_THREADS"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def most_threads() -> int:
    """The most BLAS threads the steps may use: OpenBLAS's count, the usable cores and $BPTRAIN_BLAS_THREADS."""
    most = min(blas.threads(), usable_cores())
    try:
        bound = int(os.environ.get(MOST_THREADS_VARIABLE, ""))
    except ValueError:
        bound = 0
    return max(1, min(most, bound) if bound > 0 else most)


def weights(sizes) -> int:
    """The network's weights: the multiply-adds of one image's forward pass."""
    return sum(m * n for m, n in zip(sizes[:-1], sizes[1:]))


def step_macs(sizes, batch_size: int) -> int:
    """Multiply-adds of one step's forward products (the backward ones scale the same way)."""
    return batch_size * sum(m * n for m, n in zip(sizes[:-1], sizes[1:]))


def step_threads(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> int | None:
    """BLAS threads for the steps: a number, or None for OpenBLAS's own count (see the module's docstring)."""
    if batch_size == 1 or step_macs(sizes, batch_size) < ONE_THREAD_BELOW[update_kind]:
        return 1
    if distorts and usable_cores() > 1 and weights(sizes) <= CORE_FOR_DISTORTIONS_UP_TO:
        return max(1, min(most_threads(), usable_cores() - 1))  # a core for the epoch thread
    return None


def several_threads(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> bool:
    """Whether the steps would use several threads on a quiet machine: what momentum's form follows.

    Not the count a run ends up with (the load, $OPENBLAS_NUM_THREADS, $BPTRAIN_BLAS_THREADS): the
    form changes the last bits of the numbers, which must not depend on those.
    """
    if batch_size == 1 or step_macs(sizes, batch_size) < ONE_THREAD_BELOW[update_kind]:
        return False
    if distorts and weights(sizes) <= CORE_FOR_DISTORTIONS_UP_TO:
        return usable_cores() > 2  # every core but the epoch thread's
    return True


def epoch_thread(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> bool:
    """Whether a thread should prepare the next epoch while this one trains: when a core may be left for it.

    Steps on a fixed count leave the cores beyond it; steps whose count adapts (:class:`ThreadPolicy`) may
    drop to one thread at any time (on a busy machine they do), so the thread runs for them too: while
    they run on several threads it only competes for the moments it works, and the probes see that.
    ``$BPTRAIN_EPOCH_THREAD`` (0: off, else on) overrides the choice.
    """
    forced = os.environ.get(EPOCH_THREAD_VARIABLE, "")
    if forced:
        return forced != "0"
    return usable_cores() > (step_threads(sizes, batch_size, update_kind, distorts) or 1)


def describe(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> str:
    """How the cores are used, for ``bench``: "1+1" is one BLAS thread and the epoch thread, "2" two BLAS
    threads, "1-2" one or two, whichever is faster as the steps run (:class:`ThreadPolicy`); "+1": and the epoch thread."""
    threads = step_threads(sizes, batch_size, update_kind, distorts)
    text = str(threads) if threads is not None else ("1-" if most_threads() > 1 else "") + str(most_threads())
    return f"{text}+1" if epoch_thread(sizes, batch_size, update_kind, distorts) else text


class ThreadPolicy:
    """How many BLAS threads the steps run on: one or ``most``, whichever is faster now.

    The steps start on one thread, the count that is never badly wrong. A probe runs
    one group of steps (about 1/100 of an epoch) on the other count and compares its
    time per row with the current count's over its last groups (:meth:`baseline`),
    each with the next epoch's preparation that steps on several threads leave to be
    done while they wait (:attr:`serial_per_row`). Whole groups, because what makes
    several threads slow on a busy machine is a thread descheduled mid-product, once
    in a few time slices: three steps fit between two slices and look fast. A probe
    stops once it has taken :attr:`CLEAR` times what the current count would have
    (:meth:`clear`): one step of two threads that wait for each other can take a
    hundred steps' time. A probe's group can still be lucky (no other process ran
    during it): the first group after a move goes back if the count it left was
    faster, and that counts as a lost probe. One thread must be :attr:`ONE_THREAD_MARGIN`
    faster than several to take over: a group's time leaves out part of what several
    threads save (validation runs on the count the steps have; each move wakes or idles
    OpenBLAS's threads; a probe of one thread runs without the epoch thread beside it),
    and on a quiet machine the two are often within 10% a group while several win the
    epoch. Under load one thread wins by far more, and the margin costs at most 10%.

    Probes are rare where they cost: each time the current count wins, the wait before
    the next doubles, from :attr:`FIRST_WAIT` up to :attr:`LONGEST_WAIT` groups; and a
    probe that lost time Δ waits at least Δ / :attr:`BUDGET` seconds (so probes never
    cost more than that share of the time, however slow the other count was). A group
    whose time per row is more than :attr:`CHANGED` from the baseline is set aside: one
    group preempted, or slowed by the system, says nothing about the next (on a quiet
    machine one in a few dozen is, by up to 6x). A second in a row on the same side says
    the machine changed (another process started or stopped): the two start a new
    baseline, and the next group probes. It only reads ``clock`` and the times it is
    given: the tests drive it with made-up ones.

    A probe of more threads is skipped, as if lost, unless at least :attr:`FREE_SHARE`
    of the cores it would add are free of other work (``others``: cores busy with other
    work lately, :class:`.machine_load.OtherProcesses`): its threads would wait for time
    slices, and under load the probes, not the steps, were what cost most. On 2 cores:
    no probe while other processes keep more than half a core busy.
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
        self.others = others  # () -> cores other processes kept busy lately, or None: unknown
        self.cores = cores if cores is not None else usable_cores()
        self.skipped = 0      # probes skipped while other processes held the cores
        self.current = 1
        self.other = most if most > 1 else None
        #: Seconds per row that steps on several threads add by leaving the next epoch's preparation
        #: undone until they wait for it (the epoch thread's gate); on one thread it runs beside them.
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
