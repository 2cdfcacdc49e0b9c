"""The workbook: ``DIR/backprop.py``, the functions a learner writes, in the order the checker checks them.

Each exercise has its signature, its formula in the README's notation (rows are samples, W_l is
(n_{l-1}, n_l), lists hold layers 1..L, Δ includes the 1/B), the shapes at batch B and hints, the first
of which is written into the file. The bodies raise ``NotImplementedError``: no solution ships.
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import BptrainError
from ...data.model_io import atomic_write, write_new as write_file_new

WORKBOOK_NAME = "backprop.py"
NOTEBOOK_NAME = "backprop.ipynb"


class WorkbookError(BptrainError):
    """The workbook cannot be written or read."""


@dataclass(frozen=True)
class Exercise:
    """One function the learner writes: how it is called, what it computes, and hints from gentle to plain."""

    name: str
    params: str
    returns: str
    formula: tuple[str, ...]
    shapes: str
    hints: tuple[str, ...]
    optional: bool = False

    @property
    def signature(self) -> str:
        return f"{self.name}({self.params})"


EXERCISES: tuple[Exercise, ...] = (
    Exercise("sigmoid", "Z", "A",
             ("A = σ(Z) = 1 / (1 + e^{−Z}), element by element",),
             "Z: any shape; A: the same shape and dtype",
             ("For Z far below 0, e^{−Z} overflows: use e^{−|Z|}, which never does, and write σ for Z ≥ 0 and "
              "Z < 0 apart (np.where).",
              "For Z < 0, σ(Z) = e^{Z} / (1 + e^{Z}); for Z ≥ 0, 1 / (1 + e^{−Z}). Both use only e^{−|Z|}.",
              "e = np.exp(-np.abs(Z)); then np.where(Z >= 0, 1 / (1 + e), e / (1 + e)).")),
    Exercise("sigmoid_prime", "A", "σ'(Z), written with the layer's output A = σ(Z)",
             ("σ'(Z) = σ(Z) ⊙ (1 − σ(Z)) = A ⊙ (1 − A)",),
             "A: (B, n_l); σ'(Z): (B, n_l)",
             ("A already is σ(Z): do not apply σ to it again.",
              "One line of element-wise arithmetic on A, no exponential.")),
    Exercise("softmax", "Z", "A_L",
             ("A_L = softmax(Z_L), row by row: a_j = e^{z_j} / Σ_k e^{z_k}",),
             "Z: (B, n_L); A_L: (B, n_L), each row sums to 1",
             ("Subtracting a row's maximum from the row changes nothing in the result and keeps e^z ≤ 1.",
              "Z.max(axis=1, keepdims=True) keeps the column shape (B, 1), so it subtracts row by row.",
              "Divide by the row sums, again with keepdims=True.")),
    Exercise("cross_entropy", "Z_L, Y", "C, a Python float",
             ("C = −(1/B) Σ_rows log softmax(Z_L)_y = (1/B) Σ_rows (log Σ_j e^{z_j} − z_y)",),
             "Z_L: (B, n_L); Y: (B, n_L) one-hot; C: a float",
             ("Compute it from Z_L, not from the log of a softmax that may round to 0.",
              "log Σ_j e^{z_j} = m + log Σ_j e^{z_j − m} with m the row maximum; z_y is Σ_j y_j z_j.",
              "Average over the B rows and return float(...).")),
    Exercise("forward", "X, Ws, bs", "(Zs, As)",
             ("Z_l = A_{l−1} W_l + b_l,   A_0 = X",
              "A_l = σ(Z_l) for the hidden layers l < L,   A_L = softmax(Z_L)",
              "Zs = [Z_1 … Z_L], As = [A_0 = X, A_1 … A_L]"),
             "X: (B, n_0); Ws[l−1]: (n_{l−1}, n_l); bs[l−1]: (n_l,); Z_l, A_l: (B, n_l)",
             ("Loop over the layers with zip(Ws, bs); the bias broadcasts over the rows by itself.",
              "The last layer is different: softmax, not σ. Keep every Z and every A, X first.")),
    Exercise("output_delta", "A_L, Y", "Δ_L",
             ("Δ_L = ∂C/∂Z_L = (A_L − Y) / B",),
             "A_L, Y: (B, n_L); Δ_L: (B, n_L)",
             ("C is a mean over the batch, so every row of Δ_L carries the 1/B.",
              "Softmax and cross-entropy together give no σ' here: the difference is the whole story.")),
    Exercise("layer_gradients", "A_prev, Delta", "(dW, db)",
             ("∂C/∂W_l = A_{l−1}ᵀ Δ_l,   ∂C/∂b_l = Σ_rows Δ_l",),
             "A_prev: (B, n_{l−1}); Delta: (B, n_l); dW: (n_{l−1}, n_l) like W_l; db: (n_l,) like b_l",
             ("Each gradient has the shape of its parameter: let the shapes tell you where the transpose goes.",
              "Δ_l already holds the 1/B: sum over the rows (axis 0), do not average.")),
    Exercise("delta_below", "Delta, W, A_below", "Δ_{l−1}",
             ("Δ_{l−1} = (Δ_l W_lᵀ) ⊙ σ'(Z_{l−1}),   σ' from A_{l−1}: A_{l−1} ⊙ (1 − A_{l−1})",),
             "Delta: (B, n_l); W: (n_{l−1}, n_l); A_below: (B, n_{l−1}); Δ_{l−1}: (B, n_{l−1})",
             ("The error goes back through the weights (transposed), then through the units' slope σ'.",
              "Use your sigmoid_prime on A_below: it is σ'(Z_{l−1}) written with the layer's output.")),
    Exercise("backward", "Zs, As, Y, Ws", "(dWs, dbs)",
             ("Δ_L = (A_L − Y) / B; for l = L … 1: ∂C/∂W_l = A_{l−1}ᵀ Δ_l, ∂C/∂b_l = Σ_rows Δ_l,",
              "Δ_{l−1} = (Δ_l W_lᵀ) ⊙ σ'(Z_{l−1}) (no Δ_0: the input has no parameters)"),
             "dWs[l−1]: like Ws[l−1]; dbs[l−1]: like bs[l−1]; lists in layer order 1..L",
             ("Use output_delta, layer_gradients and delta_below, from the output layer down.",
              "Layer l's weight gradient takes As[l−1], the layer's input: As is one longer than Zs.",
              "Fill lists of length L from the end, or append and reverse them at the end.")),
    Exercise("sgd_step", "Ws, bs, dWs, dbs, lr", "(new Ws, new bs)",
             ("θ ← θ − η ∂C/∂θ for every W_l and b_l (η = lr, a Python float)",),
             "every new array like the old one; the given lists and arrays stay unchanged",
             ("Downhill: subtract the gradient.",
              "Make new arrays (W - lr * dW); an in-place -= would change the caller's arrays.")),
    Exercise("momentum_step", "Ws, bs, dWs, dbs, vWs, vbs, lr, mu", "(new Ws, new bs, new vWs, new vbs)",
             ("v ← μ v + η ∂C/∂θ,   θ ← θ − v   for every W_l and b_l (η = lr, μ = mu; v starts at 0)",),
             "vWs, vbs: like Ws, bs; every new array like the old one; the given lists and arrays stay unchanged",
             ("The velocity carries η inside it (as PyTorch's SGD has it): first the new v, then θ − v.",
              "With mu = 0 it is your sgd_step. Once it passes, bptrain train --workbook trains with momentum."),
             optional=True),
    Exercise("rel_error", "a, b", "the largest relative error, a float",
             ("rel_error = max |a − b| / max(1e−8, |a| + |b|), element by element (cs231n's)",),
             "a, b: the same shape; a float",
             ("np.maximum(1e-8, ...) keeps the denominator away from 0.",),
             optional=True),
    Exercise("numerical_gradient", "f, x, eps=1e-5", "∂f/∂x by central differences",
             ("∂f/∂x_i ≈ (f(x + ε e_i) − f(x − ε e_i)) / (2ε), one element at a time",),
             "x: any shape (float64); f(x): a float; the result: like x; x unchanged at the end",
             ("Nudge one element up, call f, nudge it down, call f, put it back.",
              "np.nditer(x, flags=['multi_index']) walks every index; work on a copy of x."),
             optional=True),
)

REQUIRED = tuple(exercise for exercise in EXERCISES if not exercise.optional)
BY_NAME = {exercise.name: exercise for exercise in EXERCISES}

_HEADER = '''\
"""Backpropagation, written by you: the functions below, in order.

