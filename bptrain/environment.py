"""The process's environment as bptrain reads it: the variables it answers to, and the cores it may use.

One place, read by the fast engine's thread controller (:mod:`bptrain.fast.threads`) and by ``sweep``,
which sets them for each run it starts. It imports nothing but the standard library: asking how many
cores there are loads no BLAS.
"""

from __future__ import annotations

import os

#: Set to 0, the fast engine prepares epochs inline; set to anything else, in a thread of their own.
EPOCH_THREAD_VARIABLE = "BPTRAIN_EPOCH_THREAD"
#: The most BLAS threads a run's steps may use; below it they still move to fewer when that is faster
#: (``sweep`` bounds each run with it: OPENBLAS_NUM_THREADS would fix the count instead).
MOST_THREADS_VARIABLE = "BPTRAIN_BLAS_THREADS"
#: Variables that fix how many threads a BLAS library uses; the first one set wins.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
#: How long OpenBLAS's idle threads spin before they sleep, as a power of two of cycles (OpenBLAS: 28, about
#: 0.1 s). It is read once, when NumPy loads OpenBLAS; 2^20 cycles still spans the gaps between a step's products.
IDLE_SPIN_VARIABLE, IDLE_SPIN = "OPENBLAS_THREAD_TIMEOUT", "20"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def blas_threads_from(environ) -> int | None:
    """The BLAS thread count ``environ`` fixes, or None."""
    for name in BLAS_THREAD_VARIABLES:
        try:
            threads = int(environ.get(name, ""))
        except ValueError:
            continue
        if threads > 0:
            return threads
    return None


def most_threads_bound(environ=os.environ) -> int | None:
    """$BPTRAIN_BLAS_THREADS as a positive count, or None."""
    try:
        bound = int(environ.get(MOST_THREADS_VARIABLE, ""))
    except ValueError:
        return None
    return bound if bound > 0 else None


def epoch_thread_forced(environ=os.environ) -> bool | None:
    """$BPTRAIN_EPOCH_THREAD: False for 0, True for anything else, None when unset."""
    value = environ.get(EPOCH_THREAD_VARIABLE, "")
    return None if not value else value != "0"


def shorten_idle_spin(environ=os.environ) -> None:
    """Let OpenBLAS's idle threads sleep after 2^20 cycles, unless the user chose: call it before NumPy loads.

    When the steps drop to one BLAS thread, a worker spinning for 0.1 s takes the core that the epoch
    thread or another process needs. The command line calls this first thing; a library user sets the
    variable themselves, if they want it.
    """
    environ.setdefault(IDLE_SPIN_VARIABLE, IDLE_SPIN)
