"""Parameter updates and learning-rate schedules for mini-batch SGD.

The network hands us deltas already multiplied by the learning rate (see
``MLP.backward(scale=lr)``), so the plain SGD update of a layer is a matrix
product and a subtraction, W ← W − A_{l-1}ᵀ(ηΔ_l), with no gradient to scale.
"""

from __future__ import annotations

import math

import numpy as np

from .blas import gemm_at_b

SCHEDULES = ("constant", "step", "cosine")


class SGD:
    """Mini-batch SGD with optional momentum (classical or Nesterov) and L2 weight decay.

    It receives the batch's activations A_{l-1} and deltas Δ_l, the latter
    already multiplied by the learning rate η, so the scaled gradient of W_l is
    g_l = A_{l-1}ᵀ(ηΔ_l) and of b_l it is Σ_rows ηΔ_l. With momentum μ, velocity
    v and L2 coefficient λ (weights only; biases are not decayed):

        plain:      W ← (1 − ηλ) W − g
        classical:  v ← μ v + g + ηλ W;     W ← W − v
        Nesterov:   v ← μ v + g + ηλ W;     W ← (1 − ηλ) W − g − μ v

    This is PyTorch's SGD with the learning rate inside the velocity. Each
    product A_{l-1}ᵀ(ηΔ_l) is formed and added into W or v by
    :func:`bptrain.blas.gemm_at_b` (one BLAS call on large layers).
    """

    def __init__(self, weights, biases, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("Nesterov momentum needs a momentum above 0")
        if weight_decay < 0.0:
            raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
        self.weights = list(weights)
        self.biases = [b.reshape(1, -1) for b in biases]  # (1, n) views: a bias is a one-row weight matrix
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        if momentum:
            self.velocity_w = [np.zeros_like(w) for w in self.weights]
            self.velocity_b = [np.zeros_like(b) for b in self.biases]
        scratch_w = [np.empty_like(w) for w in self.weights]
        scratch_b = [np.empty_like(b) for b in self.biases]
        self._scratch = scratch_w, scratch_b

    def step(self, activations, deltas, work, lr: float) -> None:
        """Update every layer from a batch's activations [A_0..A_{L-1}] and η-scaled deltas [ηΔ_1..ηΔ_L]."""
        decay = lr * self.weight_decay
        scratch_w, scratch_b = self._scratch
        for l, delta in enumerate(deltas):
            # the weight sees inputs A_{l-1}; the bias sees a constant input of 1
            self._update(l, self.weights[l], activations[l], delta, decay, scratch_w[l], is_bias=False)
            self._update(l, self.biases[l], work.ones_column, delta, 0.0, scratch_b[l], is_bias=True)

    def _update(self, l, param, inputs, delta, decay, scratch, is_bias) -> None:
        if not self.momentum:
            gemm_at_b(param, inputs, delta, alpha=-1.0, beta=1.0 - decay, scratch=scratch)  # W ← (1−ηλ)W − g
            return
        mu = self.momentum
        velocity = (self.velocity_b if is_bias else self.velocity_w)[l]
        gemm_at_b(velocity, inputs, delta, alpha=1.0, beta=mu, scratch=scratch)              # v ← μv + g
        if decay:
            velocity += np.multiply(param, decay, out=scratch)                               #     + ηλW
        if self.nesterov:
            gemm_at_b(param, inputs, delta, alpha=-1.0, beta=1.0 - decay, scratch=scratch)   # W ← (1−ηλ)W − g
            param -= np.multiply(velocity, mu, out=scratch)                                  #     − μv
        else:
            param -= velocity                                                                # W ← W − v


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
