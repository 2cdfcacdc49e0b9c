"""Parameter updates and learning-rate schedules for mini-batch SGD.

The network hands us gradients already multiplied by the learning rate (see
``MLP.backward(scale=lr)``), so the plain SGD update is one in-place
subtraction per array: W ← W − η ∂C/∂W.
"""

from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("constant", "step", "cosine")


class SGD:
    """Mini-batch SGD with optional momentum (classical or Nesterov) and L2 weight decay.

    With step = η g (the scaled gradient) and velocity v:

        classical:  v ← μ v + step;          W ← W − v
        Nesterov:   v ← μ v + step;          W ← W − (step + μ v)
        L2 decay:   step ← step + η λ W      (weights only; biases are not decayed)

    This is PyTorch's SGD with the learning rate inside the velocity, which
    keeps each update to a few in-place operations.
    """

    def __init__(self, weights, biases, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("Nesterov momentum needs a momentum above 0")
        if weight_decay < 0.0:
            raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
        self.params = list(weights) + list(biases)
        self.n_weights = len(weights)
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.velocity = [np.zeros_like(p) for p in self.params] if momentum else None
        # scratch for η λ W, only when decay is on
        self._decay_scratch = [np.empty_like(w) for w in weights] if weight_decay else None

    def step(self, grad_w, grad_b, lr: float) -> None:
        """Apply one update from gradients already scaled by ``lr``; the gradient arrays are clobbered."""
        steps = list(grad_w) + list(grad_b)
        if self.weight_decay:
            for w, step, scratch in zip(self.params, steps, self._decay_scratch):
                step += np.multiply(w, lr * self.weight_decay, out=scratch)
        if not self.momentum:
            for param, step in zip(self.params, steps):
                param -= step
            return
        mu = self.momentum
        for param, step, v in zip(self.params, steps, self.velocity):
            v *= mu
            v += step
            if self.nesterov:
                param -= step
                param -= np.multiply(v, mu, out=step)
            else:
                param -= v


def learning_rate(schedule: str, base_lr: float, epoch: int, epochs: int,
                  step_size: int = 10, gamma: float = 0.1, min_lr: float = 0.0) -> float:
    """Learning rate for ``epoch`` (0-based) of ``epochs``.

    constant: base_lr.  step: base_lr · gamma^(epoch // step_size).
    cosine: from base_lr down to min_lr along half a cosine, reaching min_lr
    after the last epoch (so the last epoch still takes a real step).
    """
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * gamma ** (epoch // step_size)
    if schedule == "cosine":
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * epoch / epochs))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
