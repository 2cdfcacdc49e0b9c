"""`bptrain explain`: one digit (or one mini-batch) through the forward and backward pass, with the numbers.

The numbers are the trainer's own: the readable core's :meth:`~bptrain.core.network.MLP.forward` and
:meth:`~bptrain.core.network.MLP.backward` (what ``train --engine reference`` runs every step), on a
float64 copy of the model. This module only arranges them in the notation of the README's math section::

    Z_l = A_{l-1} W_l + b_l,   A_l = f(Z_l)                      forward, l = 1..L
    Δ_L = (A_L − Y) / B                                          cross-entropy (softmax output)
    Δ_L = (A_L − Y) ⊙ A_L ⊙ (1 − A_L) / B                        quadratic cost (sigmoid output)
    Δ_{l-1} = (Δ_l W_lᵀ) ⊙ f'(Z_{l-1})                           backward, l = L..2
    ∂C/∂W_l = A_{l-1}ᵀ Δ_l,   ∂C/∂b_l = Σ_rows Δ_l

Three parts, used by the command and by ``POST /api/explain`` alike, so the terminal and the page
can never disagree:

    explain(...)          the computation -> one JSON-able dict (what ``--json`` prints)
    format_explanation    that dict -> the lines the terminal shows
    explain_command       the click command (registered on the group in cli.py)
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import click
import numpy as np

from ..core.committee import output_probabilities
from ..core.errors import BptrainError, DataError
from ..core.network import HIDDEN_UNITS, MLP, one_hot
from ..core.optimizers import DEFAULT_LR
from ..data.loader import SPLIT_NAMES
from .options import table_option

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
            "p_label": _floats(probs[rows, labels]),
        },
        "loss": _float(run["loss"]),
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
        "loss_before": _float(run["loss"]),
        "loss_after": _float(after.loss_value(zs[-1], activations[-1], y)),
        "p_label_before": _floats(before[rows, labels]),
        "p_label_after": _floats(now[rows, labels]),
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
        "bias": _float(net.biases[i][j]), "z": _float(z), "a": _float(a), "delta": _float(delta),
        "f_prime": None if run["f_primes"][i] is None else _float(run["f_primes"][i][row, j]),
        "incoming_weights": _floats(net.weights[i][:, j]),                 # W_l[:, j]
        "incoming_weights_gradient": _floats(run["grads"].weights[i][:, j]),   # ∂C/∂W_l[:, j], the whole batch
        "bias_gradient": _float(run["grads"].biases[i][j]),
    }
    if layer < L:
        s, fp = float(run["backprop_sums"][i][row, j]), float(run["f_primes"][i][row, j])
        detail["backprop_sum"] = _float(s)                                 # Σ_k W_jk δ_k = (Δ_{l+1} W_{l+1}ᵀ)_j
        detail["outgoing_weights"] = _floats(net.weights[layer][j, :])    # W_{l+1}[j, :], the W_jk of the sum
        detail["formula"] = (f"δ_j = (Σ_k W_jk δ_k) · {F_PRIME_OF_UNIT[net.activation]} = "
                             f"{_g(s)} × {_g(fp)} = {_g(delta)}")
    else:
        target = float(y[row, j])
        detail["y"] = _float(target)
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
            "min": _float(flat.min()), "mean": _float(flat.mean()), "max": _float(flat.max()),
            "norm": _float(np.linalg.norm(flat)),
            "top_by": by,
            "top": [{"index": [int(n) for n in np.unravel_index(i, array.shape)], "value": _float(flat[i])}
                    for i in largest],
        }
    if values:
        document["values"] = _values(array)
    return document


def _float(value) -> float | None:
    """A JSON number; None for NaN and ±inf (which JSON cannot carry)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _floats(array) -> list:
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


# ================================================================== requests (the page's endpoint)
#: The fields of a POST /api/explain request besides its input.
REQUEST_FIELDS = ("label", "steps", "lr", "unit")


