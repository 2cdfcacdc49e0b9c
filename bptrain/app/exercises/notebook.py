"""The workbook as a Jupyter notebook: ``DIR/backprop.ipynb`` (nbformat 4, written as plain JSON).

Each exercise is a cell beginning with ``# exercise: NAME`` that defines the function, followed by a check
cell that prints what ``bptrain exercises check`` says of it and never raises, so a fresh notebook runs to
the end. Then pictures (digits, a hidden layer's activations, Δ_l, ∂C/∂W_1's columns as images) and a last
part that trains a few epochs with the learner's functions, drawing the loss as it goes; without MNIST,
or before the exercises they need pass, those cells say so and are skipped.
"""

from __future__ import annotations

import json

from .workbook import EXERCISES, function_text

EXERCISE_MARK = "# exercise: "

_INTRO = """\
# Write backprop yourself

Fill in each function below, in order, and run its cell and the check cell after it: the check says
**passed**, **not done yet** or **failed**, and for a failure *which* mistake it looks like, with the
formula line to look at. The notation is the README's math section: rows are samples, a mini-batch X is
(B, n_0), W_l is (n_{l−1}, n_l), b_l is (n_l,), lists hold layers 1..L (`Ws[0]` is W_1), and
Δ_l = ∂C/∂Z_l includes the 1/B of the mean over the batch. Keep the dtype you are given and never
change an array you are given: the checker's inputs are read-only.

The same exercises as a file: `bptrain exercises start DIR`; the same check: `bptrain exercises check DIR`.
Once the ten pass, the last part trains MNIST with your functions (and so does
`bptrain train --workbook`, with a file)."""

_SETUP = """\
# Where MNIST is: as the command line finds it (data/mnist.pkl.gz here, or $BPTRAIN_DATA), or a path here.
DATA = None

import numpy as np

from bptrain.app.exercises.checker import notebook_check, not_passing
from bptrain.core.errors import BptrainError
from bptrain.data.loader import load_dataset, resolve_data_path


def check(name):
    \"\"\"Print what `bptrain exercises check` says of exercise `name` (it never raises).\"\"\"
    print(notebook_check(name, globals()))


def ready(*names):
    \"\"\"True when the exercises `names` pass; else say which to finish first.\"\"\"
    waiting = not_passing(names, globals())
    if waiting:
        print("skipped: first make " + ", ".join(waiting) + " pass")
    return not waiting


try:
    data = load_dataset(resolve_data_path(DATA))
    print(f"MNIST: {len(data.train.x)} training images from {data.source}")
except BptrainError as exc:
    data = None
    print(f"no MNIST: {exc}. The parts that need it are skipped.")
side = int(round(data.n_features ** 0.5)) if data is not None else 0
if data is not None and side * side != data.n_features:
    print("the images are not square: the pictures of digits are skipped")
    side = 0"""

_PICTURES_INTRO = """\
## Pictures

With your functions on 16 training digits and a small random network (n_0-32-10, float32): what goes in,
what the hidden layer makes of it, the errors Δ_l on the way back, and ∂C/∂W_1, one 28 × 28 image per
hidden unit: what this batch would teach each unit to look for."""

_DIGITS = """\
import matplotlib.pyplot as plt

if data is None or not side:
    print("skipped: no MNIST" if data is None else "skipped: the images are not square")
else:
    fig, axes = plt.subplots(2, 8, figsize=(8, 2.6), layout="constrained")
    for ax, image, label in zip(axes.flat, data.train.x, data.train.y):
        ax.imshow(image.reshape(side, side), cmap="gray_r")
        ax.set_title(str(label))
        ax.axis("off")
    fig.suptitle("16 training digits and their labels")
    plt.show()"""

_NETWORK = """\
if data is not None:
    rng = np.random.default_rng(0)
    sizes = (data.n_features, 32, data.n_classes)
    limits = [np.sqrt(6 / (m + n)) for m, n in zip(sizes[:-1], sizes[1:])]  # Glorot-uniform, as bptrain's default
    Ws = [rng.uniform(-c, c, (m, n)).astype(np.float32) for c, m, n in zip(limits, sizes[:-1], sizes[1:])]
    bs = [np.zeros(n, np.float32) for n in sizes[1:]]
    X, labels = data.train.x[:16], data.train.y[:16]
    Y = np.eye(data.n_classes, dtype=X.dtype)[labels]
    if ready("forward"):
        Zs, As = forward(X, Ws, bs)
        fig, ax = plt.subplots(figsize=(8, 3), layout="constrained")
        ax.imshow(As[1], aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_xlabel("hidden unit")
        ax.set_ylabel("digit (row)")
        ax.set_title("A_1 = σ(X W_1 + b_1): one row per digit")
        plt.show()
else:
    print("skipped: no MNIST")"""

