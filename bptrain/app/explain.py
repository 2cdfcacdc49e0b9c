"""`bptrain explain`: one digit (or one mini-batch) through the forward and backward pass, with the numbers.

The numbers are the trainer's own: the readable core's :meth:`~bptrain.core.network.MLP.forward` and
:meth:`~bptrain.core.network.MLP.backward` (what ``train --engine reference`` runs every step), on a
float64 copy of the model. This module only arranges them in the notation of the README's math section::

    Z_l = A_{l-1} W_l + b_l,   A_l = f(Z_l)                      forward, l = 1..L
    Δ_L = (A_L − Y) / B                                          cross-entropy (softmax output)
    Δ_L = (A_L − Y) ⊙ A_L ⊙ (1 − A_L) / B                        quadratic cost (sigmoid output)
    Δ_{l-1} = (Δ_l W_lᵀ) ⊙ f'(Z_{l-1})                           backward, l = L..2
    ∂C/∂W_l = A_{l-1}ᵀ Δ_l,   ∂C/∂b_l = Σ_rows Δ_l

The computation, :func:`explain`, makes one JSON-able dict, used by the command
(:mod:`bptrain.app.commands.explain`, which prints it or its ``--json``) and by ``POST /api/explain``
(:mod:`bptrain.app.serve.api` reads the request) alike, so the terminal and the page can never disagree.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.committee import output_probabilities
from ..core.errors import BptrainError
from ..core.network import HIDDEN_UNITS, MLP, one_hot
from ..core.optimizers import DEFAULT_LR

#: At most this many digits in one --batch-size, and at most this many values in one (B, n_l) array
#: summed over the layers (B × Σ n_l): a 784-128-64-10 network takes the full 10,000, float64 arrays
#: of a few hundred MB at most, whatever the network.
MAX_BATCH = 10_000
MAX_BATCH_VALUES = 10_000_000
#: Gradient steps that may be taken before explaining (the page's "Take one step", repeated).
MAX_STEPS = 50
#: --json gives every array in full up to this many digits, summaries beyond (unless --full).
FULL_UP_TO = 64
#: Largest entries listed in each summary.
TOP = 5
#: The largest learning rate a request may ask for (a step of η = 1000 already ruins any network).
MAX_LR = 1000.0

#: How each hidden unit is written: its name in A_l = f(Z_l), and f' from the layer's output A_l
#: (the same f' as bptrain.core.network.HIDDEN_UNITS), as matrices and for one unit j.
UNIT_NAMES = {"sigmoid": "σ", "tanh": "tanh", "relu": "relu"}
F_PRIME_OF_A = {"sigmoid": "A_{l} ⊙ (1 − A_{l})", "tanh": "1 − A_{l} ⊙ A_{l}", "relu": "[A_{l} > 0]"}
F_PRIME_OF_UNIT = {"sigmoid": "a_j (1 − a_j)", "tanh": "(1 − a_j²)", "relu": "[a_j > 0]"}

#: What the "arrays" argument of :func:`explain` keeps: "all" every array's values; "units" the values
#: of everything but the parameter-sized W_l and ∂C/∂W_l (one number per unit and digit); "summaries"
#: shapes, min/mean/max, norms and the largest entries only.
ARRAYS = ("all", "units", "summaries")


# ================================================================== the computation
def float64_copy(model: MLP) -> MLP:
    """A fresh float64 copy: its own arrays, so steps taken on it never touch ``model``."""
    return model.astype(np.float64)


def gradient_step(model: MLP, grads, lr: float) -> None:
    """One plain gradient step, in place: W_l ← W_l − η ∂C/∂W_l, b_l ← b_l − η ∂C/∂b_l."""
    for W, b, grad_w, grad_b in zip(model.weights, model.biases, grads.weights, grads.biases):
        W -= lr * grad_w
        b -= lr * grad_b


def backprop(model: MLP, x: np.ndarray, y_onehot: np.ndarray) -> dict:
    """The forward and backward pass of the core, and the two factors of each hidden Δ.

    For a hidden layer l the core computes Δ_l = (Δ_{l+1} W_{l+1}ᵀ) ⊙ f'(Z_l); ``backprop_sums`` and
    ``f_primes`` hold those two factors (lists indexed 0..L-1 for layers 1..L, as in the core),
    computed by the same operations, so their product is Δ_l exactly. The output layer has no back-propagated sum; its f' is σ' for the quadratic cost and
    none for cross-entropy (softmax and cross-entropy together give Δ_L = (A_L − Y)/B directly).
    """
    zs, activations = model.forward(x)
    loss = model.loss_value(zs[-1], activations[-1], y_onehot)
    grads = model.backward(activations, y_onehot)
    _, f_prime = HIDDEN_UNITS[model.activation]
    last = model.n_layers - 1                  # list index of layer L
    sums = [grads.deltas[i + 1] @ model.weights[i + 1].T for i in range(last)] + [None]   # Δ_{l+1} W_{l+1}ᵀ
    primes = [f_prime(activations[i + 1]) for i in range(last)]                           # f'(Z_l) from A_l
    a_out = activations[-1]
    primes.append(a_out * (1 - a_out) if model.loss == "mse" else None)                  # σ'(Z_L) = A_L(1 − A_L)
    return {"zs": zs, "activations": activations, "loss": loss, "grads": grads, "backprop_sums": sums,
            "f_primes": primes}


def choose_labels(model: MLP, x: np.ndarray, true_labels=None, label: int | None = None):
    """(targets, rule): ``label`` for every digit if given, else the true labels where known, else
    the network's own answers (of ``model`` as it is, before any step). Raises BptrainError for a
    label that is not a class."""
    classes = model.sizes[-1]
    if label is not None:
        if not 0 <= label < classes:
            raise BptrainError(f"label {label} is not a class of this model (0..{classes - 1})")
        return np.full(len(x), int(label), np.int64), "given"
    if true_labels is not None:
        return np.asarray(true_labels, np.int64), "true"
    return model.predict(np.asarray(x, model.dtype)).astype(np.int64), "prediction"


def check_batch(model: MLP, batch_size: int) -> None:
    """Refuse a batch whose arrays would not fit in a reasonable amount of memory."""
    if batch_size > MAX_BATCH:
        raise BptrainError(f"batch size {batch_size} is too large: at most {MAX_BATCH:,} digits")
    widths = sum(model.sizes)
    if batch_size * widths > MAX_BATCH_VALUES:
        raise BptrainError(f"batch size {batch_size} is too large for a {'-'.join(map(str, model.sizes))} network: "
                           f"at most {MAX_BATCH_VALUES // widths:,} digits (B × Σ n_l ≤ {MAX_BATCH_VALUES:,})")


def explain(model: MLP, x, labels, *, lr: float, lr_source: str = "given", label_rule: str = "given",
            true_labels=None, source: dict | None = None, steps: int = 0, arrays: str = "all",
            unit: tuple[int, int] | None = None) -> dict:
    """Everything ``bptrain explain`` shows, as one JSON-able dict.

    ``model`` is never changed: the work is done on a float64 copy, which first takes ``steps`` plain
    gradient steps of size ``lr`` on (x, labels) (the page's "Take one step", stateless). Then the
    forward and backward pass, per layer, and what one more step of size ``lr`` would do. ``arrays``
    says how much of each array to include (:data:`ARRAYS`); ``unit`` = (layer, j) adds that unit's
    incoming weights and the formula of its δ with the numbers of the first digit.
    """
    if arrays not in ARRAYS:
        raise ValueError(f"arrays must be one of {ARRAYS}, got {arrays!r}")
    if not 0 <= steps <= MAX_STEPS:
        raise BptrainError(f"steps must be 0..{MAX_STEPS}, got {steps}")
    if not (math.isfinite(lr) and 0 < lr <= MAX_LR):
        raise BptrainError(f"the learning rate must be a number above 0 and at most {MAX_LR:g}, got {lr!r}")
    net = float64_copy(model)
    x = np.asarray(x, np.float64).reshape(-1, net.sizes[0])
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(f"{len(x)} inputs but {len(labels)} labels")
    check_batch(net, len(x))
    if unit is not None:
        check_unit(net, unit)
    y = one_hot(labels, net.sizes[-1], np.float64)
    for _ in range(steps):
        gradient_step(net, backprop(net, x, y)["grads"], lr)
    run = backprop(net, x, y)
    values = arrays != "summaries"
    weights = arrays == "all"
    L, batch = net.n_layers, len(x)
    a_out = run["activations"][-1]
    probs = output_probabilities(net, a_out)
    rows = np.arange(batch)
    document = {
        "model": {"sizes": list(net.sizes), "loss": net.loss, "activation": net.activation,
                  "output": "softmax" if net.loss == "ce" else "sigmoid", "computed_in": "float64"},
        "input": dict(source or {}),
        "batch_size": batch,
        "labels": labels.tolist(),
        "label_rule": label_rule,
        "true_labels": None if true_labels is None else np.asarray(true_labels).astype(int).tolist(),
        "steps_taken": steps,
        "arrays": arrays,
        "A_0": summary(run["activations"][0], values=values),
        "layers": [_layer(net, run, l, values, weights) for l in range(1, L + 1)],
        "output": {
            "probabilities": summary(probs, values=values),
            "error": summary(a_out - y, by="magnitude", values=values),   # A_L − Y
            "predictions": probs.argmax(axis=1).tolist(),
            "p_label": json_floats(probs[rows, labels]),
        },
        "loss": json_float(run["loss"]),
        "loss_formula": ("C = −(1/B) Σ_rows log A_L[row, label]" if net.loss == "ce"
                         else "C = (1/B) Σ_rows ½‖A_L − Y‖²").replace("A_L", f"A_{L}"),
        "step": _one_step(net, x, y, run, lr, lr_source, labels, values),
    }
    if unit is not None:
        document["unit"] = unit_detail(net, run, y, *unit)
    return document


def _layer(net: MLP, run: dict, l: int, values: bool, weights: bool) -> dict:
    """Layer l (1-based): its parameters, forward quantities, the factors of Δ_l, Δ_l and the gradients."""
    i, L = l - 1, net.n_layers
    hidden = l < L
    grads = run["grads"]
    f = UNIT_NAMES[net.activation] if hidden else ("softmax" if net.loss == "ce" else "σ")
    if hidden:
        prime = "f'(Z_{l}) = " + F_PRIME_OF_A[net.activation]
        delta = f"Δ_{l} = (Δ_{l + 1} W_{l + 1}ᵀ) ⊙ " + F_PRIME_OF_A[net.activation]
    elif net.loss == "mse":
        prime = "σ'(Z_{l}) = A_{l} ⊙ (1 − A_{l})"
        delta = "Δ_{l} = (A_{l} − Y) ⊙ A_{l} ⊙ (1 − A_{l}) / B"
    else:
        prime = None
        delta = "Δ_{l} = (A_{l} − Y) / B"
    formulas = {
        "Z": "Z_{l} = A_{k} W_{l} + b_{l}", "A": f"A_{{l}} = {f}(Z_{{l}})", "f_prime": prime,
        "backprop_sum": "Δ_{m} W_{m}ᵀ" if hidden else None, "delta": delta,
        "grad_W": "∂C/∂W_{l} = A_{k}ᵀ Δ_{l}", "grad_b": "∂C/∂b_{l} = Σ_rows Δ_{l}",
    }
    formulas = {name: None if text is None else text.replace("{l}", str(l)).replace("{k}", str(l - 1))
                .replace("{m}", str(l + 1)) for name, text in formulas.items()}
    f_prime, backprop_sum = run["f_primes"][i], run["backprop_sums"][i]
    return {
        "l": l,
        "kind": "hidden" if hidden else "output",
        "units": net.sizes[l],
        "f": net.activation if hidden else ("softmax" if net.loss == "ce" else "sigmoid"),
        "formulas": formulas,
        "W": summary(net.weights[i], by="magnitude", values=weights),
        "b": summary(net.biases[i], values=values),
        "Z": summary(run["zs"][i], values=values),
        "A": summary(run["activations"][l], values=values),
        "f_prime": None if f_prime is None else summary(f_prime, values=values),
        "backprop_sum": None if backprop_sum is None else summary(backprop_sum, by="magnitude", values=values),
        "delta": summary(grads.deltas[i], by="magnitude", values=values),
        "grad_W": summary(grads.weights[i], by="magnitude", values=weights),
        "grad_b": summary(grads.biases[i], by="magnitude", values=values),
    }


def _one_step(net: MLP, x, y, run: dict, lr: float, lr_source: str, labels, values: bool) -> dict:
    """What one plain gradient step of size lr on this batch does to its loss and its labels' probabilities."""
    after = float64_copy(net)
    gradient_step(after, run["grads"], lr)
    zs, activations = after.forward(x)
    rows = np.arange(len(x))
    before = output_probabilities(net, run["activations"][-1])
    now = output_probabilities(after, activations[-1])
    return {
        "lr": lr,
        "lr_source": lr_source,
        "rule": "W_l ← W_l − η ∂C/∂W_l,  b_l ← b_l − η ∂C/∂b_l",
        "loss_before": json_float(run["loss"]),
        "loss_after": json_float(after.loss_value(zs[-1], activations[-1], y)),
        "p_label_before": json_floats(before[rows, labels]),
        "p_label_after": json_floats(now[rows, labels]),
        "predictions_after": now.argmax(axis=1).tolist(),
        "probabilities_after": summary(now, values=values),
    }


def check_unit(net: MLP, unit) -> None:
    layer, j = unit
    if not 1 <= layer <= net.n_layers:
        raise BptrainError(f"unit {layer},{j}: the layers are 1..{net.n_layers}")
    if not 0 <= j < net.sizes[layer]:
        raise BptrainError(f"unit {layer},{j}: layer {layer} has units 0..{net.sizes[layer] - 1}")


def unit_detail(net: MLP, run: dict, y: np.ndarray, layer: int, j: int, row: int = 0) -> dict:
    """One unit j of one layer, for one digit (``row`` of the batch): its incoming weights (a column of
    W_l; for layer 1 a picture of the input), bias, z, a, δ, the factors of δ and the formula of δ with
    these numbers filled in."""
    check_unit(net, (layer, j))
    i, L = layer - 1, net.n_layers
    batch = len(y)
    z, a = float(run["zs"][i][row, j]), float(run["activations"][layer][row, j])
    delta = float(run["grads"].deltas[i][row, j])
    detail = {
        "layer": layer, "j": j, "row": row, "kind": "hidden" if layer < L else "output",
        "bias": json_float(net.biases[i][j]), "z": json_float(z), "a": json_float(a), "delta": json_float(delta),
        "f_prime": None if run["f_primes"][i] is None else json_float(run["f_primes"][i][row, j]),
        "incoming_weights": json_floats(net.weights[i][:, j]),                 # W_l[:, j]
        "incoming_weights_gradient": json_floats(run["grads"].weights[i][:, j]),   # ∂C/∂W_l[:, j], the whole batch
        "bias_gradient": json_float(run["grads"].biases[i][j]),
    }
    if layer < L:
        s, fp = float(run["backprop_sums"][i][row, j]), float(run["f_primes"][i][row, j])
        detail["backprop_sum"] = json_float(s)                                 # Σ_k W_jk δ_k = (Δ_{l+1} W_{l+1}ᵀ)_j
        detail["outgoing_weights"] = json_floats(net.weights[layer][j, :])    # W_{l+1}[j, :], the W_jk of the sum
        detail["formula"] = (f"δ_j = (Σ_k W_jk δ_k) · {F_PRIME_OF_UNIT[net.activation]} = "
                             f"{_g(s)} × {_g(fp)} = {_g(delta)}")
    else:
        target = float(y[row, j])
        detail["y"] = json_float(target)
        if net.loss == "ce":
            detail["formula"] = f"δ_j = (a_j − y_j) / B = ({_g(a)} − {_g(target)}) / {batch} = {_g(delta)}"
        else:
            fp = float(run["f_primes"][i][row, j])
            detail["formula"] = (f"δ_j = (a_j − y_j) · a_j (1 − a_j) / B = {_g(a - target)} × {_g(fp)} / {batch} "
                                 f"= {_g(delta)}")
    return detail


# ----------------------------------------------------------------- summaries
def summary(array: np.ndarray, by: str = "value", values: bool = True, k: int = TOP) -> dict:
    """An array as JSON: shape, min/mean/max, norm, the ``k`` largest entries (by value, or by
    magnitude for signed quantities such as Δ and gradients) with their indices, and its values."""
    array = np.asarray(array, np.float64)
    flat = array.reshape(-1)
    key = np.abs(flat) if by == "magnitude" else flat
    key = np.where(np.isnan(key), -np.inf, key)
    k = min(k, flat.size)
    largest = np.argpartition(-key, k - 1)[:k] if flat.size > k else np.arange(flat.size)
    largest = largest[np.argsort(-key[largest], kind="stable")]
    with np.errstate(all="ignore"):
        document = {
            "shape": list(array.shape),
            "min": json_float(flat.min()), "mean": json_float(flat.mean()), "max": json_float(flat.max()),
            "norm": json_float(np.linalg.norm(flat)),
            "top_by": by,
            "top": [{"index": [int(n) for n in np.unravel_index(i, array.shape)], "value": json_float(flat[i])}
                    for i in largest],
        }
    if values:
        document["values"] = _values(array)
    return document


def json_float(value) -> float | None:
    """A JSON number; None for NaN and ±inf (which JSON cannot carry)."""
    value = float(value)
    return value if math.isfinite(value) else None


def json_floats(array) -> list:
    """An array's values as a JSON list (nested as the array), None for NaN and ±inf."""
    return _values(np.asarray(array, np.float64))


def _values(array: np.ndarray) -> list:
    if np.isfinite(array).all():
        return array.tolist()
    kept = array.astype(object)
    kept[~np.isfinite(array)] = None
    return kept.tolist()


def _g(value: float) -> str:
    """A number as the formulas print it: 4 significant digits."""
    return f"{value + 0.0:.4g}"


def model_lr(meta: dict | None) -> tuple[float, str]:
    """The default η: the initial learning rate in the model's settings, else sgd's default."""
    lr = ((meta or {}).get("settings") or {}).get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and 0 < lr <= MAX_LR:
        return float(lr), "the initial learning rate in the model's settings"
    return DEFAULT_LR["sgd"], "sgd's default; the model file records none"
