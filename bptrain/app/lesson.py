"""The lesson: backpropagation walked one step at a time on one digit, with the numbers.

One document, :func:`lesson`, serves the terminal (``bptrain explain --lesson``) and the page
(``POST /api/lesson``), so the two can never disagree. Its numbers are :func:`bptrain.app.explain.explain`'s
(the readable core's forward and backward pass on a float64 copy; the same document ``explain --json``
prints), and each step adds what a learner needs to follow it: the formula, the shapes multiplying out,
a paragraph that stands on its own, the function of ``bptrain/core/`` that computes it, the terms that
make up one unit's sum, and sometimes a question to answer before the result is shown.

The steps, for L layers: the input; each layer forward (l = 1..L); the output and the cost; each layer
backward (l = L..1); how fast each layer learns (‖Δ_l‖ and its two factors); the same pass on a batch of
B = 4 digits (:mod:`.lesson_batch`); a gradient check on one weight of layer 1, by hand; where the digit
itself should change; and one update step on a copy. Nothing here changes the model it is given.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import BptrainError
from ..core.network import MLP, one_hot
from .explain import UNIT_NAMES, backprop, explain, float64_copy, json_float, json_floats
from .lesson_batch import batch_step, shifted_companions

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
    "speed": "bptrain.core.network.MLP.backward (the norms of its Δ_l, and of the A_{l-1} of MLP.forward)",
    "batch": "bptrain.core.network.MLP.forward and MLP.backward, on B rows at once",
    "input-gradient": "bptrain.core.network.MLP.backward (its Δ_{l-1} line, once more)",
    "update": "bptrain.app.explain.gradient_step (the plain step of bptrain.core.optimizers' SGD), on a copy",
}
#: cs231n's thresholds for the relative error of a gradient check (for a smooth cost: no relu kinks).
GOOD_BELOW, WRONG_ABOVE = 1e-7, 1e-2
RELATIVE_ERROR = "|measured − predicted| / max(1e-8, |measured| + |predicted|)  (cs231n's rel_error)"
#: Where the lesson sends a learner who asks why the first layers learn slowly.
LEARNING_SPEED_PAGE = "docs/learning-speed.md"


def lesson(model: MLP, x, label: int, *, lr: float, lr_source: str = "given", label_rule: str = "given",
           true_label: int | None = None, source: dict | None = None, weight=None,
           epsilon: float = EPSILON, companions=None) -> dict:
    """The whole lesson for one digit ``x`` and target class ``label``, as one JSON-able dict.

    ``weight`` = (layer, i, j) is the weight the check nudges (default: the one of layer 1 with the
    largest |∂C/∂w|); ``epsilon`` its nudge. ``lr`` is the η of the update step at the end.
    ``companions`` = (x, labels, descriptions) are the batch step's other B − 1 digits (default: the
    digit moved by a pixel, :func:`.lesson_batch.shifted_companions`).
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
    steps.append(_speed_step(net, run))
    if companions is None:
        companions = shifted_companions(x, label)
    steps.append(_batch_step(net, batch_step(net, x, label, companions)))
    check = nudge_check(net, x, y, run, weight, float(epsilon))
    steps.append(_check_step(net, check))
    steps.append(_input_gradient_step(net, run, label))
    steps.append(_update_step(net, doc, label))
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
    p_text = probability_text(probabilities[label], doc["loss"]) if net.loss == "ce" else f"{probabilities[label]:.6f}"
    if net.loss == "ce":
        prose += (f" Here p = {p_text} (written with the digits −log p needs to give C to its 4 digits: "
                  f"−log {p_text} = {_n(doc['loss'])}).")
    return _step("cost", "The output and the cost", formula, f"A_{L}, Y: (1 × {classes});  C: a number", prose,
                 probabilities=probabilities, target=int(label), prediction=int(prediction),
                 cost=doc["loss"], p_target_text=p_text)


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
            formula = f"Δ_{L} = (A_{L} − Y) / B   (B = 1 here)"
            start = ("Backpropagation starts at the output. For softmax with cross-entropy the error of the sums is "
                     "simply the output minus the target: the distance each output unit must still move, with its "
                     "sign saying which way.")
        else:
            formula = f"Δ_{L} = (A_{L} − Y) ⊙ A_{L} ⊙ (1 − A_{L}) / B   (B = 1 here)"
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
                   f"∂C/∂b_{l} = Σ_rows Δ_{l}")
        start = (f"The error flows back through the same weights that carried the signal forward: unit j's share "
                 f"of the blame is Σ_k w_jk δ_k, the errors of layer {l + 1} weighed by the weights that leave j, "
                 f"times the slope of its own {UNIT_NAMES[net.activation]} at its sum, f'(z_j). One unit's δ is "
                 f"written out below (on the page, hover any unit to see which downstream errors and weights "
                 f"make up its δ).")
        question = _delta_question(net, l, units) if l == L - 1 else None
    if l == L:
        formula += f",   ∂C/∂W_{L} = A_{L - 1}ᵀ Δ_{L},   ∂C/∂b_{L} = Σ_rows Δ_{L}"
    gradient = (f"Then the weights' gradient is an outer product: ∂C/∂w_ij = a_i δ_j, the input that came in "
                f"times the error that came out, so A_{l - 1}ᵀ Δ_{l} gives all {n_in * n_out:,} at once "
                f"(with a batch, the same product sums them over the digits: the batch step shows it); the "
                f"bias's gradient is Σ_rows Δ_{l}, with one row here δ_j itself.")
    return _step(
        "backward", f"Layer {l} backward" + (" (the output layer)" if l == L else ""), formula,
        (f"(1 × {n_out})" if l == L else f"((1 × {net.sizes[l + 1]}) ({net.sizes[l + 1]} × {n_out})) ⊙ (1 × {n_out})"
         f" = (1 × {n_out})") + f";  ∂C/∂W_{l}: ({n_in} × 1)(1 × {n_out}) = ({n_in} × {n_out})",
        f"{start} {gradient}",
        layer=l, question=question, units=units, delta_top=layer["delta"]["top"], grad_W_top=layer["grad_W"]["top"],
        grad_W_norm=layer["grad_W"]["norm"], grad_b_top=layer["grad_b"]["top"],
    )