_DELTAS = """\
if data is not None and ready("forward", "output_delta", "delta_below"):
    D2 = output_delta(As[-1], Y)
    D1 = delta_below(D2, Ws[1], As[1])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3), gridspec_kw={"width_ratios": [1, 3]}, layout="constrained")
    for ax, D, name in zip(axes, (D2, D1), ("Δ_2 = (A_2 − Y) / B", "Δ_1 = (Δ_2 W_2ᵀ) ⊙ A_1 ⊙ (1 − A_1)")):
        limit = float(np.abs(D).max()) or 1.0
        image = ax.imshow(D, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(name)
        ax.set_xlabel("unit of the layer")
        ax.set_ylabel("digit (row)")
        fig.colorbar(image, ax=ax)
    plt.show()
elif data is None:
    print("skipped: no MNIST")"""

_GRADIENT_IMAGES = """\
if data is not None and side and ready("forward", "backward"):
    dWs, dbs = backward(Zs, As, Y, Ws)
    fig, axes = plt.subplots(2, 8, figsize=(8, 2.6), layout="constrained")
    limit = float(np.abs(dWs[0]).max()) or 1.0
    for unit, ax in enumerate(axes.flat):
        ax.imshow(dWs[0][:, unit].reshape(side, side), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"unit {unit}", fontsize=8)
        ax.axis("off")
    fig.suptitle("∂C/∂W_1, one column per hidden unit, as an image (red: this batch's step lowers those weights)")
    plt.show()
elif data is None or not side:
    print("skipped: no MNIST" if data is None else "skipped: the images are not square")"""

_TRAIN_INTRO = """\
## Train MNIST with your functions

A few epochs of plain SGD with your `forward`, `backward`, `sgd_step` and `cross_entropy`, the loss drawn
as it goes. (`bptrain train --workbook DIR/backprop.py` does the same from a file, with bptrain's schedule,
checkpoints and model file.)"""

_TRAIN = """\
EPOCHS, BATCH, LR = 3, 32, 0.1

if data is not None and ready("forward", "cross_entropy", "backward", "sgd_step"):
    from IPython.display import display
    from tqdm.auto import tqdm

    rng = np.random.default_rng(0)
    Ws = [rng.uniform(-c, c, (m, n)).astype(np.float32) for c, m, n in zip(limits, sizes[:-1], sizes[1:])]
    bs = [np.zeros(n, np.float32) for n in sizes[1:]]
    x, y = data.train.x, data.train.y
    eye = np.eye(data.n_classes, dtype=x.dtype)
    losses = []
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    shown = display(fig, display_id=True)

    def draw():
        ax.clear()
        ax.plot(losses, lw=0.4, color="0.7", label="each batch")
        if len(losses) >= 50:
            ax.plot(np.arange(49, len(losses)), np.convolve(losses, np.ones(50) / 50, "valid"), label="mean of 50")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy C")
        ax.legend(loc="upper right")
        shown.update(fig)

    for epoch in range(1, EPOCHS + 1):
        order = rng.permutation(len(x))
        for step, start in enumerate(tqdm(range(0, len(x), BATCH), desc=f"epoch {epoch}")):
            rows = order[start:start + BATCH]
            X, Y = x[rows], eye[y[rows]]
            Zs, As = forward(X, Ws, bs)
            losses.append(cross_entropy(Zs[-1], Y))
            dWs, dbs = backward(Zs, As, Y, Ws)
            Ws, bs = sgd_step(Ws, bs, dWs, dbs, LR)
            if step % 200 == 0:
                draw()
        draw()
        predicted = forward(data.validation.x, Ws, bs)[1][-1].argmax(axis=1)
        print(f"epoch {epoch}: validation accuracy {100 * np.mean(predicted == data.validation.y):.2f}%")
    plt.close(fig)
elif data is None:
    print("skipped: no MNIST")"""


def _cell(kind: str, source: str, number: int) -> dict:
    cell = {"cell_type": kind, "id": f"cell-{number:02d}", "metadata": {}, "source": source.splitlines(True)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def cells() -> list[dict]:
    """The notebook's cells, in order."""
    parts = [("markdown", _INTRO), ("code", _SETUP)]
    for number, exercise in enumerate(EXERCISES, 1):
        optional = " (optional)" if exercise.optional else ""
        parts.append(("markdown", f"## {number}. `{exercise.signature}`{optional}"))
        parts.append(("code", EXERCISE_MARK + exercise.name + "\n" + function_text(number, exercise).lstrip("\n")))
        parts.append(("code", f'check("{exercise.name}")'))
    parts += [("markdown", _PICTURES_INTRO), ("code", _DIGITS), ("code", _NETWORK), ("code", _DELTAS),
              ("code", _GRADIENT_IMAGES), ("markdown", _TRAIN_INTRO), ("code", _TRAIN)]
    return [_cell(kind, source.rstrip("\n"), number) for number, (kind, source) in enumerate(parts)]


def notebook_text() -> str:
    """The notebook, as the JSON text of an .ipynb file (nbformat 4.5, kernel ``python3``)."""
    notebook = {"cells": cells(), "nbformat": 4, "nbformat_minor": 5,
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                             "language_info": {"name": "python"}}}
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
