"""The multilayer perceptron: parameters, forward pass, backward pass, losses.

Pure NumPy, no I/O. Rows are samples: a mini-batch X of shape (B, n_0) goes
through layers l = 1..L as whole matrices (README, "The math")::

    Z_l = A_{l-1} W_l + b_l          W_l: (n_{l-1}, n_l), b_l: (n_l,)
    A_l = f(Z_l)                     hidden layers: f = σ (default), tanh or relu
    A_L = σ(Z_L)                     the output for loss "mse"
    A_L = softmax(Z_L)               the output for loss "ce"

    Δ_L = (A_L − Y) ⊙ A_L ⊙ (1 − A_L) / B     quadratic cost  C = ½‖A_L − Y‖² (mean over the batch)
    Δ_L = (A_L − Y) / B                      cross-entropy   C = −Σ y log a   (mean over the batch)

    ∂C/∂W_l = A_{l-1}ᵀ Δ_l      ∂C/∂b_l = Σ_rows Δ_l      Δ_{l-1} = (Δ_l W_lᵀ) ⊙ f'(A_{l-1})

f' is written with the layer's output A = f(Z), which the forward pass kept:
σ' = A (1 − A), tanh' = 1 − A², relu' = [A > 0] (see :data:`HIDDEN_ACTIVATIONS`).

Every array a step needs lives in a :class:`Workspace` made once per batch
size, and every operation writes into it with ``out=``: a training step
allocates nothing, which is most of what makes small batches fast.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .blas import aligned_copy, aligned_empty, matmul_at_b, matmul_into

LOSSES = ("ce", "mse")
ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = ("xavier", "he", "scaled-normal", "normal")
#: "auto": the initialisation that suits the hidden unit (:func:`default_init`).
AUTO_INIT = "auto"
DTYPES = {"float32": np.float32, "float64": np.float64}

#: Rows per chunk when predicting on a whole data set: big enough for fast
#: matrix products, small enough to keep memory flat (8192 x 128 floats = 4 MB).
PREDICT_CHUNK = 8192


class Workspace:
    """Preallocated arrays for one batch size, reused by every step of that size.

    ``z[l]`` holds Z_l and then, in place, A_l = σ(Z_l); ``delta[l]`` holds Δ_l;
    ``grad_w``/``grad_b`` hold the (scaled) gradients. Index l runs over layers
    1..L as 0..L-1.
    """

    def __init__(self, sizes: Sequence[int], batch_size: int, dtype):
        self.batch_size = batch_size
        layer_widths = sizes[1:]
        # A hidden layer wider than the batch is stored column-major: its product is
        # then computed as the transpose, Z_lᵀ = W_lᵀ A_{l-1}ᵀ (blas.matmul_into), which
        # OpenBLAS splits between its threads along the wide side. At batch size 10
        # the 10x784 @ 784x128 product takes ~50 µs instead of ~70 µs.
        last = len(layer_widths) - 1
        # every array starts a cache line: blas.CACHE_LINE says why
        self.z = [aligned_empty((batch_size, n), dtype, order="F" if batch_size < n and l < last else "C")
                  for l, n in enumerate(layer_widths)]
        self.delta = [aligned_empty((batch_size, n), dtype) for n in layer_widths]
        self.scratch = [aligned_empty((batch_size, n), dtype) for n in layer_widths]
        self.grad_w = [aligned_empty((m, n), dtype) for m, n in zip(sizes[:-1], layer_widths)]
        self.grad_b = [aligned_empty(n, dtype) for n in layer_widths]
        self.ones = np.ones(batch_size, dtype)  # Σ_rows Δ as ones·Δ: one BLAS call, faster than .sum(axis=0)
        self.ones_column = self.ones.reshape(batch_size, 1)
        self.row = np.empty((batch_size, 1), dtype)  # per-row max, then sum, of the softmax
        self.scale = np.empty((), dtype)  # η / B as a 0-d array: cheaper operand than a Python float

    def keep_outputs(self, outputs: np.ndarray, row_sums: np.ndarray) -> None:
        """Let the next forward pass leave its output layer in ``outputs`` and ``row_sums``.

        They are rows of larger buffers: the loss of many steps is then computed
        in one go from what they hold (:meth:`MLP.loss_sum`), instead of three
        small NumPy calls in every step.
        """
        self.z[-1] = outputs
        self.row = row_sums

    def first_rows(self, n: int) -> "Workspace":
        """A workspace for a smaller batch that shares this one's memory (for the last, partial batch)."""
        if n == self.batch_size:
            return self
        view = object.__new__(Workspace)
        view.batch_size = n
        for name in ("z", "delta", "scratch"):
            setattr(view, name, [a[:n] for a in getattr(self, name)])
        view.grad_w, view.grad_b = self.grad_w, self.grad_b
        view.ones, view.row = self.ones[:n], self.row[:n]
        view.ones_column = self.ones_column[:n]
        view.scale = np.empty((), self.scale.dtype)
        return view


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(z) = 1 / (1 + e^{-z}), in place when ``out is z``.

    For z below about -88 (float32) e^{-z} overflows to inf and 1/(1+inf) = 0,
    which is the exact limit; the overflow flag is silenced, not the result.
    """
    with np.errstate(over="ignore", under="ignore"):
        return _sigmoid(z, out)


def _sigmoid(z, out):
    """:func:`sigmoid` without its errstate (callers hold one open: it costs microseconds)."""
    out = np.negative(z, out=out)
    np.exp(out, out=out)
    out += _one(out.dtype)
    return np.reciprocal(out, out=out)


# NumPy converts a Python scalar operand on every call (a microsecond, as much as
# the whole operation on a small batch); a 0-d array of the right type is free.
_ONES = {np.dtype(t): np.ones((), t) for t in (np.float32, np.float64)}


def _one(dtype):
    return _ONES.get(dtype, 1)


def sigmoid_prime_from_output(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """σ'(z) written with the layer's output a = σ(z): σ'(z) = a (1 − a)."""
    np.subtract(_one(a.dtype), a, out=out)
    out *= a
    return out


