"""The multilayer perceptron, written the way the README's math section writes it.

Rows are samples. A mini-batch X of shape (B, n_0) goes through layers l = 1..L
as whole matrices; lists below are indexed 0..L-1 for layers 1..L::

    Z_l = A_{l-1} W_l + b_l          W_l: (n_{l-1}, n_l),  b_l: (n_l,),  A_0 = X
    A_l = f(Z_l)                     hidden layers: f = σ (default), tanh or relu
    A_L = softmax(Z_L)               output for the cross-entropy loss "ce"
    A_L = σ(Z_L)                     output for the quadratic cost "mse"

    Δ_L = (A_L − Y) / B                      cross-entropy   C = −(1/B) Σ y log a
    Δ_L = (A_L − Y) ⊙ A_L ⊙ (1 − A_L) / B     quadratic cost  C = (1/B) Σ ½‖a − y‖²
    Δ_{l-1} = (Δ_l W_lᵀ) ⊙ f'(Z_{l-1})
    ∂C/∂W_l = A_{l-1}ᵀ Δ_l           ∂C/∂b_l = Σ_rows Δ_l

This is the specification: plain NumPy, a new array for every result. The
fast engine (:mod:`bptrain.fast`) computes the same numbers in preallocated
buffers, and the tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOSSES = ("ce", "mse")
ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = ("xavier", "he", "scaled-normal", "normal")
#: "auto": the initialisation that suits the hidden unit (:func:`default_init`).
AUTO_INIT = "auto"
DTYPES = {"float32": np.float32, "float64": np.float64}

#: Rows per chunk when evaluating a whole data set: big enough for fast matrix
#: products, small enough to keep memory flat.
PREDICT_CHUNK = 8192


# ------------------------------------------------------------------ units
def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e^{-z}). Below z ≈ −88 (float32) e^{-z} overflows to inf and σ = 0, the exact limit:
    the flag is silenced, not the result."""
    with np.errstate(over="ignore", under="ignore"):
        return 1 / (1 + np.exp(-z))


def relu(z: np.ndarray) -> np.ndarray:
    """max(z, 0)."""
    return np.maximum(z, 0)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise e^{z_j} / Σ_k e^{z_k}, with the row maximum subtracted first so e^z never overflows."""
    with np.errstate(under="ignore"):  # e^z of a very negative z is 0, the exact limit
        e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


#: Hidden units by name: f, and its derivative f' written with the layer's output a = f(z),
#: which the forward pass keeps: σ' = a(1 − a), tanh' = 1 − a², relu' = [a > 0].
HIDDEN_UNITS = {
    "sigmoid": (sigmoid, lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "relu": (relu, lambda a: (a > 0).astype(a.dtype)),
}


def one_hot(labels, n_classes: int, dtype=np.float32, out: np.ndarray | None = None) -> np.ndarray:
    """Y: one row per label, 1 in the label's column, 0 elsewhere (written into ``out`` if given)."""
    labels = np.asarray(labels)
    if out is None:
        out = np.empty((len(labels), n_classes), dtype)
    out.fill(0)
    out[np.arange(len(labels)), labels] = 1
    return out


# --------------------------------------------------------- initialisation
def default_init(activation: str) -> str:
    """He for relu, Glorot/Xavier for sigmoid and tanh: both keep the signal's variance about
    constant from layer to layer at the start (Glorot & Bengio 2010; He et al. 2015)."""
    return "he" if activation == "relu" else "xavier"


def initial_parameters(sizes, init: str = AUTO_INIT, seed=0, activation: str = "sigmoid"):
    """Random starting weights and biases, drawn in float64 so that every dtype starts alike.

    "xavier": W ~ U(±√(6/(n_in + n_out))), b = 0.  "he": W ~ N(0, 2/n_in), b = 0.
    "scaled-normal": W ~ N(0, 1/n_in), b ~ N(0, 1) (Nielsen's network2).
    "normal": W, b ~ N(0, 1) (Nielsen's network.py).  "auto": :func:`default_init`.
    """
    if init == AUTO_INIT:
        init = default_init(activation)
    if init not in INITS:
        raise ValueError(f"init must be one of {(AUTO_INIT,) + INITS}, got {init!r}")
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        if init == "xavier":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            weights.append(rng.uniform(-limit, limit, size=(fan_in, fan_out)))
            biases.append(np.zeros(fan_out))
        elif init == "he":
            weights.append(rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in))
            biases.append(np.zeros(fan_out))
        elif init == "scaled-normal":
            weights.append(rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in))
            biases.append(rng.standard_normal(fan_out))
        else:
            weights.append(rng.standard_normal((fan_in, fan_out)))
            biases.append(rng.standard_normal(fan_out))
    return weights, biases


# --------------------------------------------------------------- network
@dataclass
class Gradients:
    """What backpropagation gives for one batch, per layer l = 1..L: Δ_l, ∂C/∂W_l and ∂C/∂b_l."""

    deltas: list
    weights: list
    biases: list


