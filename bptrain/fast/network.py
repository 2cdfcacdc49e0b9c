"""The network's forward and backward pass in preallocated buffers: the core's formulas, no allocation.

Computes what :class:`bptrain.core.network.MLP` computes (the tests hold them equal), but every
array a step needs lives in a :class:`Workspace` made once per batch size (a step allocates
nothing: most of what makes small batches fast); the deltas come out times η (scaling the small
Δ_L is cheaper than every weight gradient, and the chain rule carries η to every layer); and the
loss of many steps is computed at once from their kept output rows.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.network import PREDICT_CHUNK, MLP, one_hot
from .aligned import aligned_copy, aligned_empty
from .blas import matmul_into
from .same_bits import PiecewiseProduct, pieces


class Workspace:
    """Preallocated arrays for one batch size, reused by every step of that size (layers 1..L as 0..L-1).

    ``z[l]`` holds Z_l and then, in place, A_l = f(Z_l); ``delta[l]`` holds ηΔ_l; ``scratch[l]``
    holds f'(A_l) and the softmax output. Every array starts a cache line."""

    def __init__(self, z, delta, scratch, ones, row, scale):
        self.batch_size = len(ones)
        self.z, self.delta, self.scratch = z, delta, scratch
        self.ones = ones  # Σ_rows ηΔ as ones·ηΔ: one BLAS call, faster than .sum(axis=0)
        self.ones_column = ones.reshape(-1, 1)
        self.row = row  # per-row max, then sum, of the softmax
        self.scale = scale  # η / B as a 0-d array: a cheaper operand than a Python float

    @classmethod
    def allocate(cls, sizes: Sequence[int], batch_size: int, dtype) -> "Workspace":
        widths = sizes[1:]
        last = len(widths) - 1
        # A hidden layer wider than the batch is stored column-major: its product is computed as the transpose,
        # Z_lᵀ = W_lᵀ A_{l-1}ᵀ (blas.matmul_into), which OpenBLAS splits between its threads along the wide side.
        z = [aligned_empty((batch_size, n), dtype, order="F" if batch_size < n and l < last else "C")
             for l, n in enumerate(widths)]
        delta = [aligned_empty((batch_size, n), dtype) for n in widths]
        scratch = [aligned_empty((batch_size, n), dtype) for n in widths]
        return cls(z, delta, scratch, np.ones(batch_size, dtype), np.empty((batch_size, 1), dtype),
                   np.empty((), dtype))

    def first_rows(self, n: int) -> "Workspace":
        """A workspace for a smaller batch that shares this one's memory (for the last, partial batch)."""
        if n == self.batch_size:
            return self
        return Workspace([a[:n] for a in self.z], [a[:n] for a in self.delta], [a[:n] for a in self.scratch],
                         self.ones[:n], self.row[:n], np.empty((), self.scale.dtype))


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(z) = 1 / (1 + e^{-z}), in place when ``out is z``. Below z ≈ −88 (float32) e^{-z} overflows
    to inf and 1/(1+inf) = 0, the exact limit: the overflow flag is silenced, not the result."""
    with np.errstate(over="ignore", under="ignore"):
        return _sigmoid(z, out)


def _sigmoid(z, out):
    """:func:`sigmoid` without its errstate (callers hold one open: it costs microseconds)."""
    out = np.negative(z, out=out)
    np.exp(out, out=out)
    out += _one(out.dtype)
    return np.reciprocal(out, out=out)


# NumPy converts a Python scalar operand on every call; a 0-d array of the right type needs no conversion.
_ONES = {np.dtype(t): np.ones((), t) for t in (np.float32, np.float64)}


def _one(dtype):
    return _ONES.get(dtype, 1)


def sigmoid_prime_from_output(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """σ'(z) written with the layer's output a = σ(z): σ'(z) = a (1 − a)."""
    np.subtract(_one(a.dtype), a, out=out)
    out *= a
    return out


