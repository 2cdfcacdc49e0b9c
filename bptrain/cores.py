"""How training shares the machine's cores: BLAS threads for the steps, one thread for the next epoch.

Two kinds of work compete for the cores. The steps are small matrix products;
OpenBLAS splits each one between its threads, and they wait for each other at
the end of every product. The preparation of an epoch (shuffle, shifts,
distortions; :mod:`bptrain.epochs`) is a few large NumPy operations that can
run beside the steps in a thread of their own, since NumPy releases the GIL in them.

When a step's products are small, splitting them costs more in waiting than it
saves, so the steps get one BLAS thread and a free core prepares the next
epoch. Measured on the 2-core AMD EPYC (with AVX-512) of the development
machine, 784-128-64-10 with the default settings and 1-pixel shifts, seconds of
the middle of 3 epochs of ``train()``, whole processes alternated, 3 rounds:

    batch (multiply-adds per step)   one BLAS thread + epoch thread   two BLAS threads, epoch inline
    10  (1.1 M)                      0.77-0.79 s                     0.90-1.92 s
    32  (3.5 M)                      0.43-0.45 s                     0.44-0.79 s
    64  (7.0 M)                      0.37-0.38 s                     0.34-0.36 s
    128 (14 M)                       0.33 s                          0.27-0.36 s

Two threads were also the unsteady ones: the same epoch took one time or
about twice it, from one process to the next, whenever the second core was
slow to answer (CPU time doubled with the wall time; one thread never did
that). 784-30-10 at batch 128 (3.0 M) and 784-800-10 at batch 10 (6.3 M)
agree with the boundary below: 0.13-0.15 s against 0.15-0.18 s, and 3.0 s
against 2.4 s.
"""

from __future__ import annotations

import os

from . import blas

#: Below this many multiply-adds per step (batch size x weights), the steps run on one BLAS thread.
ONE_THREAD_STEP_MACS = 5_000_000
#: Set to 0 in the environment, this turns the epoch thread off; set to anything else, on.
EPOCH_THREAD_VARIABLE = "BPTRAIN_EPOCH_THREAD"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def step_macs(sizes, batch_size: int) -> int:
    """Multiply-adds of one step's forward products (the backward ones scale the same way)."""
    return batch_size * sum(m * n for m, n in zip(sizes[:-1], sizes[1:]))


def step_threads(sizes, batch_size: int) -> int | None:
    """BLAS threads for the steps of ``batch_size`` rows: 1 for small products, None for OpenBLAS's own choice.

    A one-row batch is all matrix-vector products: one thread whatever the network.
    """
    if batch_size == 1 or step_macs(sizes, batch_size) < ONE_THREAD_STEP_MACS:
        return 1
    return None


def epoch_thread(sizes, batch_size: int) -> bool:
    """Whether a thread should prepare the next epoch while this one trains: when a core is left for it.

    ``$BPTRAIN_EPOCH_THREAD`` (0: off, else on) overrides the choice.
    """
    forced = os.environ.get(EPOCH_THREAD_VARIABLE, "")
    if forced:
        return forced != "0"
    threads = step_threads(sizes, batch_size) or blas.threads()
    return usable_cores() > threads


def describe(sizes, batch_size: int) -> str:
    """One line for ``bench``: how the cores are used at this batch size."""
    threads = step_threads(sizes, batch_size) or blas.threads()
    macs = step_macs(sizes, batch_size) / 1e6
    background = "a thread prepares each epoch alongside" if epoch_thread(sizes, batch_size) else \
        "epochs prepared before their first step"
    return f"batch {batch_size}: {macs:.1f} M multiply-adds per step, {threads} BLAS thread{'s' * (threads != 1)}, " \
           f"{background}"
