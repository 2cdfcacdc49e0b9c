"""Learning-rate schedules: the η of each epoch."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine")


def learning_rate(schedule: str, base_lr: float, epoch: int, epochs: int,
                  step_size: int = 10, gamma: float = 0.1, min_lr: float = 0.0) -> float:
    """η for ``epoch`` (0-based) of ``epochs``.

    constant: η₀.  step: η₀ · γ^⌊epoch / step_size⌋.
    cosine: from η₀ down to min_lr along half a cosine, reaching min_lr after the
    last epoch (so the last epoch still takes a real step).
    """
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * gamma ** (epoch // step_size)
    if schedule == "cosine":
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * epoch / epochs))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