def _delta_question(net: MLP, l: int, units: list[dict]) -> dict:
    """Work out δ_j of the unit with the largest |δ| from the two numbers it is made of; the wrong choices
    are the usual slips (f' forgotten, a_j in place of f'(z_j), σ applied to a again, the sign flipped)."""
    unit = max(units, key=lambda u: abs(u["delta"] or 0))
    j, s, fp, a = unit["j"], unit["sum"], unit["f_prime"], unit["a"]
    name = net.activation
    given = {"sigmoid": f"a_{j} = {_n(a)}, so f'(z_{j}) = a_{j} (1 − a_{j})",
             "tanh": f"a_{j} = {_n(a)}, so f'(z_{j}) = 1 − a_{j}²",
             "relu": f"a_{j} = {_n(a)}, so f'(z_{j}) = 1 if a_{j} > 0 else 0"}[name]
    right = _n(s * fp)
    slips = [_n(s), _n(s * a), _n(-s * fp)]
    if name == "sigmoid":
        sig = 1 / (1 + math.exp(-a))
        slips.insert(2, _n(s * sig * (1 - sig)))
    choices = [right]
    for text in slips:
        if text not in choices:
            choices.append(text)
    choices = sorted(choices[:4], key=float)
    return {"ask": f"Work it out: unit {j} of layer {l} has Σ_k w_{j}k δ_k = {_n(s)} and {given}. What is δ_{j}?",
            "choices": choices, "answer": choices.index(right),
            "why": f"δ_{j} = (Σ_k w_{j}k δ_k) · f'(z_{j}) = {_n(s)} × {_n(fp)} = {right}. Forgetting f' gives {_n(s)}; "
                   f"multiplying by a_{j} instead of f'(z_{j}) gives {_n(s * a)}" +
                   ("; σ(a_j)(1 − σ(a_j)), σ applied twice, is only a few percent off, which is why a loose check "
                    "misses it." if name == "sigmoid" else ".")}


def doc_target(doc: dict, classes: int) -> np.ndarray:
    return one_hot(np.array(doc["labels"][:1]), classes, np.float64)[0]


