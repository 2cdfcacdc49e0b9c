"""What the checker hands each exercise, and the right answer from the readable core.

Two small networks make every mistake show: 7-5-4-3 at B = 6, where a wrong transpose is a shape error,
and 4-4-4-4 at B = 4, where it is not and must be told by its values; each in float64 and float32. The
weights are N(0, 1), and each sample's label is the class the network finds least likely, so the errors
Δ_l are large (a confidently right digit gives δ's of 1e-3 and hides the sums over rows). Exercises that
meet extreme values get a case of their own: logits of ±1000, a softmax that rounds to 0.

The right answers come from :mod:`bptrain.core` (:class:`~bptrain.core.network.MLP`'s forward, backward
and loss, its sigmoid and softmax, the plain SGD update), and the gradients are also checked against a
central-difference numerical gradient (float64, ε = 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from ...core.network import HIDDEN_UNITS, MLP, one_hot, sigmoid, softmax
from ...core.optimizers import SGD

NETWORKS = (((7, 5, 4, 3), 6), ((4, 4, 4, 4), 4))
DTYPES = (np.float64, np.float32)
#: The learning rate sgd_step and momentum_step are given, and momentum_step's μ.
LR = 0.1
MU = 0.9
#: ε of the central differences (GUIDE: around 1e-5 in float64).
EPSILON = 1e-5
#: Exercises that also meet extreme values.
EXTREME = ("sigmoid", "softmax", "cross_entropy", "forward")
#: The layer (0-based index) whose gradients layer_gradients and delta_below are given.
LAYER = 1


@dataclass(frozen=True)
class Case:
    """A network, a batch and a dtype; ``extreme``: the values pushed to where naive formulas break."""

    sizes: tuple
    batch: int
    dtype: type
    extreme: bool = False

    @property
    def label(self) -> str:
        extreme = ", extreme values" if self.extreme else ""
        return f"{'-'.join(map(str, self.sizes))} at B = {self.batch}, {np.dtype(self.dtype).name}{extreme}"

    @cached_property
    def drawn(self):
        """(the network, the batch X): N(0, 1) weights and biases, pixels in [0, 1), drawn in float64."""
        rng = np.random.default_rng(sum(self.sizes) * 100 + self.batch)
        weights = [rng.standard_normal((m, n)) for m, n in zip(self.sizes[:-1], self.sizes[1:])]
        biases = [rng.standard_normal(n) for n in self.sizes[1:]]
        if self.extreme:
            weights[-1] = weights[-1] * 1000.0  # logits in the thousands
        x = rng.uniform(0, 1, (self.batch, self.sizes[0])).astype(self.dtype)
        return MLP(self.sizes, weights=weights, biases=biases, dtype=self.dtype), x

    @property
    def model(self) -> MLP:
        return self.drawn[0]

    @property
    def x(self) -> np.ndarray:
        return self.drawn[1]

    @cached_property
    def passes(self):
        """(Zs, As, labels, Y, gradients) of the core on this batch; each label the least likely class."""
        zs, activations = self.model.forward(self.x)
        labels = activations[-1].argmin(axis=1)
        y = one_hot(labels, self.sizes[-1], self.dtype)
        return zs, activations, labels, y, self.model.backward(activations, y)

    @property
    def zs(self):
        return self.passes[0]

    @property
    def activations(self):
        return self.passes[1]

    @property
    def y(self):
        return self.passes[3]

    @property
    def grads(self):
        return self.passes[4]

    @cached_property
    def velocities(self) -> list:
        """Velocities v of W_1..W_L, then of b_1..b_L, as a run's middle would have them."""
        rng = np.random.default_rng(7)
        params = self.model.weights + self.model.biases
        return [(0.01 * rng.standard_normal(p.shape)).astype(self.dtype) for p in params]

    @cached_property
    def extreme_logits(self) -> np.ndarray:
        """Logits of ±1000 where the true class's is far below the others: its softmax rounds to 0."""
        z = np.asarray(self.zs[-1], np.float64)
        z = np.where(self.y > 0, -1000.0, 1000.0 * np.sign(z + 0.01))
        z[0] = np.linspace(-1000, 1000, z.shape[1])
        return z.astype(self.dtype)

    @cached_property
    def numerical_gradients(self):
        """∂C/∂W_l and ∂C/∂b_l by central differences of the core's cost, in float64."""
        model = self.model.astype(np.float64)
        x, y = self.x.astype(np.float64), self.y.astype(np.float64)

        def cost():
            zs, activations = model.forward(x)
            return model.loss_value(zs[-1], activations[-1], y)

        return ([numerical(cost, w) for w in model.weights], [numerical(cost, b) for b in model.biases])

    @cached_property
    def numerical_output_delta(self):
        """∂C/∂Z_L by central differences of the core's cost, in float64."""
        model, y = self.model.astype(np.float64), self.y.astype(np.float64)
        z = np.array(self.zs[-1], np.float64)
        return numerical(lambda: model.loss_value(z, None, y), z)