Check them with:    bptrain exercises check {folder}
A hint:             bptrain exercises check {folder} --hint NAME
Train MNIST with them, once they pass:
                    bptrain train --workbook {path}

The notation is the README's math section: rows are samples, a mini-batch X is (B, n_0), W_l is
(n_{{l-1}}, n_l), b_l is (n_l,), lists hold layers 1..L (Ws[0] is W_1), Δ_l = ∂C/∂Z_l includes the
1/B of the mean over the batch. Y is one-hot, in the dtype of X. Keep the dtype you are given
(float32 in, float32 out) and never change an array you are given: the checker hands you
read-only ones. Use NumPy only.
"""

import numpy as np
'''


def render(folder: str = "DIR") -> str:
    """The workbook's text: every exercise a function whose body raises ``NotImplementedError``. A folder
    whose name could not stand in a docstring (quotes, backslashes, control characters) is called DIR."""
    if not folder.isprintable() or any(c in folder for c in '"\\'):
        folder = "DIR"
    parts = [_HEADER.format(folder=folder, path=f"{folder}/{WORKBOOK_NAME}")]
    optional_said = False
    for number, exercise in enumerate(EXERCISES, 1):
        if exercise.optional and not optional_said:
            parts.append("\n# ---- Optional: more exercises, checked apart (the ten above are what training needs)\n")
            optional_said = True
        parts.append(function_text(number, exercise))
    return "\n".join(parts)


def function_text(number: int, exercise: Exercise) -> str:
    """The exercise's function as the workbook has it: signature, docstring, NotImplementedError."""
    formula = "\n".join(f"        {line}" for line in exercise.formula)
    return (f"\ndef {exercise.signature}:\n"
            f'    """{number}. Returns {exercise.returns}.\n\n'
            f"{formula}\n\n"
            f"    Shapes: {exercise.shapes}.\n"
            f"{textwrap.fill('Hint: ' + exercise.hints[0], 100, initial_indent='    ', subsequent_indent='        ')}\n"
            f'    """\n'
            f"    raise NotImplementedError\n")