def _speed_step(net: MLP, run: dict) -> dict:
    """How fast each layer learns: ‖Δ_l‖ (Nielsen's speed of learning), its two factors going back, and
    ‖∂C/∂W_l‖ = ‖A_{l−1}‖ · ‖Δ_l‖, exact for one digit (A_{l−1}ᵀ Δ_l is then a rank-1 matrix)."""
    L = net.n_layers
    grads = run["grads"]
    layers = []
    for l in range(1, L + 1):
        i = l - 1
        delta = float(np.linalg.norm(grads.deltas[i]))
        a_prev = float(np.linalg.norm(run["activations"][i]))
        weights = float(np.linalg.norm(grads.weights[i]))
        row = {"l": l, "delta_norm": json_float(delta), "a_prev_norm": json_float(a_prev),
               "product": json_float(a_prev * delta), "grad_W_norm": json_float(weights),
               "grad_W_rms": json_float(weights / math.sqrt(grads.weights[i].size)), "w_factor": None,
               "f_factor": None}
        if l < L:   # Δ_l = (Δ_{l+1} W_{l+1}ᵀ) ⊙ f'(Z_l): how much each factor changes the norm
            carried = float(np.linalg.norm(run["backprop_sums"][i]))
            below = float(np.linalg.norm(grads.deltas[l]))
            row["w_factor"] = json_float(carried / below) if below > 0 else None
            row["f_factor"] = json_float(delta / carried) if carried > 0 else None
        layers.append(row)
    norms = [row["delta_norm"] or 0.0 for row in layers]
    smallest = int(np.argmin(norms))
    hidden = [row for row in layers if row["l"] < L]
    factors = "; ".join(f"from Δ_{r['l'] + 1} to Δ_{r['l']}: × {_n(r['w_factor'])} by W_{r['l'] + 1}ᵀ, "
                        f"× {_n(r['f_factor'])} by f'" for r in reversed(hidden))
    why = (", ".join(f"‖Δ_{r['l']}‖ = {_n(r['delta_norm'])}" for r in layers) + ". Going back, each Δ is the "
           f"one above times W_{{l+1}}ᵀ (which can make it longer) and then times f' (σ' ≤ 1/4 shortens it)"
           + (f": {factors}." if factors else ".") + " On a trained network the W factor can outweigh σ', so "
           "‖Δ_l‖ need not shrink; at initialisation, with several sigmoid layers, it does, by far (the "
           f"first of four hidden layers learns 63-80 times more slowly: {LEARNING_SPEED_PAGE}).")
    question = {"ask": "Which layer's error Δ_l is smallest (by its length ‖Δ_l‖, Nielsen's speed of learning: "
                       "gradient descent moves b_l by η ‖Δ_l‖)?",
                "choices": [f"layer {k}" for k in range(1, L + 1)], "answer": smallest, "why": why}
    return _step(
        "speed", "How fast each layer learns", "‖∂C/∂W_l‖ = ‖A_{l−1}‖ · ‖Δ_l‖   (one digit: A_{l−1}ᵀ Δ_l has rank 1)",
        "A_{l−1}: (1 × n_{l−1}),  Δ_l: (1 × n_l),  ∂C/∂W_l: (n_{l−1} × n_l)",
        "A layer learns as fast as its gradients are long. Its biases move by η ∂C/∂b_l = η Δ_l, so ‖Δ_l‖ is its "
        "speed of learning (Nielsen, chapter 5). Its weights' gradient A_{l−1}ᵀ Δ_l has two factors: for one digit "
        "it is the outer product of two vectors, whose length is exactly the product of their lengths, "
        "‖∂C/∂W_l‖ = ‖A_{l−1}‖ · ‖Δ_l‖. So layer 1's ‖∂C/∂W_1‖ is often the largest only because its input, the "
        "picture, is long (hundreds of pixels); per entry (the root mean square) it is usually the smallest. "
        "Whether the first layers learn more slowly is a question about ‖Δ_l‖: the README's \"the first layers "
        f"learn far more slowly\" holds for deep sigmoid networks at initialisation ({LEARNING_SPEED_PAGE}), "
        "not necessarily for this trained one.",
        question=question, layers=layers, link=LEARNING_SPEED_PAGE)


