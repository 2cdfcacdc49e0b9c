"""``bptrain explain --lesson``: the lesson in the terminal, one step per Enter.

The steps, their prose and their numbers are :func:`bptrain.app.lesson.lesson`'s (the page shows the same
document); this module lays each step out as lines and reads the learner's answers. Enter goes on (and
skips a question); the end of the input ends the lesson cleanly wherever it is.
"""

from __future__ import annotations

import textwrap
from typing import Callable

import numpy as np

from ...core.errors import BptrainError
from .text import digit_picture, number, percent

WIDTH = 100
#: Share of the largest |∂C/∂A_0| from which a pixel is marked in the input-gradient picture.
MARKED = 0.35


class Ended(Exception):
    """The input ended: the lesson stops where it is."""


def walk(document: dict, read_line: Callable[[], str], say: Callable[[str], None],
         recheck: Callable[[tuple[int, int, int]], dict], encoding: str | None = None) -> int:
    """Show every step of ``document``, waiting for a line between steps; returns the steps shown.

    ``read_line`` returns a line ("" at the end of the input); ``recheck`` gives the gradient check of
    another weight (layer, i, j), for a learner who picks one.
    """
    steps = document["steps"]
    shown = 0
    try:
        for step in steps:
            _header(say, step, len(steps))
            if step["question"] is not None:
                _ask(say, read_line, step["question"])
            SHOW[step["kind"]](say, step, document, read_line=read_line, recheck=recheck, encoding=encoding)
            shown = step["n"]
            if shown < len(steps):
                _read(read_line, say, "[Enter: the next step]")
        say("")
        say(f"End of the lesson ({len(steps)} steps). The same steps, on the page: bptrain serve, then "
            "Backprop → Walk through it step by step.")
    except Ended:
        say("")
        say(f"(the input ended: the lesson stops after step {shown} of {len(steps)})")
    return shown


def _read(read_line, say, prompt: str) -> str:
    say(prompt)
    line = read_line()
    if line == "":
        raise Ended
    return line.strip()


def _header(say, step: dict, total: int) -> None:
    say("")
    title = f"── Step {step['n']} of {total} · {step['title']} "
    say(title + "─" * max(0, WIDTH - len(title)))
    say(f"  {step['formula']}")
    say(f"  shapes: {step['shapes']}")
    say("")
    _paragraph(say, step["prose"])
    say(f"  computed by {step['core']}")
    say("")


def _paragraph(say, text: str) -> None:
    for line in textwrap.wrap(text, WIDTH - 2):
        say(f"  {line}")


def _ask(say, read_line, question: dict) -> None:
    choices = question["choices"]
    say(f"  Question: {question['ask']}")
    say("  " + "   ".join(f"{n}) {text}" for n, text in enumerate(choices, start=1)))
    while True:
        answer = _read(read_line, say, f"  your answer (1-{len(choices)}; Enter skips):")
        if answer == "" or (answer.isascii() and answer.isdigit() and 1 <= int(answer) <= len(choices)):
            right = choices[question["answer"]]
            if answer == "":
                verdict = f"Skipped: the answer is {right}."
            elif int(answer) - 1 == question["answer"]:
                verdict = f"Right: the answer is {right}."
            else:
                verdict = f"Not quite: you chose {choices[int(answer) - 1]}; the answer is {right}."
            _paragraph(say, f"{verdict} {question['why']}")
            break
        say(f"  {answer[:20]!r} is not one of 1-{len(choices)}.")
    say("")


# ================================================================== each kind of step
def _input(say, step, document, encoding=None, **_) -> None:
    values = document["explain"]["A_0"]["values"][0]
    picture = digit_picture(values, encoding)
    if picture:
        say("  the digit as the network sees it (two characters per pixel, darker for more ink):")
        for row in picture:
            say(f"  |{row:<{2 * len(picture)}}|")
    say(f"  A_0: a row of {len(values)} numbers, {step['ink_pixels']} of them above 0 (ink).")


def _forward(say, step, document, **_) -> None:
    l = step["layer"]
    units = step["units"]
    z = [u["z"] for u in units]
    a = [u["a"] for u in units]
    say(f"  Z_{l}: min {number(min(z))}  max {number(max(z))};   A_{l}: min {number(min(a))}  max {number(max(a))}")
    say(f"  largest a: " + "  ".join(f"j={t['index'][-1]} {number(t['value'])}" for t in step["a_top"]))
    unit = units[step["a_top"][0]["index"][-1]]
    source = "pixel" if l == 1 else "unit"
    j = unit["j"]
    say(f"  unit {j} (the most active), worked out: z_{j} = Σ_i a_i w_i,{j} + b_{j}; its largest terms:")
    for t in unit["terms"]:
        where = f" (row {t['i'] // step_side(document)}, column {t['i'] % step_side(document)})" if (
            l == 1 and step_side(document)) else ""
        say(f"    a_{t['i']} w_{t['i']},{j} = {number(t['a'])} × {number(t['w'])} = {number(t['product'])}"
            f"   {source} {t['i']}{where}")
    say(f"    Σ_i a_i w_i,{j} over all {source}s = {number(unit['sum'])};  + b_{j} {number(unit['b'])}  = "
        f"z_{j} = {number(unit['z'])};   a_{j} = {number(unit['a'])}")


