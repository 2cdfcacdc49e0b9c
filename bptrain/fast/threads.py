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
the distortions, so their steps keep every BLAS thread and the epoch is
distorted inline. The
measurements behind every boundary are in benchmarks/README.md.
"""

from __future__ import annotations

import os

from . import blas

#: Below this many multiply-adds per step (batch size x weights), the steps of each kind of update
#: run on one BLAS thread (batch size 1 always does: all its products are matrix-vector).
ONE_THREAD_BELOW = {"gemm": 0, "gemm+axpy": 2_000_000, "ufuncs": 2_000_000}
#: With distortions on, the steps of networks up to this many weights leave a core to the epoch thread
#: (distorting an epoch costs about as much as training it); larger networks' products outweigh it.
CORE_FOR_DISTORTIONS_UP_TO = 1_000_000
#: Set to 0 in the environment, this turns the epoch thread off; set to anything else, on.
EPOCH_THREAD_VARIABLE = "BPTRAIN_EPOCH_THREAD"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