def request_options(fields: dict, model: MLP) -> dict:
    """Validated {"label", "steps", "lr", "unit"} from a request's fields (JSON values, or query
    strings for an uploaded image). Raises BptrainError with one line naming the field."""
    unknown = sorted(set(fields) - set(REQUEST_FIELDS))
    if unknown:
        raise BptrainError(f'unknown field "{unknown[0]}"; /api/explain takes an input and '
                           + ", ".join(f'"{name}"' for name in REQUEST_FIELDS))
    classes, L = model.sizes[-1], model.n_layers
    label = fields.get("label")
    if label is not None and not _is_int(label, 0, classes - 1):
        raise BptrainError(f'"label" must be a class, an integer from 0 to {classes - 1}, or null')
    steps = fields.get("steps", 0)
    if steps is None:
        steps = 0
    if not _is_int(steps, 0, MAX_STEPS):
        raise BptrainError(f'"steps" must be an integer from 0 to {MAX_STEPS}')
    lr = fields.get("lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr)
                           or not 0 < lr <= MAX_LR):
        raise BptrainError(f'"lr" must be a number above 0 and at most {MAX_LR:g}, or null')
    unit = fields.get("unit")
    if unit is not None:
        if not (isinstance(unit, list) and len(unit) == 2 and _is_int(unit[0], 1, L)
                and _is_int(unit[1], 0, model.sizes[unit[0]] - 1)):
            raise BptrainError(f'"unit" must be [layer, j] with layer 1..{L} and j a unit of that layer, or null')
        unit = (unit[0], unit[1])
    return {"label": label, "steps": steps, "lr": None if lr is None else float(lr), "unit": unit}


def query_fields(path: str) -> dict:
    """The request fields of an image upload, from its query string: ?label=K&steps=S&lr=η&unit=L,J
    (typed as JSON would type them, so :func:`request_options` checks both alike)."""
    fields = {}
    for name, text in parse_qsl(urlsplit(path).query, keep_blank_values=True):
        if name == "unit":
            value = [_number(part) for part in text.split(",")]
        elif text in ("", "null"):
            value = None
        else:
            value = _number(text)
        fields[name] = value
    return fields


def input_from_values(values, width: int) -> np.ndarray:
    """A model input sent as numbers (e.g. the preprocessed picture an earlier answer returned)."""
    if not isinstance(values, list) or len(values) != width:
        raise BptrainError(f'"input" must be a list of {width} numbers (the model\'s input)')
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise BptrainError('"input" must hold numbers only')
    x = np.array(values, np.float64)
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise BptrainError('"input" must hold finite numbers from 0 to 1')
    return x


def model_lr(meta: dict | None) -> tuple[float, str]:
    """The default η: the initial learning rate in the model's settings, else sgd's default."""
    lr = ((meta or {}).get("settings") or {}).get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and 0 < lr <= MAX_LR:
        return float(lr), "the initial learning rate in the model's settings"
    return DEFAULT_LR["sgd"], "sgd's default; the model file records none"


