"""How a sweep shares the machine: runs at a time, BLAS threads each, and whether they fit in memory together."""

from __future__ import annotations

import click

from ...environment import EPOCH_THREAD_VARIABLE, MOST_THREADS_VARIABLE, blas_threads_from
from .. import memory


def check_runs_fit(runs: list[dict], jobs: int) -> None:
    """Refuse, before any run starts, a sweep whose ``jobs`` parallel runs would not fit in memory together.

    ``runs``: each run's settings by option name (the table's defaults, then the config, then the
    sweep's). The largest run is counted ``jobs`` times: each is a process with its own data and
    buffers. The refusal names the ``--jobs`` that would fit.
    """
    if not runs:
        return
    named = ("sizes", "batch_size", "resume", "dtype", "augment", "data")
    # the runs' data is not loaded here: MNIST's shape, with the network's input width
    estimates = [memory.training_estimate(run["sizes"], run["batch_size"], resume=run.get("resume"),
                                          dtype=run["dtype"], augment=run["augment"],
                                          data=memory.DataShape.mnist(run["sizes"][0]),
                                          **{key: value for key, value in run.items() if key not in named})
                 for run in runs]
    largest = max(estimates, key=lambda estimate: estimate.per_job)
    warning = memory.check_fits(memory.sweep_estimate(largest, jobs))
    if warning:
        click.echo(f"warning: {warning}", err=True)


# --------------------------------------------------------------------- cores
def plan_cores(n_runs: int, jobs: int | None, cores: int, environ) -> tuple[int, int, dict]:
    """(parallel runs, BLAS threads per run, variables to set in each run's environment).

    The default fills the cores without oversubscribing them: cores // the BLAS threads each run
    uses. When the environment fixes those threads they are kept; otherwise each run gets
    cores // runs at a time of them (OpenBLAS would take every core in every run) as an upper bound,
    below which it still moves to fewer when that is faster. A run whose share of the cores is all
    its BLAS threads does not start bptrain's epoch thread beside them.
    """
    fixed = blas_threads_from(environ)
    if jobs is None:
        jobs = max(1, cores // fixed) if fixed else cores
    jobs = max(1, min(jobs, n_runs))
    threads = fixed or max(1, cores // jobs)
    variables = {} if fixed else {MOST_THREADS_VARIABLE: str(threads), "MKL_NUM_THREADS": str(threads)}
    if jobs > 1 and cores // jobs <= threads and not environ.get(EPOCH_THREAD_VARIABLE):
        variables[EPOCH_THREAD_VARIABLE] = "0"
    return jobs, threads, variables