def write_new(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all, never replacing a file that is there
    (:func:`bptrain.data.model_io.write_new`)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise WorkbookError(f"cannot write {path}: {folder} is not a directory")
    try:
        write_file_new(path, text.encode("utf-8"))
    except FileExistsError:
        raise WorkbookError(f"{path} already exists; it is yours, so it is left as it is (give another folder, "
                            "or remove it to start again)") from None
    except OSError as exc:
        raise WorkbookError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def start(folder: Path, notebook_text: str | None = None) -> list[Path]:
    """Write ``folder/backprop.py`` (and the notebook, when given), making ``folder`` if needed. Nothing is
    written if either file is there already."""
    folder = Path(folder)
    targets = [folder / WORKBOOK_NAME] + ([folder / NOTEBOOK_NAME] if notebook_text is not None else [])
    for target in targets:
        if os.path.lexists(target):
            raise WorkbookError(f"{target} already exists; it is yours, so it is left as it is (give another "
                                "folder, or remove it to start again)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbookError(f"cannot make the folder {folder}: {exc.strerror or exc}") from None
    written = [write_new(targets[0], render(str(folder)))]
    if notebook_text is not None:
        written.append(write_new(targets[1], notebook_text))
    return written


# ------------------------------------------------------------------ hints, one more each time
HINTS_NAME = ".backprop-hints.json"
#: A hints file larger than this is not the one the checker wrote.
MAX_HINTS_BYTES = 64 * 1024


def next_hint(folder: Path, name: str) -> tuple[int, int, str]:
    """(its number, how many there are, the text) of the next hint for exercise ``name`` (the workbook has the
    first); ``folder/.backprop-hints.json`` counts the ones shown. After the last, the last again."""
    exercise = BY_NAME.get(name)
    if exercise is None:
        raise WorkbookError(f"no exercise is called {name!r}; the exercises are: "
                            f"{', '.join(e.name for e in EXERCISES)}")
    path = Path(folder) / HINTS_NAME
    shown = _read_hints(path)
    number = min(shown.get(name, 1) + 1, len(exercise.hints))
    shown[name] = number
    try:
        atomic_write(path, lambda handle: handle.write(json.dumps(shown, indent=1).encode()))
    except OSError:
        pass  # a read-only folder: the hint is still given, the count not kept
    return number, len(exercise.hints), exercise.hints[number - 1]


def _read_hints(path: Path) -> dict:
    try:
        if not path.is_file() or path.stat().st_size > MAX_HINTS_BYTES:
            return {}
        counts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(counts, dict):
        return {}
    return {key: value for key, value in counts.items()
            if key in BY_NAME and isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100}