def numerical(cost, theta: np.ndarray) -> np.ndarray:
    """(cost(θ + ε e_i) − cost(θ − ε e_i)) / 2ε for every element of θ, changed in place and put back."""
    grad = np.zeros_like(theta)
    for index in np.ndindex(theta.shape):
        kept = theta[index]
        theta[index] = kept + EPSILON
        up = cost()
        theta[index] = kept - EPSILON
        down = cost()
        theta[index] = kept
        grad[index] = (up - down) / (2 * EPSILON)
    return grad


@lru_cache(maxsize=None)
def case(sizes: tuple, batch: int, dtype, extreme: bool = False) -> Case:
    """The one :class:`Case` of these settings (its passes and numerical gradients are computed once)."""
    return Case(sizes, batch, dtype, extreme)


def cases_for(exercise: str) -> list[Case]:
    """The cases an exercise runs on, in order: float64 first (values), then float32 (dtypes), then extremes.
    The optional exercises run in float64 only."""
    if exercise in ("rel_error", "numerical_gradient"):
        return [case(sizes, batch, np.float64) for sizes, batch in NETWORKS]
    cases = [case(sizes, batch, dtype) for dtype in DTYPES for sizes, batch in NETWORKS]
    if exercise in EXTREME:
        cases += [case(NETWORKS[0][0], NETWORKS[0][1], dtype, extreme=True) for dtype in DTYPES]
    return cases


# ------------------------------------------------------------------ each exercise's inputs and answer
def arguments(exercise: str, case: Case) -> tuple:
    """What the checker calls ``exercise`` with on ``case`` (the checker makes the arrays read-only)."""
    zs, activations, y, grads = case.zs, case.activations, case.y, case.grads
    model = case.model
    if exercise == "sigmoid":
        if case.extreme:
            return (np.linspace(-1000, 1000, case.batch * case.sizes[1]).reshape(case.batch, -1).astype(case.dtype),)
        return (zs[0],)
    if exercise == "sigmoid_prime":
        return (activations[1],)
    if exercise == "softmax":
        return (case.extreme_logits if case.extreme else zs[-1],)
    if exercise == "cross_entropy":
        return (case.extreme_logits if case.extreme else zs[-1], y)
    if exercise == "forward":
        return (case.x, list(model.weights), list(model.biases))
    if exercise == "output_delta":
        return (activations[-1], y)
    if exercise == "layer_gradients":
        return (activations[LAYER], grads.deltas[LAYER])
    if exercise == "delta_below":
        return (grads.deltas[LAYER + 1], model.weights[LAYER + 1], activations[LAYER + 1])
    if exercise == "backward":
        return (list(zs), list(activations), y, list(model.weights))
    if exercise == "sgd_step":
        return (list(model.weights), list(model.biases), list(grads.weights), list(grads.biases), LR)
    if exercise == "momentum_step":
        velocities = case.velocities
        return (list(model.weights), list(model.biases), list(grads.weights), list(grads.biases),
                velocities[:len(zs)], velocities[len(zs):], LR, MU)
    if exercise == "rel_error":
        return (grads.weights[0], grads.weights[0] * (1 + 1e-3 * np.cos(np.arange(grads.weights[0].size)))
                .reshape(grads.weights[0].shape))
    if exercise == "numerical_gradient":
        def cost_of_w1(w1):  # C of the batch as a function of W_1 alone
            network = MLP(case.sizes, weights=[w1] + model.weights[1:], biases=model.biases, dtype=case.dtype,
                          copy=False)
            zs_, activations_ = network.forward(case.x)
            return network.loss_value(zs_[-1], activations_[-1], y)

        return (cost_of_w1, model.weights[0])
    raise KeyError(exercise)