def _batch_step(net: MLP, batch: dict) -> dict:
    L, n = net.n_layers, net.sizes
    b = batch["batch_size"]
    k = 2 if L >= 2 else 1                       # the layer whose ∂C/∂W the question asks about
    shape_right = f"({n[k - 1]} × {n[k]})"
    choices = [f"({b} × {n[k]})", shape_right, f"({b} × {n[k - 1]} × {n[k]})", f"({n[k]} × {n[k - 1]})"]
    question = {"ask": f"With B = {b} digits, what is the shape of ∂C/∂W_{k}?", "choices": choices,
                "answer": 1,
                "why": f"A_{k - 1}ᵀ is ({n[k - 1]} × {b}) and Δ_{k} is ({b} × {n[k]}): the product sums over the "
                       f"{b} rows, so ∂C/∂W_{k} has W_{k}'s shape {shape_right} whatever B is; each entry is "
                       f"Σ_rows a_i δ_j, one product per digit."}
    delta = ("Δ_{L} = (A_{L} − Y) / B" if net.loss == "ce" else "Δ_{L} = (A_{L} − Y) ⊙ A_{L} ⊙ (1 − A_{L}) / B"
             ).replace("{L}", str(L))
    return _step(
        "batch", f"A batch of B = {b} digits",
        f"Z_l = A_{{l−1}} W_l + b_l (b_l added to every row);   {delta};   ∂C/∂W_l = A_{{l−1}}ᵀ Δ_l;   "
        f"∂C/∂b_l = Σ_rows Δ_l;   C = (1/B) Σ_rows C_row",
        f"A_0: ({b} × {n[0]});  Z_l, A_l, Δ_l: ({b} × n_l);  ∂C/∂W_{k} = A_{k - 1}ᵀ Δ_{k}: "
        f"({n[k - 1]} × {b}) ({b} × {n[k]}) = ({n[k - 1]} × {n[k]});  ∂C/∂b_l: (n_l)",
        f"Training never takes one digit at a time: it stacks B digits as the rows of A_0 and runs the same "
        f"lines on all of them. Every Z_l, A_l and Δ_l now has B rows, and the bias row b_l is added to each "
        f"(broadcasting). The cost is the mean over the rows, so each row's share of the output error is "
        f"divided by B: Δ_{L} = (A_{L} − Y)/B. The gradients add the rows up: ∂C/∂b_l = Σ_rows Δ_l, and in "
        f"A_{{l−1}}ᵀ Δ_l the transpose turns the B rows into the inner dimension of the product, so each "
        f"entry ∂C/∂w_ij is a sum of B products a_i δ_j, one per digit, and the result has W_l's shape "
        f"whatever B is. Forget the 1/B and every gradient is exactly B times too large; forget the "
        f"transpose and the shapes do not fit. Here the lesson's digit is row 0.",
        question=question, batch=batch)


def _check_step(net: MLP, check: dict) -> dict:
    l, i, j = check["weight"]
    return _step(
        "check", "Check it yourself", "∂C/∂w ≈ (C(w + ε) − C(w − ε)) / 2ε",
        f"w = W_{l}[{i}, {j}];  ε = {check['epsilon']:g}",
        f"Backpropagation claims ∂C/∂w for every weight at once. Check one by hand: move the weight W_{l}[{i}, {j}] "
        f"up by ε and compute the cost, move it down by ε and compute it again, and divide the difference by 2ε. "
        f"This central difference uses nothing but the forward pass and the cost. A weight of layer 1 is the "
        f"test that matters: its gradient went back through every layer, every transpose and every f', so if "
        f"the two agree the whole chain rule was applied correctly (a weight of the output layer would test "
        f"only Δ_L). They are compared by the relative error {RELATIVE_ERROR}: below {GOOD_BELOW:g} they agree; "
        f"above {WRONG_ABOVE:g} the gradient is wrong; in between, look closer (cs231n's thresholds, for a "
        f"cost without kinks; relu's kink at 0 can raise it). The suggested weight is the one of layer 1 with "
        f"the largest gradient; pick any other.",
        check=check)


def _input_gradient_step(net: MLP, run: dict, label: int) -> dict:
    gradient = run["grads"].deltas[0] @ net.weights[0].T   # ∂C/∂A_0 = Δ_1 W_1ᵀ
    n0 = net.sizes[0]
    return _step(
        "input-gradient", "Where the digit should change", "∂C/∂A_0 = Δ_1 W_1ᵀ",
        f"(1 × {net.sizes[1]}) ({net.sizes[1]} × {n0}) = (1 × {n0})",
        f"Take the backward rule one layer further and it lands on the input: ∂C/∂A_0 = Δ_1 W_1ᵀ says how the cost "
        f"would change if each pixel had a little more ink. Pixels where it is negative would raise the probability "
        f"of {label} (more ink there lowers the cost); where positive, less ink would. Training never changes the "
        f"digit, though: it changes the weights (the next step). The same line is how adversarial examples and "
        f"saliency maps are made.",
        input_gradient=json_floats(gradient[0]), input_gradient_top=_top(gradient[0]),
    )


