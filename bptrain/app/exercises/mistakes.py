"""The mistakes the checker can name: each with a stable id, words for the learner, the formula line to
look at, and the wrong variant of the exercises it changes.

A variant is the readable core's computation with one line changed (:func:`compute` with a set of
mistake ids, alone or two together); the checker compares the learner's output with each and names the
closest. Some mistakes show as behaviour rather than values: an input changed in place (the checker's
inputs are read-only), a float64 result from float32 inputs, an overflow warning; the checker tells
those by what happened (:data:`BEHAVIOUR`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.network import HIDDEN_UNITS, sigmoid, softmax

_, SIGMA_PRIME = HIDDEN_UNITS["sigmoid"]


@dataclass(frozen=True)
class Mistake:
    """One mistake: ``id`` (stable: the JSON reports it), what it is in words, and the line to look at."""

    id: str
    words: str
    formula: str


CATALOGUE: tuple[Mistake, ...] = (
    Mistake("no-batch-average", "the 1/B is missing: every gradient comes out B times too large "
            "(C is the mean over the batch, so Δ_L carries 1/B)", "Δ_L = (A_L − Y) / B"),
    Mistake("bias-mean", "∂C/∂b is averaged over the rows: B times too small (Δ_l already holds the 1/B, "
            "so the rows are summed)", "∂C/∂b_l = Σ_rows Δ_l"),
    Mistake("wrong-sign", "every sign is flipped: Y − A in place of A − Y", "Δ_L = (A_L − Y) / B"),
    Mistake("sigma-prime-on-output", "σ' is applied to the output error: softmax with cross-entropy needs "
            "none there (that is the quadratic cost's Δ_L)", "Δ_L = (A_L − Y) / B"),
    Mistake("missing-sigma-prime", "σ' is forgotten: the error goes back through the weights but not "
            "through the units' slope", "Δ_{l−1} = (Δ_l W_lᵀ) ⊙ σ'(Z_{l−1})"),
    Mistake("sigma-prime-of-activation", "σ' is computed as σ(A)(1 − σ(A)): A already is σ(Z), so σ' is "
            "A(1 − A) (only a few % off: easy to miss)", "σ'(Z) = A ⊙ (1 − A)"),
    Mistake("z-for-a", "the weight gradient uses Z_{l−1} where it needs A_{l−1}, the layer's input "
            "(W_1 and the biases come out right, the other weights wrong)", "∂C/∂W_l = A_{l−1}ᵀ Δ_l"),
    Mistake("transposed-gradient", "the weight gradient is transposed: Δᵀ A in place of Aᵀ Δ (a gradient "
            "has the shape of its parameter, (n_{l−1}, n_l))", "∂C/∂W_l = A_{l−1}ᵀ Δ_l"),
    Mistake("missing-transpose", "W is not transposed on the way back: Δ W in place of Δ Wᵀ", "Δ_{l−1} = "
            "(Δ_l W_lᵀ) ⊙ σ'(Z_{l−1})"),
    Mistake("bias-axis", "∂C/∂b is summed over the wrong axis, or kept as a row or column: sum over the rows "
            "(axis 0), giving shape (n_l,)", "∂C/∂b_l = Σ_rows Δ_l"),
    Mistake("unstable-softmax", "e^z overflows for large logits (inf / inf = nan): subtract each row's "
            "maximum first", "A_L = softmax(Z_L), row by row"),
    Mistake("log-of-softmax", "the log of a softmax that rounds to 0 is −inf: compute C from Z_L as "
            "log Σ_j e^{z_j} − z_y", "C = (1/B) Σ_rows (log Σ_j e^{z_j} − z_y)"),
    Mistake("in-place", "an input array (or list) was changed: make new arrays instead of changing the ones "
            "you are given", "θ ← θ − η ∂C/∂θ (new arrays)"),
    Mistake("dtype-promotion", "float32 in, float64 out: something made of float64 (np.float64, np.ones "
            "without dtype, dtype=float) promoted the result", "keep the input's dtype"),
    Mistake("ascent", "the step goes uphill: θ + η g in place of θ − η g (θ + v with momentum)", "θ ← θ − η ∂C/∂θ"),
    Mistake("sigmoid-overflow", "e^{−Z} overflows for Z far below 0 and NumPy warns: use e^{−|Z|}",
            "σ(Z) = 1 / (1 + e^{−Z})"),
)

BY_ID = {mistake.id: mistake for mistake in CATALOGUE}

#: Forms of a mistake with more than one way to make it: (form, its id).
FORMS = {"bias-axis-rows": "bias-axis", "bias-axis-keepdims": "bias-axis"}
#: The forms the checker tries as variants of values (the behaviour mistakes are told apart otherwise).
VALUE_FORMS = ("no-batch-average", "bias-mean", "wrong-sign", "sigma-prime-on-output", "missing-sigma-prime",
               "sigma-prime-of-activation", "z-for-a", "transposed-gradient", "missing-transpose",
               "bias-axis-rows", "bias-axis-keepdims", "unstable-softmax", "log-of-softmax", "ascent")
#: Mistakes told by what happened rather than by values: an overflow warning in an exercise, by exercise.
BEHAVIOUR = {"sigmoid": "sigmoid-overflow", "softmax": "unstable-softmax", "cross_entropy": "log-of-softmax",
             "forward": "unstable-softmax"}


def mistake_id(form: str) -> str:
    """The catalogue id of a variant's form."""
    return FORMS.get(form, form)