def reference(exercise: str, case: Case):
    """The right output of ``exercise`` on ``case``, from the core."""
    zs, activations, y, grads = case.zs, case.activations, case.y, case.grads
    args = arguments(exercise, case)
    if exercise == "sigmoid":
        return sigmoid(args[0])
    if exercise == "sigmoid_prime":
        return HIDDEN_UNITS["sigmoid"][1](args[0])
    if exercise == "softmax":
        return softmax(args[0])
    if exercise == "cross_entropy":
        return case.model.loss_value(args[0], None, args[1])
    if exercise == "forward":
        return case.model.forward(case.x)
    if exercise == "output_delta":
        return grads.deltas[-1]
    if exercise == "layer_gradients":
        return grads.weights[LAYER], grads.biases[LAYER]
    if exercise == "delta_below":
        return grads.deltas[LAYER]
    if exercise == "backward":
        return grads.weights, grads.biases
    if exercise == "sgd_step":
        weights, biases = [w.copy() for w in case.model.weights], [b.copy() for b in case.model.biases]
        SGD(weights, biases).step(grads.weights, grads.biases, LR)       # θ ← θ − η g
        return weights, biases
    if exercise == "momentum_step":
        weights, biases = [w.copy() for w in case.model.weights], [b.copy() for b in case.model.biases]
        sgd = SGD(weights, biases, momentum=MU)
        sgd.load_state({"momentum": MU, "arrays": [v.copy() for v in case.velocities]})
        sgd.step(grads.weights, grads.biases, LR)                        # v ← μv + η g; θ ← θ − v
        return weights, biases, sgd.velocity_w, sgd.velocity_b
    if exercise == "rel_error":
        return rel_error(*args)
    if exercise == "numerical_gradient":
        return grads.weights[0]                                         # backprop's ∂C/∂W_1
    raise KeyError(exercise)


def rel_error(a, b) -> float:
    """cs231n's relative error: the largest |a − b| / max(1e−8, |a| + |b|), element by element."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(all="ignore"):
        return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)), initial=0.0))


# ------------------------------------------------------------------ where the core computes the same
CORE = Path(__file__).resolve().parent.parent.parent / "core"
#: The line of bptrain/core/ computing what each exercise computes: (file, text it holds).
CORE_LINES = {
    "sigmoid": ("network.py", "return 1 / (1 + np.exp(-z))"),
    "sigmoid_prime": ("network.py", '"sigmoid": (sigmoid, lambda a: a * (1 - a))'),
    "softmax": ("network.py", "e = np.exp(z - z.max(axis=1, keepdims=True))"),
    "cross_entropy": ("network.py", "log_sum = np.log(np.exp(z_out - top).sum(axis=1))"),
    "forward": ("network.py", "z = a @ W + b"),
    "output_delta": ("network.py", "delta = (a_out - y_onehot) / batch"),
    "layer_gradients": ("network.py", "grad_w[l] = activations[l].T @ delta"),
    "delta_below": ("network.py", "delta = (delta @ self.weights[l].T)"),
    "backward": ("network.py", "def backward(self, activations"),
    "sgd_step": ("optimizers.py", "theta -= step  "),
    "momentum_step": ("optimizers.py", "theta -= v  "),
}


def core_line(exercise: str) -> str | None:
    """``bptrain/core/FILE:LINE`` where the core computes what ``exercise`` does (None if it moved away)."""
    if exercise not in CORE_LINES:
        return None
    name, text = CORE_LINES[exercise]
    try:
        lines = (CORE / name).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for number, line in enumerate(lines, 1):
        if text in line:
            return f"bptrain/core/{name}:{number}"
    return None
