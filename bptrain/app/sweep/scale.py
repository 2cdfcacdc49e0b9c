"""A sweep's size, said before it starts: a grid of thousands of runs is hours or days of a machine.

The time is a rough figure, given so that nobody starts a week of work by a typo: each run's arithmetic
(forward and backward pass over the training images, a forward pass over the validation images, per
epoch) at about what an epoch's steps reach per core on the development machine (a 2-core AMD EPYC, whose
float32 GEMM peak is near 90 GFLOP/s a core), plus a few seconds to start and save; on MNIST's shape, as
the data is not read yet.
"""

from __future__ import annotations

from .. import memory

#: A sweep of more runs than this is said and must be confirmed (--yes, or y at a terminal).
CONFIRM_ABOVE = 100
#: Floating-point operations a second per core that an epoch's steps reach, roughly.
FLOPS_PER_CORE = {"float32": 20e9, "float64": 10e9}
#: A run's seconds besides its arithmetic: starting Python and NumPy, reading the data, saving.
RUN_OVERHEAD_SECONDS = 2.0


def run_seconds(settings: dict) -> float:
    """Seconds one run takes on one core, roughly: ``settings`` by option name, as :func:`.grid.run_settings`."""
    sizes = settings["sizes"]
    weights = sum(m * n for m, n in zip(sizes[:-1], sizes[1:]))
    shape = memory.DataShape.mnist(sizes[0])
    flops = settings["epochs"] * (6 * shape.n_train + 2 * shape.n_validation) * weights
    return RUN_OVERHEAD_SECONDS + flops / FLOPS_PER_CORE.get(settings.get("dtype", "float32"),
                                                             FLOPS_PER_CORE["float64"])


def sweep_seconds(runs: list[dict], cores: int) -> float:
    """The whole grid's time with the machine's ``cores`` busy."""
    return sum(run_seconds(run) for run in runs) / max(1, cores)


def duration(seconds: float) -> str:
    """3725 -> '1 h 2 min'; said the way a person plans with it."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours = seconds / 3600
    if hours < 48:
        return f"{int(hours)} h {round((hours % 1) * 60)} min"
    return f"{hours / 24:.1f} days"


def size_line(n_runs: int, seconds: float, cores: int) -> str:
    return (f"{n_runs} runs, about {duration(seconds)} on {cores} core{'s' if cores != 1 else ''} "
            "(a rough figure, on MNIST's 50,000 images)")
