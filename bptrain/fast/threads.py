"""How training shares the machine's cores: BLAS threads for the steps, one thread for the next epoch.

Two kinds of work compete for the cores. The steps are small matrix products;
OpenBLAS splits each one between its threads, and they wait for each other at
the end of every product. The preparation of an epoch (shuffle, shifts,
distortions; :mod:`bptrain.data.epochs`) is a few large NumPy operations that can
run beside the steps in a thread of their own, since NumPy releases the GIL in them.

Whether a second BLAS thread pays depends on the optimizer's update, whose
``update_kind`` names it (:data:`ONE_THREAD_BELOW`):

- "gemm": plain SGD's whole update is one gemm, which OpenBLAS splits: it
  keeps OpenBLAS's threads.
- "gemm+axpy": momentum SGD. On one thread it keeps s = μv and finishes each
  update with one ``rotm`` pass; on several, v itself and two ``axpy`` calls,
  which OpenBLAS splits like the gemm (:class:`bptrain.fast.optimizers.SGD`). Two
  threads pay from about batch 32 of 784-128-64-10; below, one thread and
  the epoch thread beside it are faster and steadier.
- "ufuncs": Adam's element-wise passes are NumPy's, on one core, and the
  gemms that form its gradients are all a second thread can split; that pays
  from the same step size (batch 32: 0.52-0.56 s on two threads against
  0.59-0.63 s on one; batch 10: 1.29-1.53 s against 1.27-1.38 s).

The epoch thread runs whenever the steps leave a core free. Distortions cost
as much as the training itself (elastic: 0.66 s per epoch of 50,000 images
on one core, against 0.42 s for a default epoch at batch 32), so when they
are on, the steps leave a core to the epoch thread whatever their size: at
batch 32 of 784-128-64-10 with elastic distortions, 0.69-0.90 s an epoch
against 1.03-1.14 s on two BLAS threads with the distortions done inline;
784-800-10 at batch 64, 1.74-1.75 s against 1.71-1.80 s, on less CPU.

Measured on the 2-core AMD EPYC (with AVX-512) of the development machine,
784-128-64-10, seconds of the middle of 3 epochs of ``train()`` with the
default settings (momentum, decay, 1-pixel shifts), whole processes
alternated, 3 rounds (``benchmarks/epoch_bptrain.py --one-thread-below``):

    batch  multiply-adds   one BLAS thread (s = μv, rotm)   two BLAS threads (v, axpy)
           per step        + epoch thread                    epoch prepared inline
    10     1.1 M           0.76-0.86 s                       0.73-0.97 s
    16     1.75 M          0.53-0.58 s                       0.51 s (once 0.83)
    32     3.5 M           0.42-0.49 s                       0.37-0.45 s
    64     7.0 M           0.36-0.42 s                       0.31-0.34 s

Two threads are also the unsteady ones on this VM: the same epoch takes one
time or nearly twice it from one process to the next, whenever the second
core is slow to answer (CPU time doubles with the wall time); one thread
never did that, so it wins the close calls. Plain SGD (one gemm) took 0.31-0.34 s
on two threads and 0.38-0.40 s on one at batch 32, 0.59-0.63 s and 0.67-0.70 s
at batch 10.
"""

from __future__ import annotations

import os

from . import blas

#: Below this many multiply-adds per step (batch size x weights), the steps of each kind of update
#: run on one BLAS thread (batch size 1 always does: all its products are matrix-vector).
ONE_THREAD_BELOW = {"gemm": 0, "gemm+axpy": 2_000_000, "ufuncs": 2_000_000}
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


def step_threads(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> int | None:
    """BLAS threads for the steps: a number, or None for OpenBLAS's own count (see the module's docstring)."""
    if batch_size == 1 or step_macs(sizes, batch_size) < ONE_THREAD_BELOW[update_kind]:
        return 1
    if distorts and usable_cores() > 1:
        return max(1, min(blas.threads(), usable_cores() - 1))  # a core for the epoch thread
    return None


def epoch_thread(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> bool:
    """Whether a thread should prepare the next epoch while this one trains: when a core is left for it.

    ``$BPTRAIN_EPOCH_THREAD`` (0: off, else on) overrides the choice.
    """
    forced = os.environ.get(EPOCH_THREAD_VARIABLE, "")
    if forced:
        return forced != "0"
    return usable_cores() > (step_threads(sizes, batch_size, update_kind, distorts) or blas.threads())


def describe(sizes, batch_size: int, update_kind: str = "ufuncs", distorts: bool = False) -> str:
    """How the cores are used, for ``bench``: "1+1" is one BLAS thread and the epoch thread, "2" two BLAS threads."""
    threads = step_threads(sizes, batch_size, update_kind, distorts) or blas.threads()
    return f"{threads}+1" if epoch_thread(sizes, batch_size, update_kind, distorts) else str(threads)