def _cost(say, step, document, **_) -> None:
    L = len(document["model"]["sizes"]) - 1
    probabilities = step["probabilities"]
    say(f"  {'class':<10}" + "".join(f"{c:>9}" for c in range(len(probabilities))))
    name = f"A_{L}" if document["model"]["loss"] == "ce" else "p"
    say(f"  {name:<10}" + "".join(f"{number(p, 3):>9}" for p in probabilities))
    say(f"  {'Y':<10}" + "".join(f"{int(c == step['target']):>9}" for c in range(len(probabilities))))
    say(f"  target {named(document, step['target'])}: p = {step['p_target_text']} "
        f"({percent(probabilities[step['target']])});  the network answers {named(document, step['prediction'])};  "
        f"C = {number(step['cost'])}")


def named(document: dict, c: int) -> str:
    """A class as its number, and its name when the model has names of its own: "3 (Dress)"."""
    names = document.get("class_names") or []
    return f"{c} ({names[c]})" if c < len(names) and names[c] != str(c) else str(c)


def _backward(say, step, document, **_) -> None:
    l = step["layer"]
    units = step["units"]
    say(f"  largest |δ|: " + "  ".join(f"j={t['index'][-1]} {number(t['value'])}" for t in step["delta_top"]))
    unit = units[step["delta_top"][0]["index"][-1]]
    j = unit["j"]
    if "terms" in unit:
        say(f"  unit {j} (the largest |δ|), worked out: δ_{j} = (Σ_k w_{j},k δ_k) f'(z_{j}); the sum's largest terms:")
        for t in unit["terms"]:
            say(f"    w_{j},{t['k']} δ_{t['k']} = {number(t['w'])} × {number(t['delta'])} = {number(t['product'])}")
        say(f"    Σ_k w_{j},k δ_k = {number(unit['sum'])};  × f'(z_{j}) {number(unit['f_prime'])}  = "
            f"δ_{j} = {number(unit['delta'])}")
    elif "f_prime" in unit:
        say(f"  unit {j} worked out: δ_{j} = (a_{j} − y_{j}) a_{j} (1 − a_{j}) / B = ({number(unit['a'])} − "
            f"{number(unit['y'])}) × {number(unit['f_prime'])} / 1 = {number(unit['delta'])}")
    else:
        say(f"  unit {j} worked out: δ_{j} = (a_{j} − y_{j}) / B = ({number(unit['a'])} − {number(unit['y'])}) / 1 = "
            f"{number(unit['delta'])}")
    if len(units) <= 20:
        say(f"  Δ_{l}: " + "  ".join(f"{u['j']}: {number(u['delta'], 3)}" for u in units))
    say(f"  ∂C/∂W_{l}: ‖·‖ {number(step['grad_W_norm'])}; largest |·|: "
        + "  ".join(f"[{t['index'][0]},{t['index'][1]}] {number(t['value'])}" for t in step["grad_W_top"][:3]))


def _check(say, step, document, read_line=None, recheck=None, **_) -> None:
    check = step["check"]
    l, i, j = check["suggested"]
    while True:
        text = _read(read_line, say, f"  the weight to nudge as LAYER,I,J (Enter: the suggested W_{l}[{i}, {j}], the "
                                     f"largest |∂C/∂w| of layer 1):")
        if text == "":
            break
        try:
            check = recheck(_weight(text))
            break
        except BptrainError as exc:
            say(f"  {exc}")
    l, i, j = check["weight"]
    say(f"  w = W_{l}[{i}, {j}] = {number(check['w'])},  ε = {check['epsilon']:g}")
    say(f"  C(w + ε) = {check['cost_plus']!r}")
    say(f"  C(w − ε) = {check['cost_minus']!r}")
    say(f"  measured  (C(w + ε) − C(w − ε)) / 2ε = {number(check['measured'], 8)}")
    say(f"  predicted ∂C/∂w by backpropagation    = {number(check['predicted'], 8)}")
    good, wrong = check["thresholds"]
    say(f"  relative error {check['relative_error_formula']} = {number(check['relative_error'], 2)}")
    say(f"  (below {good:g}: they agree; above {wrong:g}: the gradient is wrong) → {check['verdict']}")


def _weight(text: str) -> tuple[int, int, int]:
    parts = text.replace(" ", "").split(",")
    if len(parts) != 3 or not all(p.isascii() and p.lstrip("-").isdigit() for p in parts):
        raise BptrainError(f"{text[:30]!r} is not LAYER,I,J (three integers, e.g. 1,405,17)")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _input_gradient(say, step, document, **_) -> None:
    gradient = np.array([0.0 if g is None else g for g in step["input_gradient"]])
    ink = np.asarray(document["explain"]["A_0"]["values"][0])
    side = int(round(len(gradient) ** 0.5))
    if side * side == len(gradient) and np.abs(gradient).max() > 0:
        say("  ∂C/∂A_0 over the digit: ++ more ink would raise the target's probability, -- less ink would; "
            ".. the digit's ink")
        strong = np.abs(gradient) >= MARKED * np.abs(gradient).max()
        for row in range(side):
            cells = []
            for n in range(row * side, (row + 1) * side):
                cells.append(("++" if gradient[n] < 0 else "--") if strong[n] else (".." if ink[n] > 0.3 else "  "))
            say("  |" + "".join(cells) + "|")
    side = step_side(document)
    say("  largest |∂C/∂a_i|: " + "  ".join(
        f"pixel {t['index']}" + (f" (row {t['index'] // side}, col {t['index'] % side})" if side else "")
        + f" {number(t['value'])}" for t in step["input_gradient_top"][:3]))