def _is_int(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(text: str):
    """A query-string value as JSON would type it: an int, a float, or the text itself (then refused)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# ================================================================== the terminal
def format_explanation(doc: dict) -> str:
    """The lines `bptrain explain` prints: the forward pass, output and loss, the backward pass,
    and one gradient step, each matrix with its shape for this input and a summary of its values."""
    lines: list[str] = []
    say = lines.append
    model, B = doc["model"], doc["batch_size"]
    sizes = "-".join(map(str, model["sizes"]))
    labels = doc["labels"]
    rule = {"true": ("the true label", "the true labels"), "given": ("given with --label",) * 2,
            "prediction": ("the network's answer", "the network's answers")}[doc["label_rule"]][B > 1]
    say(f"{_describe_source(doc['input'], B)} through {sizes} ({model['activation']} hidden, {model['output']} "
        f"output, {'cross-entropy' if model['loss'] == 'ce' else 'quadratic cost'}), in float64")
    target = f"one-hot({labels[0]})" if B == 1 else f"one-hot of {_list_some(labels)}"
    say(f"B = {B} digit{'s' if B > 1 else ''} (rows); target Y = {target}, {rule}"
        + (f"; after {doc['steps_taken']} gradient step(s) of η = {doc['step']['lr']:g} on it"
           if doc["steps_taken"] else ""))
    say("")
    say("forward pass   Z_l = A_{l-1} W_l + b_l,   A_l = f(Z_l)")
    _matrix_lines(say, "A_0 = X", doc["A_0"], B)
    for layer in doc["layers"]:
        l, formulas = layer["l"], layer["formulas"]
        say(f" layer {l}: {layer['units']} {layer['f']} units ({layer['kind']})")
        _matrix_lines(say, f"W_{l}", layer["W"], B, top=False, per_digit=False)
        _matrix_lines(say, f"b_{l}", layer["b"], B, top=False)
        _matrix_lines(say, formulas["Z"], layer["Z"], B)
        _matrix_lines(say, formulas["A"], layer["A"], B)
    say("")
    _output_lines(say, doc)
    say("")
    say("backward pass  Δ_{l-1} = (Δ_l W_lᵀ) ⊙ f'(Z_{l-1}),   ∂C/∂W_l = A_{l-1}ᵀ Δ_l,   ∂C/∂b_l = Σ_rows Δ_l")
    for layer in reversed(doc["layers"]):
        formulas = layer["formulas"]
        say(f" layer {layer['l']} ({layer['kind']})")
        if layer["backprop_sum"] is not None:
            _matrix_lines(say, formulas["backprop_sum"], layer["backprop_sum"], B)
        if layer["f_prime"] is not None:
            _matrix_lines(say, formulas["f_prime"], layer["f_prime"], B)
        _matrix_lines(say, formulas["delta"], layer["delta"], B)
        _matrix_lines(say, formulas["grad_W"], layer["grad_W"], B, per_digit=False)
        _matrix_lines(say, formulas["grad_b"], layer["grad_b"], B)
    say("")
    _step_lines(say, doc)
    if "unit" in doc:
        say("")
        _unit_lines(say, doc["unit"], B)
    return "\n".join(lines)


def _describe_source(source: dict, batch: int) -> str:
    kind = source.get("kind")
    if kind == "dataset":
        first = source["index"]
        where = f"{source['split']}[{first}]" if batch == 1 else f"{source['split']}[{first}:{first + batch}]"
        return f"{where} of {source['data']}" if source.get("data") else where
    if kind == "image":
        return source.get("file") or "the uploaded image"
    return {"drawing": "the drawing", "input": "the input"}.get(kind, "the input")


NAME_WIDTH = 38


def _matrix_lines(say, name: str, matrix: dict, batch: int, top: bool = True, per_digit: bool = True) -> None:
    """Two lines per matrix: formula, shape, min/mean/max, norm; then its largest entries (``per_digit``:
    a matrix with one row per digit, whose entries are named by unit)."""
    shape = "(" + ", ".join(map(str, matrix["shape"])) + ("," if len(matrix["shape"]) == 1 else "") + ")"
    say(f"  {name:<{NAME_WIDTH}} {shape:<11} min {_n(matrix['min'])}  mean {_n(matrix['mean'])}  "
        f"max {_n(matrix['max'])}  ‖·‖ {_n(matrix['norm'])}")
    if top:
        what = "largest |·|" if matrix["top_by"] == "magnitude" else "largest"
        entries = "  ".join(f"{_index(entry['index'], batch, per_digit)} {_n(entry['value'])}"
                            for entry in matrix["top"])
        say(f"      {what}: {entries}")


def _index(index: list, batch: int, per_digit: bool) -> str:
    """j=17 for unit 17 of a vector or of the only digit; [r,j] (digit, unit) or [i,j] (W's row, column)
    otherwise."""
    if len(index) == 1 or (per_digit and batch == 1):
        return f"j={index[-1]}"
    return "[" + ",".join(map(str, index)) + "]"


def _output_lines(say, doc: dict) -> None:
    output, layer = doc["output"], doc["layers"][-1]
    L, B = layer["l"], doc["batch_size"]
    labels, predictions = doc["labels"], output["predictions"]
    rows = [(f"A_{L}", layer["A"])]
    if doc["model"]["loss"] == "mse":
        rows.append(("p (A_L / Σ A_L)".replace("A_L", f"A_{L}"), output["probabilities"]))
    rows += [("Y", None), (f"A_{L} − Y", output["error"]), (f"Δ_{L}", layer["delta"])]
    classes = layer["units"]
    if "values" in layer["A"] and classes <= 20:
        first = " (first digit of the batch)" if B > 1 else ""
        say(f"output and loss{first}")
        say(f"  {'class':<16}" + "".join(f"{c:>9}" for c in range(classes)))
        for name, matrix in rows:
            if matrix is None:  # Y: the label's one-hot row
                say(f"  {name:<16}" + "".join(f"{int(c == labels[0]):>9}" for c in range(classes)))
            else:
                say(f"  {name:<16}" + "".join(f"{_n(v, 3):>9}" for v in matrix["values"][0]))
    else:
        say("output and loss")
        _matrix_lines(say, f"A_{L}", layer["A"], B)
        _matrix_lines(say, f"A_{L} − Y", output["error"], B)
    p = output["p_label"]
    if B == 1:
        say(f"  label {labels[0]}: p = {_pct(p[0])};  prediction {predictions[0]}")
    else:
        right = sum(int(a == b) for a, b in zip(predictions, labels))
        say(f"  predictions {_list_some(predictions)}: {right} of {B} equal the label; mean p(label) = "
            f"{_pct(_mean(p))}")
    if doc["model"]["loss"] == "ce" and B == 1:
        say(f"  loss  C = −log A_{L}[0, {labels[0]}] = −log {_n(p[0])} = {_n(doc['loss'])}")
    else:
        say(f"  loss  {doc['loss_formula']} = {_n(doc['loss'])}")


def _step_lines(say, doc: dict) -> None:
    step, B = doc["step"], doc["batch_size"]
    say(f"one plain gradient step of η = {step['lr']:g} ({step['lr_source']})")
    say(f"  {step['rule']}")
    say(f"  loss C       {_n(step['loss_before'])} → {_n(step['loss_after'])}")
    before, after = step["p_label_before"], step["p_label_after"]
    if B == 1:
        say(f"  p(label {doc['labels'][0]})   {_pct(before[0])} → {_pct(after[0])}   "
            f"prediction {doc['output']['predictions'][0]} → {step['predictions_after'][0]}")
    else:
        rose = sum(1 for a, b in zip(before, after) if a is not None and b is not None and b > a)
        say(f"  mean p(label) {_pct(_mean(before))} → {_pct(_mean(after))}; it rose for {rose} of {B} digits")


def _unit_lines(say, unit: dict, batch: int) -> None:
    where = "" if batch == 1 else f" (digit {unit['row']} of the batch)"
    say(f"unit {unit['j']} of layer {unit['layer']} ({unit['kind']}){where}")
    say(f"  bias {_n(unit['bias'])}   z {_n(unit['z'])}   a {_n(unit['a'])}   δ {_n(unit['delta'])}"
        + (f"   f' {_n(unit['f_prime'])}" if unit["f_prime"] is not None else ""))
    say(f"  {unit['formula']}")
    weights = np.array([np.nan if w is None else w for w in unit["incoming_weights"]])
    say(f"  incoming weights W_{unit['layer']}[:, {unit['j']}]: {len(weights)} values, min {_n(np.nanmin(weights))}, "
        f"max {_n(np.nanmax(weights))}, ‖·‖ {_n(float(np.linalg.norm(np.nan_to_num(weights))))}")


def _n(value, digits: int = 4) -> str:
    """A number in a summary: 4 significant digits; nan/inf (None in the JSON) as 'nan'."""
    return "nan" if value is None else f"{value + 0.0:.{digits}g}"  # + 0.0: no "-0" for relu's zeros


def _pct(value) -> str:
    return "nan" if value is None else f"{100 * value:.2f}%"


def _mean(values: list):
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _list_some(values: list, shown: int = 10) -> str:
    return " ".join(map(str, values[:shown])) + (" …" if len(values) > shown else "")


# ================================================================== the command
class UnitType(click.ParamType):
    """LAYER,J: unit J (0-based) of layer LAYER (1..L)."""

    name = "LAYER,J"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            layer, j = (int(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not LAYER,J (two integers, e.g. 1,17)", param, ctx)
        return layer, j


@click.command("explain")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("image", metavar="[IMAGE]", required=False, type=click.Path(path_type=Path))
@click.option("--index", type=click.IntRange(min=0), default=None, metavar="N",
              help="Explain digit N of --split (instead of an IMAGE file).")
@click.option("--split", type=click.Choice(SPLIT_NAMES), default="test", show_default=True,
              help="The split --index counts in.")
@click.option("--label", type=click.IntRange(min=0), default=None, metavar="K",
              help="Target class [default: the true label of a digit of the data set; the network's answer "
                   "for an IMAGE].")
@table_option("lr", help="η of the gradient step shown [default: the initial learning rate in the model's "
                         "settings, else 0.1].")
@table_option("batch_size", default=1, type=click.IntRange(1, MAX_BATCH),
              help=f"Explain B digits from --index N on as one mini-batch (at most {MAX_BATCH:,}).")
@click.option("--steps", type=click.IntRange(0, MAX_STEPS), default=0, show_default=True,
              help="Take this many plain gradient steps on this input and label first (on a copy; the "
                   "file is never changed).")
@click.option("--unit", type=UnitType(), default=None,
              help="Also show unit J of layer LAYER for the first digit: bias, z, a, δ, the formula of δ "
                   "with the numbers, and its incoming weights.")
@click.option("--json", "as_json", is_flag=True,
              help=f"Print one JSON object: every array in full up to {FULL_UP_TO} digits, summaries beyond.")
@click.option("--full", is_flag=True, help="With --json: every array in full, whatever the batch size.")
@table_option("data")
@table_option("no_download")
def explain_command(model_path, image, index, split, label, lr, batch_size, steps, unit, as_json, full, data,
                    no_download):
    """Show one digit's forward and backward pass in the notation of the README's math section.

    Give an IMAGE file (a photo or drawing, preprocessed as `bptrain predict` does) or --index N (a digit
    of the data set). Prints each matrix with its shape and a summary of its values, the output
    probabilities, the loss, Δ_l, ∂C/∂W_l and ∂C/∂b_l of every layer, and what one plain gradient step of
    size η does to the loss and the label's probability. The numbers come from the readable core's forward
    and backward pass (as `train --engine reference` runs them), on a float64 copy of the model.
    """
    from ..data.model_io import load_model

    if full and not as_json:
        raise click.UsageError("--full applies to --json")
    if (image is None) == (index is None):
        raise click.UsageError("give an IMAGE file or --index N (one of them)")
    if image is not None and batch_size != 1:
        raise click.UsageError("--batch-size needs --index N (an IMAGE is one digit)")
    model, meta = load_model(model_path)
    if label is not None and label >= model.sizes[-1]:
        raise click.UsageError(f"--label {label} is not a class of this model (0..{model.sizes[-1] - 1})")
    if unit is not None:
        try:
            check_unit(model, unit)
        except BptrainError as exc:
            raise click.UsageError(f"--unit {exc}") from None
    try:
        check_batch(model, batch_size)
    except BptrainError as exc:
        raise click.UsageError(f"--batch-size: {exc}") from None
    if image is not None:
        x, true_labels, source = _image_input(model, image), None, {"kind": "image", "file": str(image)}
    else:
        x, true_labels, source = _dataset_input(model, data, no_download, split, index, batch_size)
    labels, rule = choose_labels(model, x, true_labels, label)
    if lr is None:
        lr, lr_source = model_lr(meta)
    else:
        lr, lr_source = lr, "given with --lr"
    arrays = "all" if full or len(x) <= FULL_UP_TO else "summaries"
    doc = explain(model, x, labels, lr=lr, lr_source=lr_source, label_rule=rule, true_labels=true_labels,
                  source=source, steps=steps, arrays=arrays, unit=unit)
    click.echo(json.dumps(doc, allow_nan=False) if as_json else format_explanation(doc))


def _image_input(model: MLP, path: Path) -> np.ndarray:
    from .images import image_to_input, require_pillow

    side = math.isqrt(model.sizes[0])
    if side * side != model.sizes[0]:
        raise DataError(f"the model takes {model.sizes[0]} inputs, not a square image; explain a digit of its "
                        f"data set with --index N instead")
    require_pillow()
    return image_to_input(path, str(path), side).reshape(1, -1)


def _dataset_input(model: MLP, data, no_download: bool, split: str, index: int, batch_size: int):
    from .cli import check_model_fits_data, obtain_dataset

    dataset = obtain_dataset(data, no_download, progress=sys.stderr.isatty())
    check_model_fits_data(model, dataset, "the model")
    x, y = dataset.split(split)
    if index >= len(x):
        raise click.UsageError(f"--index {index} is out of range: the {split} split has {len(x):,} digits "
                               f"(0..{len(x) - 1})")
    if index + batch_size > len(x):
        raise click.UsageError(f"--index {index} --batch-size {batch_size} runs past the end of the {split} split "
                               f"({len(x):,} digits): at most {len(x) - index} from {index}")
    source = {"kind": "dataset", "split": split, "index": index, "data": dataset.source}
    return x[index:index + batch_size], y[index:index + batch_size], source