class Raised(Exception):
    """A variant that raises (a wrong transpose on a network that is not square)."""


# ------------------------------------------------------------- the variants, the core's lines with one changed
def v_sigmoid_prime(A, forms):
    if "sigma-prime-of-activation" in forms:
        s = sigmoid(A)
        return s * (1 - s)                                           # σ(A)(1 − σ(A))
    return SIGMA_PRIME(A)


def v_softmax(Z, forms):
    if "unstable-softmax" in forms:
        with np.errstate(all="ignore"):
            e = np.exp(Z)                                            # no maximum subtracted
            return e / e.sum(axis=1, keepdims=True)
    return softmax(Z)


def v_cross_entropy(Z, Y, forms):
    with np.errstate(all="ignore"):
        if "log-of-softmax" in forms:
            rows = -np.log(np.sum(v_softmax(Z, forms) * Y, axis=1))  # log of a softmax that rounds to 0
        else:
            top = Z.max(axis=1, keepdims=True)
            rows = np.log(np.exp(Z - top).sum(axis=1)) + top[:, 0] - np.sum(Y * Z, axis=1)
    return float(rows.sum() if "no-batch-average" in forms else rows.mean())


def v_forward(X, Ws, bs, forms):
    zs, activations = [], [X]
    for l, (W, b) in enumerate(zip(Ws, bs), start=1):
        z = activations[-1] @ W + b
        zs.append(z)
        activations.append(v_softmax(z, forms) if l == len(Ws) else sigmoid(z))
    return zs, activations


def v_output_delta(A, Y, forms):
    delta = A - Y
    if "wrong-sign" in forms:
        delta = Y - A
    if "sigma-prime-on-output" in forms:
        delta = delta * A * (1 - A)
    return delta if "no-batch-average" in forms else delta / len(Y)


def v_layer_gradients(A_prev, delta, forms):
    dW = delta.T @ A_prev if "transposed-gradient" in forms else A_prev.T @ delta
    if "bias-axis-rows" in forms:
        db = delta.sum(axis=1)
    elif "bias-axis-keepdims" in forms:
        db = delta.sum(axis=0, keepdims=True)
    else:
        db = delta.sum(axis=0)
    return dW, (db / len(delta) if "bias-mean" in forms else db)


def v_delta_below(delta, W, A_below, forms):
    try:
        back = delta @ W if "missing-transpose" in forms else delta @ W.T
    except ValueError:
        raise Raised from None
    return back if "missing-sigma-prime" in forms else back * v_sigmoid_prime(A_below, forms)


def v_backward(Zs, As, Y, Ws, forms):
    L = len(Ws)
    dWs, dbs = [None] * L, [None] * L
    delta = v_output_delta(As[-1], Y, forms)
    for l in range(L - 1, -1, -1):
        a_prev = Zs[l - 1] if "z-for-a" in forms and l > 0 else As[l]
        dWs[l], dbs[l] = v_layer_gradients(a_prev, delta, forms)
        if l > 0:
            delta = v_delta_below(delta, Ws[l], As[l], forms)
    return dWs, dbs


def v_sgd_step(Ws, bs, dWs, dbs, lr, forms):
    sign = 1 if "ascent" in forms else -1
    return [W + sign * lr * g for W, g in zip(Ws, dWs)], [b + sign * lr * g for b, g in zip(bs, dbs)]


def v_momentum_step(Ws, bs, dWs, dbs, vWs, vbs, lr, mu, forms):
    sign = 1 if "ascent" in forms else -1
    new_vw = [mu * v + lr * g for v, g in zip(vWs, dWs)]
    new_vb = [mu * v + lr * g for v, g in zip(vbs, dbs)]
    return ([W + sign * v for W, v in zip(Ws, new_vw)], [b + sign * v for b, v in zip(bs, new_vb)], new_vw, new_vb)


VARIANTS = {"sigmoid_prime": v_sigmoid_prime, "softmax": v_softmax, "cross_entropy": v_cross_entropy,
            "forward": v_forward, "output_delta": v_output_delta, "layer_gradients": v_layer_gradients,
            "delta_below": v_delta_below, "backward": v_backward, "sgd_step": v_sgd_step,
            "momentum_step": v_momentum_step}


def compute(exercise: str, args: tuple, forms=frozenset()):
    """The output of ``exercise`` on ``args`` with the mistakes ``forms`` made (none: the right answer);
    raises :class:`Raised` where the variant itself fails, KeyError for an exercise without variants."""
    try:
        return VARIANTS[exercise](*args, frozenset(forms))
    except ValueError:  # a shape that does not fit: the variant fails as the learner's would
        raise Raised from None
