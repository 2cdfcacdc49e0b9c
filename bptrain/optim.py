"""Parameter updates and learning-rate schedules for mini-batch SGD.

The network hands us deltas already multiplied by the learning rate (see
``MLP.backward(scale=lr)``), so the plain SGD update of a layer is a matrix
product and a subtraction, W ← W − A_{l-1}ᵀ(ηΔ_l), with no gradient to scale.
"""

from __future__ import annotations

import math

import numpy as np

from .blas import PairUpdate, PreparedGemmAtB

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

    This is PyTorch's SGD with the learning rate inside the velocity.

    How it is computed, streaming W and v as few times as possible. The
    product g is never stored: gemm adds it into W or v as it forms it. The
    optimizer keeps s = μv, the velocity already multiplied by the momentum,
    so that this gemm only adds (β = 1; OpenBLAS scales C in a pass of its own
    for any other β: 3-5% of a default epoch at batch size 10-32). One pass
    over (s, W) together (:class:`bptrain.blas.PairUpdate`: the 2x2 map below,
    applied to the old s and W) does the rest:

        plain:      W ← (1 − ηλ) W − g                      one gemm into W
        classical:  s ← s + g                  (= v' − ηλW, with v' the new v)     one gemm into s
                    (s, W) ← (μs + μηλW, −s + (1 − ηλ)W)   (= μv', W − v')         one pass
        Nesterov:   s ← s + g                  (= v' − ηλW)                         one gemm into s
                    (s, W) ← (μs + μηλW, −μs + (1 − ηλ − μηλ)W)   (= μv', (1 − ηλ)W − μv')   one pass
                    W ← W − g                                                       one gemm into W

    Each array's gemm and pair-update arguments are prepared once, here.
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
        params = self.weights + self.biases  # W_1..W_L, then b_1..b_L
        scratch = [np.empty_like(p) for p in params]  # used only where NumPy does an update
        self._into_param = [PreparedGemmAtB(p, s) for p, s in zip(params, scratch)]
        if momentum:
            # s = μv for each W_l and b_l (see above); the velocity v itself is s / μ
            self.scaled_velocity_w = [np.zeros_like(w) for w in self.weights]
            self.scaled_velocity_b = [np.zeros_like(b) for b in self.biases]
            scaled = self.scaled_velocity_w + self.scaled_velocity_b
            self._into_scaled_velocity = [PreparedGemmAtB(v, s) for v, s in zip(scaled, scratch)]
            self._scaled_velocity_and_param = [PairUpdate(v, p, s) for v, p, s in zip(scaled, params, scratch)]

    def step(self, activations, deltas, work, lr: float) -> None:
        """Update every layer from a batch's activations [A_0..A_{L-1}] and η-scaled deltas [ηΔ_1..ηΔ_L]."""
        decay = lr * self.weight_decay
        n_layers = len(self.weights)
        for l, delta in enumerate(deltas):
            # the weight sees inputs A_{l-1}; the bias sees a constant input of 1 and is not decayed
            self._update(l, activations[l], delta, decay)
            self._update(n_layers + l, work.ones_column, delta, 0.0)

    def _update(self, i, inputs, delta, decay) -> None:
        if not self.momentum:
            self._into_param[i](inputs, delta, -1.0, 1.0 - decay)                      # W ← (1−ηλ)W − g
            return
        mu = self.momentum
        self._into_scaled_velocity[i](inputs, delta, 1.0, 1.0)                     # s ← s + g
        if self.nesterov:
            # (s, W) ← (μs + μηλW, −μs + (1 − ηλ − μηλ)W), then W ← W − g
            self._scaled_velocity_and_param[i](mu, mu * decay, -mu, 1.0 - decay - mu * decay)
            self._into_param[i](inputs, delta, -1.0, 1.0)
        else:
            # (s, W) ← (μs + μηλW, −s + (1 − ηλ)W)
            self._scaled_velocity_and_param[i](mu, mu * decay, -1.0, 1.0 - decay)


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
