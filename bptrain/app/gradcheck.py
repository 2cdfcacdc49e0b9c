"""Numerical gradient check: backprop's gradients against central differences.

For a parameter θ, (C(θ + ε) − C(θ − ε)) / 2ε approximates ∂C/∂θ with an error
of order ε². If backward is right, the two agree to many digits in float64;
a wrong index or a missing transpose shows up as a relative error near 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.network import MLP, one_hot

#: Relative error above which a layer fails. Correct float64 backprop scores ~1e-9.
TOLERANCE = 1e-6


@dataclass
class CheckRow:
    layer: int  # 1-based
    name: str  # "W" or "b"
    shape: tuple
    checked: int  # how many entries were compared
    relative_error: float

    @property
    def passed(self) -> bool:
        return self.relative_error < TOLERANCE


def batch_loss(model: MLP, x: np.ndarray, y_onehot: np.ndarray) -> float:
    """The batch-mean loss C that backward differentiates."""
    zs, activations = model.forward(x)
    return model.loss_value(zs[-1], activations[-1], y_onehot)


def numerical_gradient(model: MLP, x, y_onehot, param: np.ndarray, indices, eps: float = 1e-6) -> np.ndarray:
    """Central-difference estimates of ∂C/∂param at the flat ``indices`` (param is perturbed in place)."""
    flat = param.reshape(-1)
    estimates = np.empty(len(indices))
    for k, i in enumerate(indices):
        saved = flat[i]
        flat[i] = saved + eps
        up = batch_loss(model, x, y_onehot)
        flat[i] = saved - eps
        down = batch_loss(model, x, y_onehot)
        flat[i] = saved
        estimates[k] = (up - down) / (2 * eps)
    return estimates


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖ / (‖a‖ + ‖b‖), and 0 when both are zero."""
    scale = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def gradient_check(sizes, loss: str = "ce", batch_size: int = 8, seed: int = 0, max_entries: int | None = 500,
                   eps: float = 1e-6, activation: str = "sigmoid") -> list[CheckRow]:
    """Check every W and b of a random float64 network on a random batch.

    ``max_entries`` caps the entries compared per array (chosen at random) so
    wide layers stay quick; ``None`` compares them all. For relu, central
    differences are wrong where a pre-activation is within ``eps`` of the kink at
    0; with random inputs and weights that has probability ~1e-6 per unit.
    """
    rng = np.random.default_rng(seed)
    model = MLP(sizes, loss, dtype=np.float64, seed=seed, activation=activation)
    x = rng.random((batch_size, sizes[0]))
    y_onehot = one_hot(rng.integers(0, sizes[-1], batch_size), sizes[-1], np.float64)
    _, activations = model.forward(x)
    grads = model.backward(activations, y_onehot)
    analytic = grads.weights, grads.biases

    rows = []
    for l in range(model.n_layers):
        for name, param, grad in (("W", model.weights[l], analytic[0][l]), ("b", model.biases[l], analytic[1][l])):
            if max_entries is None or param.size <= max_entries:
                indices = np.arange(param.size)
            else:
                indices = np.sort(rng.choice(param.size, max_entries, replace=False))
            estimate = numerical_gradient(model, x, y_onehot, param, indices, eps)
            error = relative_error(grad.reshape(-1)[indices], estimate)
            rows.append(CheckRow(l + 1, name, param.shape, len(indices), error))
    return rows
