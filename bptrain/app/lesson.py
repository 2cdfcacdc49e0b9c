"""The lesson: backpropagation walked one step at a time on one digit, with the numbers.

One document, :func:`lesson`, serves the terminal (``bptrain explain --lesson``) and the page
(``POST /api/lesson``), so the two can never disagree. Its numbers are :func:`bptrain.app.explain.explain`'s
(the readable core's forward and backward pass on a float64 copy; the same document ``explain --json``
prints), and each step adds what a learner needs to follow it: the formula, the shapes multiplying out,
a paragraph that stands on its own, the function of ``bptrain/core/`` that computes it, the terms that
make up one unit's sum, and sometimes a question to answer before the result is shown.

The steps, for L layers: the input; each layer forward (l = 1..L); the output and the cost; each layer
backward (l = L..1); a gradient check on one weight, by hand; and where the digit itself should change,
with one update step on a copy. Nothing here changes the model it is given.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import BptrainError
from ..core.network import MLP, one_hot
from .explain import UNIT_NAMES, backprop, explain, float64_copy, json_float, json_floats

#: Terms written out when a unit's sum is shown (the largest by magnitude).
TERMS = 5
#: The nudge of the gradient check: small enough that the cost is nearly straight over ±ε, large enough
#: that C(w + ε) − C(w − ε) keeps many digits in float64.
EPSILON = 1e-4
#: The largest nudge a learner may ask for (beyond it the central difference measures curvature, not slope).
MAX_EPSILON = 0.1
#: The lesson shows every unit with its terms (Σ n_l of them): beyond this many, neither a page nor a
#: terminal can show them, and the terms alone would take much memory.
MAX_UNITS = 8192
#: Where each step's numbers come from (shown with the step's prose).
CORE = {
    "input": "bptrain.core.network.MLP.forward (A_0 = X)",
    "forward": "bptrain.core.network.MLP.forward",
    "cost": "bptrain.core.network.MLP.loss_value",
    "backward": "bptrain.core.network.MLP.backward",
    "check": "bptrain.core.network.MLP.loss_value, on copies of the model with one weight moved",
    "input-gradient": "bptrain.core.network.MLP.backward (its Δ_{l-1} line, once more), then one plain step",
}


def lesson(model: MLP, x, label: int, *, lr: float, lr_source: str = "given", label_rule: str = "given",
           true_label: int | None = None, source: dict | None = None, weight=None,
           epsilon: float = EPSILON) -> dict:
    """The whole lesson for one digit ``x`` and target class ``label``, as one JSON-able dict.

    ``weight`` = (layer, i, j) is the weight the check nudges (default: the one with the largest
    |∂C/∂w|); ``epsilon`` its nudge. ``lr`` is the η of the update step at the end.
    """
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and 0 < epsilon <= MAX_EPSILON):
        raise BptrainError(f"the nudge ε must be a number above 0 and at most {MAX_EPSILON:g}", field="epsilon")
    if sum(model.sizes) > MAX_UNITS:
        raise BptrainError(f"this network has {sum(model.sizes):,} units; the lesson shows every one, so it takes "
                           f"networks of at most {MAX_UNITS:,}")
    x = np.asarray(x, np.float64).reshape(1, -1)
    doc = explain(model, x, [label], lr=lr, lr_source=lr_source, label_rule=label_rule,
                  true_labels=None if true_label is None else [true_label], source=source, arrays="units")
    net = float64_copy(model)
    y = one_hot(np.array([label]), net.sizes[-1], np.float64)
    run = backprop(net, x, y)
    L = net.n_layers
    steps = [_input_step(net, doc)]
    steps += [_forward_step(net, run, doc, l) for l in range(1, L + 1)]
    steps.append(_cost_step(net, doc, label))
    steps += [_backward_step(net, run, doc, l) for l in range(L, 0, -1)]
    check = nudge_check(net, x, y, run, weight, float(epsilon))
    steps.append(_check_step(net, check))
    steps.append(_input_gradient_step(net, run, doc, label))
    for n, step in enumerate(steps, start=1):
        step["n"] = n
    return {"model": doc["model"], "input": doc["input"], "label": int(label), "label_rule": label_rule,
            "true_label": true_label, "explain": doc, "check": check, "steps": steps}


# ================================================================== the steps
def _step(kind: str, title: str, formula: str, shapes: str, prose: str, layer: int | None = None,
          question: dict | None = None, **numbers) -> dict:
    return {"id": kind if layer is None else f"{kind}-{layer}", "kind": kind, "layer": layer, "title": title,
            "formula": formula, "shapes": shapes, "prose": prose, "core": CORE[kind], "question": question,
            **numbers}


def _input_step(net: MLP, doc: dict) -> dict:
    n0 = net.sizes[0]
    side = math.isqrt(n0)
    picture = f"the {side} × {side} picture" if side * side == n0 else "the input"
    return _step(
        "input", "The input", "A_0 = X", f"(1 × {n0})",
        f"The network never sees a picture, only numbers: {picture}, read row by row into one row vector A_0 of "
        f"{n0} numbers, each from 0 (paper) to 1 (ink). A whole mini-batch would be B such rows stacked into a "
        f"B × {n0} matrix; here B = 1, one digit. Every later step is matrix arithmetic on this row.",
        side=side if side * side == n0 else None, ink_pixels=int(np.count_nonzero(np.asarray(doc["A_0"]["values"]))),
    )


def _forward_step(net: MLP, run: dict, doc: dict, l: int) -> dict:
    i, L = l - 1, net.n_layers
    n_in, n_out = net.sizes[l - 1], net.sizes[l]
    layer = doc["layers"][i]
    f = layer["f"]
    hidden = l < L
    f_name = UNIT_NAMES[net.activation] if hidden else ("softmax" if net.loss == "ce" else "σ")
    what = (f"each of its {n_out} units applies {f} to its sum" if hidden else
            ("softmax turns the ten sums into probabilities that add up to 1" if net.loss == "ce"
             else "each output unit squashes its sum into (0, 1) with the sigmoid"))
    a_prev = run["activations"][i][0]
    W, b, z, a = net.weights[i], net.biases[i], run["zs"][i][0], run["activations"][l][0]
    units = []
    for j in range(n_out):
        products = a_prev * W[:, j]
        units.append({"j": j, "terms": _terms(products, a_prev, W[:, j], "i", "a", "w"),
                      "sum": json_float(products.sum()), "b": json_float(b[j]), "z": json_float(z[j]), "a": json_float(a[j])})
    question = None
    if not hidden:  # asked before the output layer's numbers are shown
        prediction = int(np.argmax(doc["output"]["probabilities"]["values"][0]))
        question = {"ask": "Before you look: which class will the network answer?",
                    "choices": [str(c) for c in range(n_out)], "answer": prediction,
                    "why": f"The largest output is class {prediction} "
                           f"({100 * doc['output']['probabilities']['values'][0][prediction]:.2f}%)."}
    source, sources = ("pixel", "pixels") if l == 1 else (f"unit of layer {l - 1}", f"units of layer {l - 1}")
    return _step(
        "forward", f"Layer {l} forward" + ("" if hidden else " (the output layer)"),
        f"Z_{l} = A_{l - 1} W_{l} + b_{l},   A_{l} = {f_name}(Z_{l})",
        f"(1 × {n_in}) ({n_in} × {n_out}) + (1 × {n_out}) = (1 × {n_out})",
        f"One matrix product does the whole layer: unit j's sum z_j = Σ_i a_i w_ij + b_j takes every {source} "
        f"a_i, weighs it by the column j of W_{l}, and adds the bias; then {what}. A few terms a_i w_ij "
        f"outweigh the rest: they are written out for one unit (on the page, hover any unit to see its own and "
        f"the {sources} they come from). With a batch, A_{l - 1} has B rows and the same product computes every "
        f"digit's sums at once.",
        layer=l, question=question, units=units,
        z_top=layer["Z"]["top"], a_top=layer["A"]["top"],
    )


def _cost_step(net: MLP, doc: dict, label: int) -> dict:
    L = net.n_layers
    output = doc["output"]
    probabilities = output["probabilities"]["values"][0]
    prediction = output["predictions"][0]
    classes = net.sizes[-1]
    if net.loss == "ce":
        formula = f"C = −log A_{L}[{label}]  (cross-entropy: Y is one-hot({label}))"
        prose = (f"The output layer's softmax gives one probability per class. The target Y is the one-hot row of "
                 f"the class we want, {label}. Cross-entropy charges −log of the probability given to that class: "
                 f"near 0 when the network is sure and right, large when it gives the target little. Its answer "
                 f"is the class with the largest probability.")
    else:
        formula = f"C = ½ ‖A_{L} − Y‖²  (the quadratic cost: Y is one-hot({label}))"
        prose = (f"The output layer's sigmoids give one number in (0, 1) per class (divided by their sum, they "
                 f"read as probabilities). The target Y is the one-hot row of the class we want, {label}. The "
                 f"quadratic cost is half the squared distance between A_{L} and Y. Its answer is the class with the "
                 f"largest output.")
    return _step("cost", "The output and the cost", formula, f"A_{L}, Y: (1 × {classes});  C: a number", prose,
                 probabilities=probabilities, target=int(label), prediction=int(prediction),
                 cost=doc["loss"])


def _backward_step(net: MLP, run: dict, doc: dict, l: int) -> dict:
    i, L = l - 1, net.n_layers
    n_in, n_out = net.sizes[l - 1], net.sizes[l]
    layer = doc["layers"][i]
    grads = run["grads"]
    delta = grads.deltas[i][0]
    units = []
    if l == L:
        a, y = run["activations"][L][0], doc_target(doc, n_out)
        for j in range(n_out):
            unit = {"j": j, "a": json_float(a[j]), "y": json_float(y[j]), "delta": json_float(delta[j])}
            if net.loss == "mse":
                unit["f_prime"] = json_float(a[j] * (1 - a[j]))
            units.append(unit)
        if net.loss == "ce":
            formula = f"Δ_{L} = A_{L} − Y   (B = 1)"
            start = ("Backpropagation starts at the output. For softmax with cross-entropy the error of the sums is "
                     "simply the output minus the target: the distance each output unit must still move, with its "
                     "sign saying which way.")
        else:
            formula = f"Δ_{L} = (A_{L} − Y) ⊙ A_{L} ⊙ (1 − A_{L})   (B = 1)"
            start = ("Backpropagation starts at the output. For sigmoid outputs and the quadratic cost, each unit's "
                     "error is how far it is from its target (with its sign), times the sigmoid's slope there, a_j (1 − a_j): a "
                     "saturated unit (near 0 or 1) learns slowly even when it is wrong.")
        positive = [u["j"] for u in units if (u["delta"] or 0) > 0]
        answer = 1 if positive == [j for j in range(n_out) if j != doc["labels"][0]] else (
            0 if positive == [doc["labels"][0]] else 2)
        question = {"ask": f"Which outputs get a positive error δ_j (Δ_{L} > 0)?",
                    "choices": ["only the target", "every class but the target", "some other set"],
                    "answer": answer,
                    "why": (f"δ_j has the sign of a_j − y_j: y is 1 only for the target, and every a_j lies "
                            f"strictly between 0 and 1, so the target's error is negative and every other one "
                            f"positive." if answer == 1 else
                            "δ_j has the sign of a_j − y_j; here some outputs round to exactly 0 or 1.")}
    else:
        a_layer = run["activations"][l][0]
        W_next, delta_next = net.weights[l], grads.deltas[l][0]
        fp = run["f_primes"][i][0]
        for j in range(n_out):
            products = W_next[j, :] * delta_next
            units.append({"j": j, "terms": _terms(products, W_next[j, :], delta_next, "k", "w", "delta"),
                          "sum": json_float(products.sum()), "f_prime": json_float(fp[j]), "delta": json_float(delta[j]),
                          "a": json_float(a_layer[j])})
        formula = (f"Δ_{l} = (Δ_{l + 1} W_{l + 1}ᵀ) ⊙ f'(Z_{l}),   ∂C/∂W_{l} = A_{l - 1}ᵀ Δ_{l},   "
                   f"∂C/∂b_{l} = Δ_{l}")
        start = (f"The error flows back through the same weights that carried the signal forward: unit j's share "
                 f"of the blame is Σ_k w_jk δ_k, the errors of layer {l + 1} weighed by the weights that leave j, "
                 f"times the slope of its own {UNIT_NAMES[net.activation]} at its sum, f'(z_j). One unit's δ is "
                 f"written out below (on the page, hover any unit to see which downstream errors and weights "
                 f"make up its δ).")
        question = None
        if l == 1:
            norms = [float(np.linalg.norm(g)) for g in grads.weights]
            smallest = int(np.argmin(norms)) + 1
            question = {"ask": "Which layer's weight gradients ∂C/∂W_l are smallest (by their norm)?",
                        "choices": [f"layer {k}" for k in range(1, L + 1)], "answer": smallest - 1,
                        "why": "The norms are " + ", ".join(f"‖∂C/∂W_{k}‖ = {n:.3g}" for k, n in
                                                            enumerate(norms, start=1)) + "."}
    if l == L:
        formula += f",   ∂C/∂W_{L} = A_{L - 1}ᵀ Δ_{L},   ∂C/∂b_{L} = Δ_{L}"
    gradient = (f"Then the weights' gradient is an outer product: ∂C/∂w_ij = a_i δ_j, the input that came in "
                f"times the error that came out, so A_{l - 1}ᵀ Δ_{l} gives all {n_in * n_out:,} at once "
                f"(with a batch, the same product sums them over the digits); the bias's gradient is δ_j itself.")
    return _step(
        "backward", f"Layer {l} backward" + (" (the output layer)" if l == L else ""), formula,
        (f"(1 × {n_out})" if l == L else f"((1 × {net.sizes[l + 1]}) ({net.sizes[l + 1]} × {n_out})) ⊙ (1 × {n_out})"
         f" = (1 × {n_out})") + f";  ∂C/∂W_{l}: ({n_in} × 1)(1 × {n_out}) = ({n_in} × {n_out})",
        f"{start} {gradient}",
        layer=l, question=question, units=units, delta_top=layer["delta"]["top"], grad_W_top=layer["grad_W"]["top"],
        grad_W_norm=layer["grad_W"]["norm"], grad_b_top=layer["grad_b"]["top"],
    )


def doc_target(doc: dict, classes: int) -> np.ndarray:
    return one_hot(np.array(doc["labels"][:1]), classes, np.float64)[0]


def _check_step(net: MLP, check: dict) -> dict:
    l, i, j = check["weight"]
    return _step(
        "check", "Check it yourself", "∂C/∂w ≈ (C(w + ε) − C(w − ε)) / 2ε",
        f"w = W_{l}[{i}, {j}];  ε = {check['epsilon']:g}",
        f"Backpropagation claims ∂C/∂w for every weight at once. Check one by hand: move the weight W_{l}[{i}, {j}] "
        f"up by ε and compute the cost, move it down by ε and compute it again, and divide the difference by 2ε. "
        f"This central difference uses nothing but the forward pass and the cost; if it agrees with the number "
        f"backpropagation gave, the chain rule was applied correctly. The suggested weight is the one with the "
        f"largest gradient; pick any other.",
        check=check)


def _input_gradient_step(net: MLP, run: dict, doc: dict, label: int) -> dict:
    gradient = run["grads"].deltas[0] @ net.weights[0].T   # ∂C/∂A_0 = Δ_1 W_1ᵀ
    step = doc["step"]
    n0 = net.sizes[0]
    return _step(
        "input-gradient", "Where the digit should change, and one step",
        "∂C/∂A_0 = Δ_1 W_1ᵀ;   W_l ← W_l − η ∂C/∂W_l,  b_l ← b_l − η ∂C/∂b_l",
        f"(1 × {net.sizes[1]}) ({net.sizes[1]} × {n0}) = (1 × {n0})",
        f"Take the backward rule one layer further and it lands on the input: ∂C/∂A_0 = Δ_1 W_1ᵀ says how the cost "
        f"would change if each pixel had a little more ink. Pixels where it is negative would raise the probability "
        f"of {label} (more ink there lowers the cost); where positive, less ink would. Training never changes the "
        f"digit, though: it changes the weights. One plain step of η = {step['lr']:g} ({step['lr_source']}) on a "
        f"copy of the network moves every weight against its gradient; the cost and the target's probability "
        f"before and after show what one digit's step does.",
        input_gradient=json_floats(gradient[0]), input_gradient_top=_top(gradient[0]),
        update={"lr": step["lr"], "lr_source": step["lr_source"], "loss_before": step["loss_before"],
                "loss_after": step["loss_after"], "p_label_before": step["p_label_before"][0],
                "p_label_after": step["p_label_after"][0], "prediction_after": step["predictions_after"][0],
                "probabilities_after": step["probabilities_after"]["values"][0]},
    )


# ================================================================== the gradient check
def suggested_weight(net: MLP, grads) -> tuple[int, int, int]:
    """(layer, i, j) of the weight with the largest |∂C/∂w| over the whole network."""
    best = max(range(net.n_layers), key=lambda k: float(np.abs(grads.weights[k]).max()))
    i, j = np.unravel_index(int(np.abs(grads.weights[best]).argmax()), grads.weights[best].shape)
    return best + 1, int(i), int(j)


def check_weight(net: MLP, weight) -> tuple[int, int, int]:
    """A learner's (layer, i, j), checked: one line naming what is out of range."""
    try:
        layer, i, j = (int(v) for v in weight)
    except (TypeError, ValueError):
        raise BptrainError("the weight must be three integers: layer, i, j", field="weight") from None
    if not 1 <= layer <= net.n_layers:
        raise BptrainError(f"weight {layer},{i},{j}: the layers are 1..{net.n_layers}", field="weight")
    rows, columns = net.weights[layer - 1].shape
    if not (0 <= i < rows and 0 <= j < columns):
        raise BptrainError(f"weight {layer},{i},{j}: W_{layer} is {rows} × {columns} (i 0..{rows - 1}, "
                           f"j 0..{columns - 1})", field="weight")
    return layer, i, j