class MLP:
    """A fully connected network: its parameters, forward pass, backward pass and loss.

    ``sizes`` lists the widths, input first and classes last, e.g. (784, 128, 64, 10).
    ``loss`` is "ce" (softmax output, cross-entropy) or "mse" (sigmoid output,
    quadratic cost, as in Nielsen's book). ``activation`` is the hidden units'
    f: "sigmoid" (default), "tanh" or "relu".
    """

    def __init__(self, sizes, loss="ce", *, weights=None, biases=None, dtype=np.float32, init=AUTO_INIT, seed=0,
                 activation="sigmoid", copy=True):
        sizes = tuple(int(n) for n in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least two positive widths, got {sizes}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.sizes, self.loss, self.activation = sizes, loss, activation
        self.dtype = np.dtype(dtype)
        if weights is None:
            weights, biases = initial_parameters(sizes, init, seed, activation)
        keep = np.array if copy else np.asarray  # copy=False: share given arrays of the dtype (read-only use)
        self.weights = [keep(w, self.dtype) for w in weights]
        self.biases = [keep(b, self.dtype) for b in biases]
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.shape != (sizes[l], sizes[l + 1]) or b.shape != (sizes[l + 1],):
                raise ValueError(f"layer {l + 1}: expected W {(sizes[l], sizes[l + 1])} and b {(sizes[l + 1],)}, "
                                 f"got {w.shape} and {b.shape}")

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def n_parameters(self) -> int:
        return sum(w.size + b.size for w, b in zip(self.weights, self.biases))

    def astype(self, dtype) -> "MLP":
        """A copy of this network whose parameters have another float type."""
        return MLP(self.sizes, self.loss, weights=self.weights, biases=self.biases, dtype=dtype,
                   activation=self.activation)

    # ---------------------------------------------------------- forward
    def forward(self, x: np.ndarray):
        """([Z_1, ..., Z_L], [A_0 = X, A_1, ..., A_L]) for a batch X of shape (B, n_0)."""
        f, _ = HIDDEN_UNITS[self.activation]
        a = np.asarray(x, self.dtype)
        zs, activations = [], [a]
        for l, (W, b) in enumerate(zip(self.weights, self.biases), start=1):
            z = a @ W + b                                   # Z_l = A_{l-1} W_l + b_l
            if l < self.n_layers:
                a = f(z)                                    # A_l = f(Z_l)
            elif self.loss == "ce":
                a = softmax(z)                              # A_L = softmax(Z_L)
            else:
                a = sigmoid(z)                              # A_L = σ(Z_L)
            zs.append(z)
            activations.append(a)
        return zs, activations

    def loss_value(self, z_out: np.ndarray, a_out: np.ndarray, y_onehot: np.ndarray) -> float:
        """C, the loss averaged over the batch, from the output layer's Z_L and A_L.

        Cross-entropy is computed from Z_L: −log a_y = log Σ_j e^{z_j} − z_y is exact even
        where a_y itself rounds to 0.
        """
        if self.loss == "mse":
            return float(0.5 * np.sum((a_out - y_onehot) ** 2) / len(a_out))   # ½‖A_L − Y‖², per row
        top = z_out.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(z_out - top).sum(axis=1)) + top[:, 0]          # log Σ_j e^{z_j}
        return float(np.mean(log_sum - np.sum(y_onehot * z_out, axis=1)))      # − z_y

    # --------------------------------------------------------- backward
    def backward(self, activations, y_onehot: np.ndarray) -> Gradients:
        """Δ_l, ∂C/∂W_l and ∂C/∂b_l of every layer, for C averaged over the batch."""
        _, f_prime = HIDDEN_UNITS[self.activation]
        batch = len(y_onehot)
        a_out = activations[-1]
        if self.loss == "ce":
            delta = (a_out - y_onehot) / batch                          # Δ_L = (A_L − Y) / B
        else:
            delta = (a_out - y_onehot) * a_out * (1 - a_out) / batch    # Δ_L = (A_L − Y) ⊙ σ'(Z_L) / B
        deltas, grad_w, grad_b = [None] * self.n_layers, [None] * self.n_layers, [None] * self.n_layers
        for l in range(self.n_layers - 1, -1, -1):                      # layers L..1, index l = layer − 1
            deltas[l] = delta
            grad_w[l] = activations[l].T @ delta                        # ∂C/∂W_l = A_{l-1}ᵀ Δ_l
            grad_b[l] = delta.sum(axis=0)                               # ∂C/∂b_l = Σ_rows Δ_l
            if l > 0:
                delta = (delta @ self.weights[l].T) * f_prime(activations[l])  # Δ_{l-1} = (Δ_l W_lᵀ) ⊙ f'(Z_{l-1})
        return Gradients(deltas, grad_w, grad_b)

    def gradients(self, x: np.ndarray, labels: np.ndarray):
        """(∂C/∂W_l, ∂C/∂b_l) for l = 1..L: one forward and one backward pass over (x, labels)."""
        _, activations = self.forward(x)
        grads = self.backward(activations, one_hot(labels, self.sizes[-1], self.dtype))
        return grads.weights, grads.biases

    # -------------------------------------------------- whole data sets
    def evaluate(self, x: np.ndarray, labels: np.ndarray, chunk: int = PREDICT_CHUNK):
        """Mean loss and predicted classes over a data set, ``chunk`` rows at a time."""
        total, predictions = 0.0, np.empty(len(x), np.int64)
        for start in range(0, len(x), chunk):
            zs, activations = self.forward(x[start:start + chunk])
            y = one_hot(labels[start:start + chunk], self.sizes[-1], self.dtype)
            total += self.loss_value(zs[-1], activations[-1], y) * len(y)
            predictions[start:start + len(y)] = activations[-1].argmax(axis=1)
        return total / len(x), predictions

    def predict_proba(self, x: np.ndarray, chunk: int = PREDICT_CHUNK) -> np.ndarray:
        """The output layer A_L for every row of ``x`` (softmax probabilities for "ce")."""
        return np.concatenate([self.forward(x[start:start + chunk])[1][-1] for start in range(0, len(x), chunk)]) \
            if len(x) else np.empty((0, self.sizes[-1]), self.dtype)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most likely class of every row of ``x``."""
        return self.predict_proba(x).argmax(axis=1)