def _tanh(z, out):
    """tanh(z), in place when ``out is z``; never overflows (it saturates at ±1)."""
    return np.tanh(z, out=out)


def tanh_prime_from_output(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """tanh'(z) written with the layer's output a = tanh(z): tanh'(z) = 1 − a²."""
    np.multiply(a, a, out=out)
    np.subtract(_one(a.dtype), out, out=out)
    return out


def _relu(z, out):
    """max(z, 0), in place when ``out is z``."""
    return np.maximum(z, _ZEROS.get(z.dtype, 0), out=out)


def relu_prime_from_output(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """relu'(z) written with the layer's output a = max(z, 0): relu'(z) = [a > 0] (1 or 0).

    At z = 0 exactly the derivative is undefined; like every library we use 0 there.
    """
    return np.greater(a, _ZEROS.get(a.dtype, 0), out=out)


_ZEROS = {np.dtype(t): np.zeros((), t) for t in (np.float32, np.float64)}

#: Hidden units by name: (f, f' from the output). Both write into ``out``;
#: f works in place (out is z). As scikit-learn's ``neural_network._base``.
HIDDEN_ACTIVATIONS = {
    "sigmoid": (_sigmoid, sigmoid_prime_from_output),  # σ(z) = 1/(1 + e^{-z}),  σ' = a (1 − a) ≤ 1/4
    "tanh": (_tanh, tanh_prime_from_output),            # tanh(z),                tanh' = 1 − a²  ≤ 1
    "relu": (_relu, relu_prime_from_output),            # max(z, 0),              relu' = [a > 0]
}


def softmax(z: np.ndarray, work_row: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Row-wise softmax. Shifts z by its row maximum first (in place) so exp never overflows.

    Afterwards ``z`` holds the shifted logits and ``work_row`` the row sums, from
    which the cross-entropy is exact: −log a_y = log Σ − (z_y − max).
    """
    # ufunc.reduce directly: np.max / np.sum add microseconds of Python wrapping per call
    np.maximum.reduce(z, axis=1, keepdims=True, out=work_row)
    z -= work_row
    np.exp(z, out=out)
    np.add.reduce(out, axis=1, keepdims=True, out=work_row)
    out /= work_row
    return out


class MLP:
    """A fully connected network trained by backpropagation.

    ``sizes`` lists the layer widths, input first and classes last, e.g.
    (784, 128, 64, 10). ``loss`` is "ce" (softmax output, cross-entropy) or
    "mse" (sigmoid output, quadratic cost as in Nielsen's book).
    ``activation`` is the hidden units' f: "sigmoid" (default), "tanh" or
    "relu". ``init`` "auto" picks the initialisation that suits f
    (:func:`default_init`).
    """

    def __init__(self, sizes, loss="ce", *, weights=None, biases=None, dtype=np.float32, init=AUTO_INIT, seed=0,
                 activation="sigmoid"):
        sizes = tuple(int(n) for n in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least two positive widths, got {sizes}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.sizes = sizes
        self.loss = loss
        self.activation = activation
        self._activate, self._derivative = HIDDEN_ACTIVATIONS[activation]
        self.dtype = np.dtype(dtype)
        if weights is None:
            weights, biases = initial_parameters(sizes, init, seed, activation)
        self.weights = [aligned_copy(w, self.dtype) for w in weights]  # on cache lines: blas.CACHE_LINE
        self.biases = [aligned_copy(b, self.dtype) for b in biases]
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.shape != (sizes[l], sizes[l + 1]) or b.shape != (sizes[l + 1],):
                raise ValueError(f"layer {l + 1}: expected W {(sizes[l], sizes[l + 1])} and b {(sizes[l + 1],)}, "
                                 f"got {w.shape} and {b.shape}")
        self._workspaces: dict[int, Workspace] = {}

    # ------------------------------------------------------------------ basics
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

    def workspace(self, batch_size: int) -> Workspace:
        """The buffers for ``batch_size`` rows, made on first use and kept."""
        work = self._workspaces.get(batch_size)
        if work is None:
            work = self._workspaces[batch_size] = Workspace(self.sizes, batch_size, self.dtype)
        return work

    # ------------------------------------------------------------ forward pass
    def forward(self, x: np.ndarray, work: Workspace | None = None) -> list[np.ndarray]:
        """Activations [A_0 = X, A_1, ..., A_L] of a batch, computed into ``work``.

        The returned arrays belong to the workspace: copy them if you keep them
        past the next call.
        """
        if work is None:
            work = self.workspace(len(x))
        with np.errstate(over="ignore", under="ignore"):  # see sigmoid()
            return self._forward(x, work)

    def _forward(self, x, work):
        activations = [x]
        last = self.n_layers - 1
        activate = self._activate
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = work.z[l]
            matmul_into(activations[-1], w, z)                # Z_l = A_{l-1} W_l
            z += b                                             #       + b_l
            if l < last:
                a = activate(z, z)                             # A_l = f(Z_l), in place
            elif self.loss == "ce":
                a = softmax(z, work.row, out=work.scratch[l])  # A_L = softmax(Z_L)
            else:
                a = _sigmoid(z, out=z)                         # A_L = σ(Z_L)
            activations.append(a)
        return activations

    def train_step(self, x, y_onehot, work: Workspace, lr: float):
        """Forward and backward of one batch; returns (activations, deltas).

        The deltas are already multiplied by ``lr`` (see :meth:`backward`).
        The loss is left to the caller (:meth:`batch_loss_sum`, or
        :meth:`loss_sum` over many steps). Call it inside
        ``np.errstate(over="ignore")``, as the training loop does once per
        epoch: an errstate per step would cost more than a small layer.
        """
        activations = self._forward(x, work)
        return activations, self.backward(activations, y_onehot, work, scale=lr)

    # ----------------------------------------------------------- backward pass
    def backward(self, activations, y_onehot, work: Workspace | None = None, scale: float = 1.0):
        """The deltas [Δ_1, ..., Δ_L] of a batch, each multiplied by ``scale``.

        C is the loss averaged over the batch. The gradients follow from them as
        ∂C/∂W_l = A_{l-1}ᵀ Δ_l and ∂C/∂b_l = Σ_rows Δ_l (:meth:`weight_gradients`);
        training leaves those products to the optimizer, which forms each one
        where the update needs it. Training passes the learning rate as ``scale``: multiplying
        the small Δ_L by it is cheaper than scaling every weight gradient, and
        the chain rule carries it to all layers. The arrays belong to ``work``.
        """
        batch = len(y_onehot)
        if work is None:
            work = self.workspace(batch)
        out_layer = self.n_layers - 1
        a_out = activations[-1]
        delta = work.delta[out_layer]
        np.subtract(a_out, y_onehot, out=delta)                                # A_L − Y
        if self.loss == "mse":
            delta *= sigmoid_prime_from_output(a_out, work.scratch[out_layer])  # ⊙ A_L (1 − A_L)
        work.scale[...] = scale / batch
        delta *= work.scale                                                    # mean over the batch, × scale

        derivative = self._derivative  # f' from the output A, e.g. σ' = A (1 − A)
        for l in range(out_layer, 0, -1):
            prev = work.delta[l - 1]
            matmul_into(work.delta[l], self.weights[l].T, prev)        # Δ_{l-1} = (Δ_l W_lᵀ)
            prev *= derivative(activations[l], work.scratch[l - 1])    #           ⊙ f'(A_{l-1})
        return work.delta

    def weight_gradients(self, activations, deltas, work: Workspace):
        """(∂C/∂W_l, ∂C/∂b_l) for every layer from the deltas; arrays of ``work``."""
        for l in range(self.n_layers):
            matmul_at_b(activations[l], deltas[l], work.grad_w[l])         # ∂C/∂W_l = A_{l-1}ᵀ Δ_l
            np.matmul(work.ones, deltas[l], out=work.grad_b[l])            # ∂C/∂b_l = Σ_rows Δ_l
        return work.grad_w, work.grad_b

    def gradients(self, x, y):
        """Forward and backward for labels ``y``; fresh copies of (grad_w, grad_b)."""
        work = Workspace(self.sizes, len(x), self.dtype)
        activations = self.forward(x, work)
        deltas = self.backward(activations, one_hot(y, self.sizes[-1], self.dtype), work)
        grad_w, grad_b = self.weight_gradients(activations, deltas, work)
        return [g.copy() for g in grad_w], [g.copy() for g in grad_b]

    # ------------------------------------------------------------------ losses
    def batch_loss_sum(self, activations, y_onehot, work: Workspace) -> float:
        """The loss summed over the rows of a batch just sent through :meth:`forward`."""
        return self.loss_sum(work.z[-1], work.row, y_onehot)

    def loss_sum(self, outputs: np.ndarray, row_sums: np.ndarray, y_onehot: np.ndarray) -> float:
        """The loss summed over rows, from what the forward pass left in a workspace's output layer.

        For "mse" ``outputs`` holds A_L and the loss is ½‖A_L − Y‖². For "ce" it
        holds the shifted logits Z_L − max and ``row_sums`` the softmax
        denominators Σ_j e^{z_j − max}, so −log a_y = log Σ − (z_y − max): exact
        even where a_y underflows to 0.
        """
        if self.loss == "mse":
            error = outputs - y_onehot
            return 0.5 * float(np.vdot(error, error))
        return float(np.add.reduce(np.log(row_sums), axis=None) - np.vdot(y_onehot, outputs))

    # --------------------------------------------------------- whole data sets
    def evaluate(self, x: np.ndarray, y: np.ndarray, chunk: int = PREDICT_CHUNK):
        """Mean loss and predicted classes over a data set, in chunks of ``chunk`` rows."""
        n_classes = self.sizes[-1]
        predictions = np.empty(len(x), np.int64)
        total_loss = 0.0
        work = self.workspace(min(chunk, len(x)))
        onehot = np.zeros((work.batch_size, n_classes), self.dtype)
        for start in range(0, len(x), chunk):
            xb, yb = x[start:start + chunk], y[start:start + chunk]
            part = work.first_rows(len(xb))
            activations = self.forward(_as_dtype(xb, self.dtype), part)
            yb_onehot = onehot[: len(xb)]
            yb_onehot.fill(0)
            yb_onehot[np.arange(len(yb)), yb] = 1
            total_loss += self.batch_loss_sum(activations, yb_onehot, part)
            np.argmax(activations[-1], axis=1, out=predictions[start:start + len(xb)])
        return total_loss / len(x), predictions

    def predict_proba(self, x: np.ndarray, chunk: int = PREDICT_CHUNK) -> np.ndarray:
        """Output activations for every row of ``x`` (softmax probabilities for "ce")."""
        result = np.empty((len(x), self.sizes[-1]), self.dtype)
        work = self.workspace(min(chunk, len(x)))
        for start in range(0, len(x), chunk):
            xb = x[start:start + chunk]
            result[start:start + len(xb)] = self.forward(_as_dtype(xb, self.dtype), work.first_rows(len(xb)))[-1]
        return result

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most likely class of every row of ``x``."""
        return self.predict_proba(x).argmax(axis=1)



def _as_dtype(x: np.ndarray, dtype) -> np.ndarray:
    return x if x.dtype == dtype else x.astype(dtype)


def one_hot(labels: np.ndarray, n_classes: int, dtype=np.float32) -> np.ndarray:
    """Rows of zeros with a one in each label's column."""
    labels = np.asarray(labels)
    out = np.zeros((len(labels), n_classes), dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


def default_init(activation: str) -> str:
    """The initialisation that suits a hidden unit: He for relu, Glorot/Xavier for sigmoid and tanh.

    Both keep the variance of the signal roughly constant from layer to layer at
    the start: Var(W) = 2/(n_in + n_out) for units with slope ~1 around 0
    (Glorot & Bengio 2010), 2/n_in for relu, which zeroes half its inputs (He et al. 2015).
    """
    return "he" if activation == "relu" else "xavier"


def initial_parameters(sizes, init: str = AUTO_INIT, seed=0, activation: str = "sigmoid"):
    """Random starting weights and biases, drawn in float64 so every dtype starts alike.

    "xavier": Glorot-uniform weights U(±√(6/(n_in + n_out))), zero biases;
    keeps sigmoid and tanh units out of saturation at the start. "he": He-normal
    weights N(0, 2/n_in), zero biases, for relu. "scaled-normal": weights
    N(0, 1/n_in) and standard-normal biases, Nielsen's network2 (ch. 3).
    "normal": standard-normal weights and biases, as in the seed article
    (Nielsen's network.py). "auto": :func:`default_init` of ``activation``.
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
