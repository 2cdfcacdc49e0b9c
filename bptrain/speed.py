"""How fast each layer learns: the lengths of its gradients (Nielsen, ch. 5).

Nielsen calls ‖∂C/∂b_l‖, the length of layer l's bias gradient (= ‖δ^l‖
summed over the batch), the *speed of learning* of layer l: gradient descent
moves b_l by η times it. We record it and ‖∂C/∂W_l‖ for every layer:

* at the start, before any update, on the first :data:`INITIAL_BATCH` training
  images (as Nielsen does, on the gradient of their mean loss): :func:`batch_speed`, and again after every epoch on the same images;
* during training, averaged over a few sampled steps per epoch, each on its own
  mini-batch: :class:`SpeedRecorder`. A mini-batch gradient is noisier, so longer,
  than the 1,000-image one: compare layers with each other, and epochs with epochs.

In deep sigmoid networks the first layers' speeds are far below the last ones':
Δ_{l-1} = (Δ_l W_lᵀ) ⊙ σ'(Z_{l-1}) multiplies by σ' ≤ 1/4 once per layer on the way back.
"""

from __future__ import annotations

import numpy as np

from .blas import matmul_at_b
from .optim import NEGLIGIBLE_LR

#: Images in the fixed batch of the "initial" measurement (Nielsen's training_data[:1000]).
INITIAL_BATCH = 1000
#: Steps sampled per epoch, at most. Each costs one product per layer, A_{l-1}ᵀΔ_l (~0.1 ms
#: for 784-128-64-10 at batch 32), so 25 of them are a fraction of a percent of an epoch.
SAMPLES_PER_EPOCH = 25


def gradient_norms(grad_w, grad_b) -> dict:
    """{"grad_b_norm": [‖∂C/∂b_l‖ for l = 1..L], "grad_w_norm": [‖∂C/∂W_l‖ ...]} as Python floats."""
    return {"grad_b_norm": [float(np.linalg.norm(g)) for g in grad_b],
            "grad_w_norm": [float(np.linalg.norm(g)) for g in grad_w]}


def batch_speed(model, x: np.ndarray, y: np.ndarray) -> dict:
    """Gradient norms per layer for the mean loss over (x, y), at the model's current parameters."""
    x = x if x.dtype == model.dtype else x.astype(model.dtype)
    grad_w, grad_b = model.gradients(x, y)
    return {"batch": int(len(x)), **gradient_norms(grad_w, grad_b)}


class SpeedRecorder:
    """Sums ‖∂C/∂b_l‖ and ‖∂C/∂W_l‖ over the steps it is shown; :meth:`take_means` averages and resets.

    Training hands it a step's activations and deltas, which carry the learning
    rate (ηΔ_l, see ``MLP.backward``): the norms are divided by η, so they are
    those of the true gradient of the batch-mean loss whatever the optimizer and schedule.
    """

    samples_per_epoch = SAMPLES_PER_EPOCH

    def __init__(self, model):
        self.grad_w = [np.empty_like(w) for w in model.weights]
        self.grad_b = [np.empty_like(b) for b in model.biases]
        self.sum_w = np.zeros(model.n_layers)
        self.sum_b = np.zeros(model.n_layers)
        self.count = 0

    def record(self, activations, deltas, work, lr: float) -> None:
        if lr < NEGLIGIBLE_LR:  # deltas scaled by such an η have underflowed: no gradient to measure
            return
        for l, delta in enumerate(deltas):
            matmul_at_b(activations[l], delta, self.grad_w[l])      # η ∂C/∂W_l = A_{l-1}ᵀ(ηΔ_l)
            np.matmul(work.ones, delta, out=self.grad_b[l])         # η ∂C/∂b_l = Σ_rows ηΔ_l
            self.sum_w[l] += float(np.linalg.norm(self.grad_w[l])) / lr
            self.sum_b[l] += float(np.linalg.norm(self.grad_b[l])) / lr
        self.count += 1

    def take_means(self):
        """(mean ‖∂C/∂b_l‖ per layer, mean ‖∂C/∂W_l‖ per layer) of the steps since the last call; None if none."""
        if not self.count:
            return None, None
        means = (self.sum_b / self.count).tolist(), (self.sum_w / self.count).tolist()
        self.sum_b[:] = 0
        self.sum_w[:] = 0
        self.count = 0
        return means


# ---------------------------------------------------------------- reading it back
#: History keys of the two measurements, per epoch: (bias, weight) norms.
MINI_BATCH_KEYS = ("grad_b_norm", "grad_w_norm")
FIXED_KEYS = ("fixed_grad_b_norm", "fixed_grad_w_norm")


