"""The lesson's batch: the same pass on B = 4 digits at once, where the 1/B, the sums over rows and the
transposes show; and the digit a lesson starts from when the learner names none.

A confidently right digit gives δ's of about 1e-3 and hides the sums over rows (a batch of one has one row
to sum), so :func:`batch_step` takes the lesson's digit with three others and writes out what B changes:
every Z_l, A_l and Δ_l has B rows, b_l is added to each row, Δ_L = (A_L − Y)/B, ∂C/∂b_l = Σ_rows Δ_l and
each entry of ∂C/∂W_l = A_{l−1}ᵀ Δ_l is a sum of B products. The numbers are the readable core's
(:func:`bptrain.app.explain.backprop` on a float64 copy), as in the rest of the lesson.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.committee import output_probabilities
from ..core.network import MLP, one_hot
from .explain import backprop, json_float, json_floats

#: Digits in the lesson's batch: enough rows to see a sum, few enough to print every one.
B = 4


def teaching_digit(probabilities: np.ndarray, labels: np.ndarray) -> tuple[int, str]:
    """(index, why) of the digit a lesson starts from when none is named: the first the network reads
    wrong, else the one whose true class gets the smallest probability (a confidently right digit
    teaches little: its δ's are tiny)."""
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    if len(wrong):
        return int(wrong[0]), "the first digit of the split the network reads wrong"
    p_true = probabilities[np.arange(len(labels)), labels]
    return int(np.argmin(p_true)), "the digit whose true class the network gives the least probability"


def split_companions(x_split: np.ndarray, y_split: np.ndarray, index: int, split: str):
    """The three digits after ``index`` in its split (wrapping round), with their true labels: the
    batch's other rows for a data-set digit."""
    rows = [(index + k) % len(x_split) for k in range(1, B)]
    return (np.asarray(x_split[rows], np.float64), np.asarray(y_split[rows], np.int64),
            [f"{split} digit {r}" for r in rows])


def shifted_companions(x: np.ndarray, label: int):
    """Three copies of ``x`` moved by one pixel (right, down, left), with the same target: the batch's
    other rows when the digit is drawn or uploaded and no data set is at hand. A non-square input is
    repeated as it is."""
    x = np.asarray(x, np.float64).reshape(-1)
    side = math.isqrt(x.size)
    if side * side != x.size:
        return np.repeat(x[None], B - 1, axis=0), np.full(B - 1, label, np.int64), ["the same digit again"] * (B - 1)
    picture = x.reshape(side, side)
    moves = ((1, 1, "moved right"), (1, 0, "moved down"), (-1, 1, "moved left"))
    shifted = []
    for shift, axis, _ in moves:
        moved = np.roll(picture, shift, axis=axis)
        edge = (slice(None), 0 if shift > 0 else -1) if axis == 1 else (0 if shift > 0 else -1, slice(None))
        moved[edge] = 0.0                     # what rolls off one side does not come back on the other
        shifted.append(moved.reshape(-1))
    return (np.array(shifted), np.full(B - 1, label, np.int64),
            [f"your digit {what} by a pixel" for _, _, what in moves])


def batch_step(net: MLP, x: np.ndarray, label: int, companions) -> dict:
    """The numbers of the batch step: the lesson's digit as row 0 and ``companions`` = (x, labels,
    descriptions) as rows 1..B−1, through the core's forward and backward pass."""
    others, other_labels, described = companions
    xb = np.vstack([np.asarray(x, np.float64).reshape(1, -1), np.asarray(others, np.float64)])
    labels = np.concatenate([[int(label)], np.asarray(other_labels, np.int64)])
    batch = len(xb)
    y = one_hot(labels, net.sizes[-1], np.float64)
    run = backprop(net, xb, y)
    L = net.n_layers
    grads = run["grads"]
    a_out = run["activations"][-1]
    probs = output_probabilities(net, a_out)
    rows = []
    for r in range(batch):
        p = float(probs[r, labels[r]])
        rows.append({"row": r, "digit": "the lesson's digit" if r == 0 else described[r - 1],
                     "label": int(labels[r]), "prediction": int(probs[r].argmax()), "p_label": json_float(p),
                     "cost": json_float(-math.log(p)) if net.loss == "ce" and p > 0 else None})
    layers = []
    for l in range(1, L + 1):
        i = l - 1
        gw = grads.weights[i]
        wi, wj = (int(v) for v in np.unravel_index(int(np.abs(gw).argmax()), gw.shape))
        a_prev, delta = run["activations"][i], grads.deltas[i]
        terms = [{"row": r, "a": json_float(a_prev[r, wi]), "delta": json_float(delta[r, wj]),
                  "product": json_float(a_prev[r, wi] * delta[r, wj])} for r in range(batch)]
        bj = int(np.abs(grads.biases[i]).argmax())
        layers.append({
            "l": l, "shape_A_prev": [batch, net.sizes[i]], "shape_delta": [batch, net.sizes[l]],
            "shape_W": [net.sizes[i], net.sizes[l]],
            "weight": {"i": wi, "j": wj, "terms": terms, "sum": json_float(gw[wi, wj])},
            "bias": {"j": bj, "deltas": json_floats(delta[:, bj]), "sum": json_float(grads.biases[i][bj])},
        })
    return {
        "batch_size": batch,
        "rows": rows,
        "cost": json_float(run["loss"]),
        "error": json_floats(a_out - y),                         # A_L − Y, before the 1/B
        "delta_out": json_floats(grads.deltas[-1]),              # Δ_L, every row
        "grad_b_out": json_floats(grads.biases[-1]),             # Σ_rows Δ_L
        "layers": layers,
    }
