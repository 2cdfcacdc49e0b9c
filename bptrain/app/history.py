"""Reading a training history back: the learning speed per layer as arrays and as a table.

``bptrain train`` writes the history (``MODEL.history.json``); ``info`` prints its
table and ``plot`` draws it.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import BptrainError

#: History keys of the two measurements, per epoch: (bias, weight) norms.
MINI_BATCH_KEYS = ("grad_b_norm", "grad_w_norm")
FIXED_KEYS = ("fixed_grad_b_norm", "fixed_grad_w_norm")


def speed_columns(history: dict, source: str = "the history") -> dict | None:
    """The per-layer gradient norms of a history document as arrays, or None if it has none.

    Returns {"epoch": (E,), "grad_b", "grad_w": (E, L) mini-batch means, "fixed_b", "fixed_w": (E, L)
    on the fixed batch (NaN where an epoch lacks them), "initial_b", "initial_w": (L,) or None,
    "batch": size of the fixed batch or None}; epochs with neither measurement are left out.
    """
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