def tanh_prime_from_output(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """tanh'(z) written with the layer's output a = tanh(z): tanh'(z) = 1 − a²."""
    np.multiply(a, a, out=out)
    np.subtract(_one(a.dtype), out, out=out)
    return out


def _relu(z, out):
    """max(z, 0), in place when ``out is z``."""
    return np.maximum(z, _ZEROS.get(z.dtype, 0), out=out)


def relu_prime_from_output(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """relu'(z) written with the layer's output a = max(z, 0): relu'(z) = [a > 0] (1 or 0). At z = 0 it is
    undefined; like every library we use 0 there."""
    return np.greater(a, _ZEROS.get(a.dtype, 0), out=out)


_ZEROS = {np.dtype(t): np.zeros((), t) for t in (np.float32, np.float64)}

#: Hidden units by name: (f, f' from the output). Both write into ``out``;
#: f works in place (out is z). As scikit-learn's ``neural_network._base``.
HIDDEN_ACTIVATIONS = {
    "sigmoid": (_sigmoid, sigmoid_prime_from_output),  # σ(z) = 1/(1 + e^{-z}),  σ' = a (1 − a) ≤ 1/4
    "tanh": (np.tanh, tanh_prime_from_output),          # tanh(z),                tanh' = 1 − a²  ≤ 1
    "relu": (_relu, relu_prime_from_output),            # max(z, 0),              relu' = [a > 0]
}


def softmax(z: np.ndarray, work_row: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Row-wise softmax, z shifted in place by its row maximum first so exp never overflows. Then ``z`` holds
    the shifted logits and ``work_row`` the row sums, from which −log a_y = log Σ − (z_y − max) is exact."""
    # ufunc.reduce directly: np.max / np.sum add microseconds of Python wrapping per call
    np.maximum.reduce(z, axis=1, keepdims=True, out=work_row)
    z -= work_row
    np.exp(z, out=out)
    np.add.reduce(out, axis=1, keepdims=True, out=work_row)
    out /= work_row
    return out


class FastNetwork:
    """The forward and backward pass of ``model`` in workspaces; the parameters stay the model's own. It moves
    them onto cache lines once (the same values in new arrays): build it before anything holds on to them."""

    def __init__(self, model: MLP):
        model.weights[:] = [aligned_copy(w, model.dtype) for w in model.weights]
        model.biases[:] = [aligned_copy(b, model.dtype) for b in model.biases]
        self.model = model
        self.sizes, self.loss, self.dtype = model.sizes, model.loss, model.dtype
        self._activate, self._derivative = HIDDEN_ACTIVATIONS[model.activation]
        self._workspaces: dict[int, Workspace] = {}
        # Products whose inner dimension (a layer's inputs forward, its units backward) is long are
        # summed in fixed pieces: their bits do not depend on the BLAS threads (.same_bits).
        pieced = [len(pieces(n, model.dtype)) > 1 for n in self.sizes]
        self._forward_products = [PiecewiseProduct() if pieced[l] else None for l in range(len(self.sizes) - 1)]
        self._backward_products = [PiecewiseProduct(transpose_b=True) if pieced[l + 1] else None
                                   for l in range(len(self.sizes) - 1)]

    def workspace(self, batch_size: int) -> Workspace:
        """The buffers for ``batch_size`` rows, made on first use and kept."""
        work = self._workspaces.get(batch_size)
        if work is None:
            work = self._workspaces[batch_size] = Workspace.allocate(self.sizes, batch_size, self.dtype)
        return work

    def forward(self, x: np.ndarray, work: Workspace, output=None) -> list[np.ndarray]:
        """[A_0 = X, A_1, ..., A_L], computed into ``work`` (the core's ``MLP.forward``).

        ``output``: (Z_L rows, row-sum rows) for the output layer instead of the workspace's own, so that a
        group of steps leaves its outputs side by side for one :meth:`loss_sum`. Call it inside
        ``np.errstate(over="ignore", under="ignore")``: saturated sigmoids overflow e^{-z} harmlessly."""
        weights, biases = self.model.weights, self.model.biases
        activations = [x]
        last = len(weights) - 1
        activate = self._activate
        for l, (w, b) in enumerate(zip(weights, biases)):
            z = work.z[l] if l < last or output is None else output[0]
            product = self._forward_products[l]
            if product is None:
                matmul_into(activations[-1], w, z)             # Z_l = A_{l-1} W_l
            else:
                product(activations[-1], w, z)                 #       (in pieces)
            z += b                                             #       + b_l
            if l < last:
                a = activate(z, z)                             # A_l = f(Z_l), in place
            elif self.loss == "ce":
                row = work.row if output is None else output[1]
                a = softmax(z, row, out=work.scratch[l])       # A_L = softmax(Z_L)
            else:
                a = _sigmoid(z, out=z)                         # A_L = σ(Z_L)
            activations.append(a)
        return activations

    def backward(self, activations, y_onehot, work: Workspace, scale: float = 1.0):
        """[ηΔ_1, ..., ηΔ_L] with η = ``scale`` (the core's ``MLP.backward``, its deltas times η)."""
        weights = self.model.weights
        out_layer = len(weights) - 1
        a_out = activations[-1]
        delta = work.delta[out_layer]
        np.subtract(a_out, y_onehot, out=delta)                                # A_L − Y
        if self.loss == "mse":
            delta *= sigmoid_prime_from_output(a_out, work.scratch[out_layer])  # ⊙ A_L (1 − A_L)
        work.scale[...] = scale / len(y_onehot)
        delta *= work.scale                                                    # × η / B
        derivative = self._derivative
        for l in range(out_layer, 0, -1):
            prev = work.delta[l - 1]
            product = self._backward_products[l]
            if product is None:
                matmul_into(work.delta[l], weights[l].T, prev)         # ηΔ_{l-1} = (ηΔ_l W_lᵀ)
            else:
                product(work.delta[l], weights[l], prev)               #            (in pieces)
            prev *= derivative(activations[l], work.scratch[l - 1])    #            ⊙ f'(A_{l-1})
        return work.delta

    def loss_sum(self, outputs: np.ndarray, row_sums: np.ndarray, y_onehot: np.ndarray) -> float:
        """The loss summed over rows, from what :meth:`forward` left in the output layer: for "mse" ``outputs``
        holds A_L and the loss is ½‖A_L − Y‖²; for "ce" the shifted logits Z_L − max, and ``row_sums`` the
        softmax denominators, so −log a_y = log Σ − (z_y − max): exact even where a_y underflows to 0."""
        if self.loss == "mse":
            error = outputs - y_onehot
            return 0.5 * float(np.vdot(error, error))
        return float(np.add.reduce(np.log(row_sums), axis=None) - np.vdot(y_onehot, outputs))

    def evaluate(self, x: np.ndarray, labels: np.ndarray, chunk: int = PREDICT_CHUNK):
        """Mean loss and predicted classes over a data set, in chunks of ``chunk`` rows."""
        predictions = np.empty(len(x), np.int64)
        total_loss = 0.0
        work = self.workspace(min(chunk, len(x)))
        targets = np.empty((work.batch_size, self.sizes[-1]), self.dtype)
        with np.errstate(over="ignore", under="ignore"):
            for start in range(0, len(x), chunk):
                xb, yb = x[start:start + chunk], labels[start:start + chunk]
                part = work.first_rows(len(xb))
                activations = self.forward(xb if xb.dtype == self.dtype else xb.astype(self.dtype), part)
                total_loss += self.loss_sum(part.z[-1], part.row, one_hot(yb, self.sizes[-1], out=targets[:len(xb)]))
                np.argmax(activations[-1], axis=1, out=predictions[start:start + len(xb)])
        return total_loss / len(x), predictions