def _update(say, step, document, **_) -> None:
    update = step["update"]
    target = document["label"]
    say(f"  one step of η = {update['lr']:g} on a copy: C {number(update['loss_before'])} → "
        f"{number(update['loss_after'])};  p({target}) {percent(update['p_label_before'])} → "
        f"{percent(update['p_label_after'])};  the network answers {named(document, update['prediction_after'])}")


def _speed(say, step, document, **_) -> None:
    say(f"  {'layer':<7}{'‖A_l−1‖':>12}{'‖Δ_l‖':>12}{'product':>12}{'‖∂C/∂W_l‖':>12}{'per entry':>12}"
        f"{'× by Wᵀ':>10}{'× by f′':>10}")
    for row in step["layers"]:
        factors = ("", "") if row["w_factor"] is None else (number(row["w_factor"], 3), number(row["f_factor"], 3))
        say(f"  {row['l']:<7}{number(row['a_prev_norm']):>12}{number(row['delta_norm']):>12}"
            f"{number(row['product']):>12}{number(row['grad_W_norm']):>12}{number(row['grad_W_rms']):>12}"
            f"{factors[0]:>10}{factors[1]:>10}")
    say("  product = ‖A_l−1‖ · ‖Δ_l‖, equal to ‖∂C/∂W_l‖ (one digit: a rank-1 matrix); per entry: its root mean "
        "square;")
    say(f"  × by Wᵀ, × by f′: how Δ_l+1 W_l+1ᵀ and then ⊙ f'(Z_l) change the length going back. More: {step['link']}")


def _batch(say, step, document, **_) -> None:
    batch = step["batch"]
    L = len(document["model"]["sizes"]) - 1
    ce = document["model"]["loss"] == "ce"
    say(f"  {'row':<5}{'digit':<34}{'label':>6}{'answer':>8}{'p(label)':>11}" + (f"{'−log p':>10}" if ce else ""))
    for row in batch["rows"]:
        say(f"  {row['row']:<5}{row['digit'][:33]:<34}{row['label']:>6}{row['prediction']:>8}"
            f"{number(row['p_label']):>11}" + (f"{number(row['cost']):>10}" if ce else ""))
    b = batch["batch_size"]
    say(f"  C = (1/{b}) Σ_rows {'−log p' if ce else '½‖a − y‖²'} = {number(batch['cost'])}")
    classes = len(batch["delta_out"][0])
    if classes <= 20:
        say(f"  Δ_{L} = (A_{L} − Y)/{b}{'' if ce else ' ⊙ σ′'}, one row per digit ({b} × {classes}):")
        say("    " + "".join(f"{c:>11}" for c in range(classes)))
        for r, row in enumerate(batch["delta_out"]):
            say(f"  {r:<2}" + "".join(f"{number(v, 3):>11}" for v in row))
        say("  Σ " + "".join(f"{number(v, 3):>11}" for v in batch["grad_b_out"]) + f"   = ∂C/∂b_{L}")
    for layer in batch["layers"]:
        l, w, bias = layer["l"], layer["weight"], layer["bias"]
        (rows, n_in), (_, n_out) = layer["shape_A_prev"], layer["shape_delta"]
        say(f"  layer {l}: ∂C/∂W_{l} = A_{l - 1}ᵀ Δ_{l}: ({n_in} × {rows}) ({rows} × {n_out}) = ({n_in} × {n_out}); "
            f"its largest entry [{w['i']}, {w['j']}] = Σ_rows a_{w['i']} δ_{w['j']} =")
        say("    " + " + ".join(f"{number(t['a'], 3)} × {_term(t['delta'])}" for t in w["terms"])
            + f" = {number(w['sum'])}")
        say(f"    ∂C/∂b_{l}[{bias['j']}] = Σ_rows δ_{bias['j']} = "
            + " + ".join(_term(v) for v in bias["deltas"]) + f" = {number(bias['sum'])}")


def _term(value) -> str:
    """A term of a written-out sum: a negative one in brackets (0.5 + (-0.2), not 0.5 + -0.2)."""
    return f"({number(value, 3)})" if value is not None and value < 0 else number(value, 3)


def step_side(document: dict) -> int | None:
    """The input picture's side, when the input is a square picture."""
    return document["steps"][0].get("side")


SHOW = {"input": _input, "forward": _forward, "cost": _cost, "backward": _backward, "speed": _speed,
        "batch": _batch, "check": _check, "input-gradient": _input_gradient, "update": _update}