def speed_columns(history: dict, source: str = "the history") -> dict | None:
    """The per-layer gradient norms of a history document as arrays, or None if it has none.

    Returns {"epoch": (E,), "grad_b", "grad_w": (E, L) mini-batch means, "fixed_b", "fixed_w": (E, L)
    on the fixed batch (NaN where an epoch lacks them), "initial_b", "initial_w": (L,) or None,
    "batch": size of the fixed batch or None}; epochs with neither measurement are left out.
    """
    from .errors import BptrainError

    def norms(entry, key, where):
        values = entry.get(key)
        if values is None:
            return None
        if (not isinstance(values, list) or not values
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
            raise BptrainError(f"{source}: {where} has {key} = {values!r}, expected a list of numbers per layer")
        return [float(v) for v in values]

    epochs, rows = [], {key: [] for key in MINI_BATCH_KEYS + FIXED_KEYS}
    for i, record in enumerate(history.get("epochs") or []):
        if not isinstance(record, dict):
            continue  # validate_history reports it
        found = {key: norms(record, key, f"epoch entry {i}") for key in rows}
        if all(v is None for v in found.values()):
            continue
        epochs.append(record.get("epoch"))
        for key, values in found.items():
            rows[key].append(values)
    initial = history.get("initial")
    initial_b = initial_w = batch = None
    if isinstance(initial, dict):
        initial_b, initial_w = norms(initial, "grad_b_norm", "initial"), norms(initial, "grad_w_norm", "initial")
        batch = initial.get("batch")
    if not epochs and initial_b is None:
        return None
    lengths = {len(v) for values in rows.values() for v in values if v is not None}
    lengths |= {len(v) for v in (initial_b, initial_w) if v is not None}
    if len(lengths) != 1:
        raise BptrainError(f"{source}: the per-layer gradient norms do not all have the same number of layers")
    n_layers = lengths.pop()

    def matrix(values):
        return np.array([v if v is not None else [np.nan] * n_layers for v in values], np.float64).reshape(-1, n_layers)

    return {"epoch": np.asarray(epochs, np.float64), "n_layers": n_layers,
            "grad_b": matrix(rows["grad_b_norm"]), "grad_w": matrix(rows["grad_w_norm"]),
            "fixed_b": matrix(rows["fixed_grad_b_norm"]), "fixed_w": matrix(rows["fixed_grad_w_norm"]),
            "initial_b": None if initial_b is None else np.asarray(initial_b),
            "initial_w": None if initial_w is None else np.asarray(initial_w), "batch": batch}


def format_speed_table(history: dict, max_epochs: int = 10) -> str | None:
    """‖∂C/∂b_l‖ per layer (columns): at the start and after up to ``max_epochs`` epochs on the fixed
    batch, and the mean over each epoch's sampled mini-batches; None if the history has none."""
    columns = speed_columns(history)
    if columns is None:
        return None
    n_layers = columns["n_layers"]
    names = [f"layer {l}" if l < n_layers else f"layer {l} (out)" for l in range(1, n_layers + 1)]
    lines = [f"{'epoch':>8}  {'measured on':<14}" + "".join(f"{name:>15}" for name in names)]
    fixed = f"{columns['batch']} images" if columns["batch"] else "fixed batch"

    def row(label, where, values):
        if values is not None and not np.isnan(values).all():
            lines.append(f"{label:>8}  {where:<14}" + "".join(f"{v:>15.3e}" for v in values))

    row("initial", fixed, columns["initial_b"])
    count = len(columns["epoch"])
    for i in sorted(set(np.linspace(0, count - 1, min(count, max_epochs)).round().astype(int))) if count else []:
        epoch = str(int(columns["epoch"][i]))
        row(epoch, fixed, columns["fixed_b"][i])
        row(epoch, "mini-batches", columns["grad_b"][i])
    notes = []
    if columns["initial_b"] is not None:
        notes.append(f"initial: before the first update; {fixed}: the first training images, after each epoch")
        if n_layers >= 3 and columns["initial_b"][0] > 0:
            ratio = columns["initial_b"][n_layers - 2] / columns["initial_b"][0]
            notes.append(f"at the start the last hidden layer learns {ratio:.3g}x as fast as the first")
    if count:
        notes.append("mini-batches: mean over the epoch's sampled steps")
    lines.append("; ".join(notes))
    return "\n".join(lines)