def nudge_check(net: MLP, x: np.ndarray, y: np.ndarray, run: dict, weight, epsilon: float) -> dict:
    """The central difference of the real cost on one weight against backpropagation's ∂C/∂w."""
    grads = run["grads"]
    suggested = suggested_weight(net, grads)
    layer, i, j = suggested if weight is None else check_weight(net, weight)
    costs = {}
    for sign in (+1, -1):
        moved = float64_copy(net)
        moved.weights[layer - 1][i, j] += sign * epsilon
        zs, activations = moved.forward(x)
        costs[sign] = moved.loss_value(zs[-1], activations[-1], y)
    measured = (costs[+1] - costs[-1]) / (2 * epsilon)
    predicted = float(grads.weights[layer - 1][i, j])
    scale = max(abs(measured), abs(predicted))
    return {"weight": [layer, i, j], "suggested": list(suggested), "w": json_float(net.weights[layer - 1][i, j]),
            "epsilon": epsilon, "cost_plus": json_float(costs[+1]), "cost_minus": json_float(costs[-1]),
            "measured": json_float(measured), "predicted": json_float(predicted),
            "relative_difference": json_float(abs(measured - predicted) / scale) if scale > 0 else 0.0}


# ================================================================== helpers
def _terms(products: np.ndarray, left: np.ndarray, right: np.ndarray, index: str, left_name: str,
           right_name: str) -> list[dict]:
    """The :data:`TERMS` largest products by magnitude, with their factors."""
    k = min(TERMS, products.size)
    order = np.argsort(-np.abs(products), kind="stable")[:k]
    return [{index: int(n), left_name: json_float(left[n]), right_name: json_float(right[n]),
             "product": json_float(products[n])} for n in order if products[n] != 0]


def _top(values: np.ndarray, k: int = TERMS) -> list[dict]:
    order = np.argsort(-np.abs(values), kind="stable")[:k]
    return [{"index": int(n), "value": json_float(values[n])} for n in order]