def _update_step(net: MLP, doc: dict, label: int) -> dict:
    step = doc["step"]
    L, n = net.n_layers, net.sizes
    k = 2 if L >= 2 else 1
    choices = [f"Z_{k} = A_{k - 1} W_{k} + b_{k}", f"∂C/∂W_{k} = A_{k - 1} Δ_{k}", f"∂C/∂b_{k} = Σ_rows Δ_{k}",
               f"W_{k} ← W_{k} − η ∂C/∂W_{k}"]
    question = {"ask": f"The step subtracts ∂C/∂W_{k} from W_{k}, so the two must have the same shape. Written "
                       f"without any transpose, which of these lines does not fit (B digits; A_{k - 1}: "
                       f"(B × {n[k - 1]}), W_{k}: ({n[k - 1]} × {n[k]}), Δ_{k}: (B × {n[k]}))?",
                "choices": choices, "answer": 1,
                "why": f"A_{k - 1} Δ_{k} would be (B × {n[k - 1]}) (B × {n[k]}), which does not multiply; "
                       f"A_{k - 1}ᵀ Δ_{k} is ({n[k - 1]} × B) (B × {n[k]}) = ({n[k - 1]} × {n[k]}), W_{k}'s shape. "
                       f"Z_{k} = A_{k - 1} W_{k} is (B × {n[k - 1]}) ({n[k - 1]} × {n[k]}); the bias sums Δ_{k}'s "
                       f"rows; the update subtracts two arrays of one shape."}
    return _step(
        "update", "One step", "W_l ← W_l − η ∂C/∂W_l,   b_l ← b_l − η ∂C/∂b_l",
        "each ∂C/∂W_l has W_l's shape, each ∂C/∂b_l b_l's",
        f"Gradient descent moves every weight and bias a little against its gradient: η (the learning rate) "
        f"times ∂C/∂W_l. One plain step of η = {step['lr']:g} ({step['lr_source']}) on this one digit, taken on a "
        f"copy of the network, shows what a single step does: the cost and the target's probability before "
        f"and after. Training takes thousands of such steps, each on a batch, each moving the weights a "
        f"little towards reading all the digits right.",
        question=question,
        update={"lr": step["lr"], "lr_source": step["lr_source"], "loss_before": step["loss_before"],
                "loss_after": step["loss_after"], "p_label_before": step["p_label_before"][0],
                "p_label_after": step["p_label_after"][0], "prediction_after": step["predictions_after"][0],
                "probabilities_after": step["probabilities_after"]["values"][0]},
    )


# ================================================================== the gradient check
def suggested_weight(net: MLP, grads) -> tuple[int, int, int]:
    """(1, i, j) of the weight of layer 1 with the largest |∂C/∂w|: its gradient passes through every
    layer's transpose and f', so checking it checks the whole chain."""
    i, j = np.unravel_index(int(np.abs(grads.weights[0]).argmax()), grads.weights[0].shape)
    return 1, int(i), int(j)


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
    error = abs(measured - predicted) / max(1e-8, abs(measured) + abs(predicted))     # cs231n's rel_error
    verdict = ("they agree" if error < GOOD_BELOW else "the gradient is wrong" if error > WRONG_ABOVE
               else "between the thresholds: look closer (a larger ε measures curvature, a smaller one rounding)")
    return {"weight": [layer, i, j], "suggested": list(suggested), "w": json_float(net.weights[layer - 1][i, j]),
            "epsilon": epsilon, "cost_plus": json_float(costs[+1]), "cost_minus": json_float(costs[-1]),
            "measured": json_float(measured), "predicted": json_float(predicted),
            "relative_error": json_float(error), "relative_error_formula": RELATIVE_ERROR,
            "thresholds": [GOOD_BELOW, WRONG_ABOVE], "verdict": verdict}


# ================================================================== helpers
def _n(value) -> str:
    """A number as the lesson writes it: 4 significant digits (as `bptrain explain`)."""
    return "nan" if value is None else f"{value + 0.0:.4g}"


def probability_text(p, cost) -> str:
    """``p`` written with just enough digits that −log of the written number, to 4 significant digits,
    is the cost C shown (also to 4): a learner who computes −log p by hand gets the C on the screen.
    A probability near 1 needs more digits than 4 (−log 0.9938 is 0.00622, not 0.006199)."""
    if p is None or cost is None or not p > 0:
        return _n(p)
    wanted = _n(cost)
    for decimals in range(4, 18):
        text = f"{p:.{decimals}f}"
        if float(text) > 0 and _n(-math.log(float(text))) == wanted:
            return text
    for digits in range(4, 17):
        text = f"{p:.{digits - 1}e}"
        if _n(-math.log(float(text))) == wanted:
            return text
    return repr(float(p))


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
