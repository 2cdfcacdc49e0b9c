"""How training shares the machine's cores: BLAS threads for the steps, one thread for the next epoch.

Two kinds of work compete for the cores. The steps are small matrix products;
OpenBLAS splits each one between its threads, and they wait for each other at
the end of every product. The preparation of an epoch (shuffle, shifts,
distortions; :mod:`bptrain.epochs`) is a few large NumPy operations that can
run beside the steps in a thread of their own, since NumPy releases the GIL in them.

Whether a second BLAS thread pays depends on the optimizer's update, whose
``update_kind`` names it (:data:`ONE_THREAD_BELOW`):

- "gemm": plain SGD's whole update is one gemm, which OpenBLAS splits: it
  keeps OpenBLAS's threads.
- "gemm+axpy": momentum SGD. On one thread it keeps s = μv and finishes each
  update with one ``rotm`` pass; on several, v itself and two ``axpy`` calls,
  which OpenBLAS splits like the gemm (:class:`bptrain.optim.SGD`). Two
  threads pay from about batch 32 of 784-128-64-10; below, one thread and
  the epoch thread beside it are faster and steadier.
- "ufuncs": Adam's element-wise passes run on one core outside OpenBLAS's
  threads, which must first pull across the half of each matrix the other
  core's gemm just wrote; one thread up to larger steps.

The epoch thread runs whenever the steps leave a core free.

Measured on the 2-core AMD EPYC (with AVX-512) of the development machine,
784-128-64-10, seconds of the middle of 3 epochs of ``train()``, whole
processes alternated, 4 rounds (``benchmarks/epoch_bptrain.py``):

    batch  settings                   one BLAS thread + epoch thread   two BLAS threads, epoch inline
    10     default (1-pixel shifts)   0.76-0.79 s                     0.88-0.91 s
    10     plain SGD                  0.67-0.70 s                     0.59-0.63 s (once 0.87)
    32     default (1-pixel shifts)   0.44-0.45 s                     0.43-0.44 s (once 0.75)
    32     plain SGD                  0.38-0.40 s                     0.31-0.34 s
    64     default (1-pixel shifts)   0.37-0.38 s                     0.34-0.36 s
    128    default (1-pixel shifts)   0.33 s                          0.27-0.36 s

At batch 32 the default settings take the same time either way, on half the
CPU time (0.60 s against 0.86 s) and without the runs where two threads
doubled (whenever the second core was slow to answer, CPU time doubled with
the wall time). 784-30-10 at batch 128 (3.0 M multiply-adds per step) and
784-800-10 at batch 10 (6.3 M) agree with the boundary below: 0.13-0.15 s
against 0.15-0.18 s, and 3.0 s against 2.4 s.
"""

from __future__ import annotations

import os

from . import blas

#: Below this many multiply-adds per step (batch size x weights), the steps of each kind of update
#: run on one BLAS thread (batch size 1 always does: all its products are matrix-vector).
ONE_THREAD_BELOW = {"gemm": 0, "gemm+axpy": 2_000_000, "ufuncs": 5_000_000}
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


def step_threads(sizes, batch_size: int, update_kind: str = "ufuncs") -> int | None:
    """BLAS threads for the steps: 1, or None for OpenBLAS's own count (see the module's docstring)."""
    if batch_size == 1 or step_macs(sizes, batch_size) < ONE_THREAD_BELOW[update_kind]:
        return 1
    return None


def epoch_thread(sizes, batch_size: int, update_kind: str = "ufuncs") -> bool:
    """Whether a thread should prepare the next epoch while this one trains: when a core is left for it.

    ``$BPTRAIN_EPOCH_THREAD`` (0: off, else on) overrides the choice.
    """
    forced = os.environ.get(EPOCH_THREAD_VARIABLE, "")
    if forced:
        return forced != "0"
    return usable_cores() > (step_threads(sizes, batch_size, update_kind) or blas.threads())


def describe(sizes, batch_size: int, update_kind: str = "ufuncs") -> str:
    """How the cores are used, for ``bench``: "1+1" is one BLAS thread and the epoch thread, "2" two BLAS threads."""
    threads = step_threads(sizes, batch_size, update_kind) or blas.threads()
    return f"{threads}+1" if epoch_thread(sizes, batch_size, update_kind) else str(threads)
