"""The history file, ``MODEL.history.json``: what a run records, written and read in this one place.

A run's record (:func:`training_metadata`) goes into the model file's metadata and
into the history, beside every epoch's record. ``train``, the page and ``sweep``
write it (:func:`write_history`); ``plot``, ``compare``, ``info`` and the page
read it back (:func:`load_history`, :func:`read_history_document`), and the
learning speed per layer comes out of it as arrays and as a table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.errors import BptrainError
from ..data.json_text import parse_json
from ..data.model_io import atomic_write
from .paths import is_history_file

HISTORY_SUFFIX = ".history.json"
#: What every epoch entry must hold.
HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "val_accuracy")

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


def history_path(out: Path) -> Path:
    """Where the history of the model file ``out`` goes: beside it, NAME.history.json."""
    name = out.name[:-4] if out.name.endswith(".npy") else out.name
    return out.with_name(name + HISTORY_SUFFIX)


def training_metadata(settings, result, dataset, init, first_epoch: int,
                       initial_sha256: str, run_id: str | None = None) -> dict:
    """What the model file and the history record about the run (``run_id``: the run its checkpoints name)."""
    return {
        "run_id": run_id,
        "bptrain_version": __version__,
        "init": init,
        "settings": settings.to_dict(),
        # the saved parameters are those of the best epoch: that many epochs trained them
        # (epochs are numbered across resumes, so --resume continues from here)
        "epochs_trained": result.best_epoch or first_epoch - 1,
        "epochs_run": first_epoch - 1 + len(result.history),
        "best_epoch": result.best_epoch,
        "val_accuracy": None if math.isnan(result.best_val_accuracy) else result.best_val_accuracy,
        "data": dataset.source,
        "initial_parameters_sha256": initial_sha256,
        **(dataset.metadata() if hasattr(dataset, "metadata") else {}),  # its classes: names, label values
    }


def write_history(path: Path, result, metadata: dict, model) -> None:
    """Write the run's history atomically: every epoch's record, the run's record, and the network."""
    document = {
        "epochs": [vars(record) for record in result.history],
        "initial": result.initial_speed,  # per-layer gradient norms before the first update
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "interrupted": result.interrupted,
        **{k: metadata.get(k) for k in ("settings", "bptrain_version", "data", "run_id")},
        # the network too, so that a history alone says what it is a history of (bptrain compare)
        "sizes": list(model.sizes), "loss": model.loss, "activation": model.activation, "init": metadata["init"],
        "dtype": model.dtype.name, "initial_parameters_sha256": metadata["initial_parameters_sha256"],
    }
    text = json.dumps(document, indent=2)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def load_history(path) -> dict:
    """Read a history JSON file (as written by ``bptrain train``) and check it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BptrainError(f"no history file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BptrainError(f"cannot read history file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    document = parse_json(text, str(path), BptrainError)
    validate_history(document, source=str(path))
    return document


def validate_history(history, source: str = "the history") -> dict:
    """Check a history document and return its columns as float arrays.

    Returns ``{"epoch", "train_loss", "val_loss", "val_accuracy", "lr",
    "seconds"}`` (``lr`` and ``seconds`` are None when no epoch records them) and
    ``"best_epoch"``: the document's, or the first epoch of highest validation
    accuracy when the document does not say.
    """
    if not isinstance(history, dict):
        raise BptrainError(f"{source} must be a JSON object with an \"epochs\" list, "
                           f"found {type(history).__name__}")
    if "epochs" not in history:
        raise BptrainError(f"{source} has no \"epochs\" list; is it a bptrain history file?")
    epochs = history["epochs"]
    if not isinstance(epochs, list):
        raise BptrainError(f"{source}: \"epochs\" must be a list, found {type(epochs).__name__}")
    if not epochs:
        raise BptrainError(f"{source} has no epochs to plot (training stopped before the first epoch ended)")
    columns = {key: [] for key in (*HISTORY_KEYS, "lr", "seconds")}
    for i, record in enumerate(epochs):
        if not isinstance(record, dict):
            raise BptrainError(f"{source}: epoch entry {i} must be an object, found {type(record).__name__}")
        missing = [key for key in HISTORY_KEYS if key not in record]
        if missing:
            raise BptrainError(f"{source}: epoch entry {i} is missing {', '.join(missing)}")
        for key, values in columns.items():
            value = record.get(key)
            if value is None and key not in HISTORY_KEYS:
                values.append(math.nan)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BptrainError(f"{source}: epoch entry {i} has {key} = {value!r}, expected a number")
            values.append(float(value))
    result = {key: np.asarray(values, dtype=np.float64) for key, values in columns.items()}
    for key in ("lr", "seconds"):
        if np.isnan(result[key]).all():
            result[key] = None
    if not np.isfinite(result["epoch"]).all() or np.any(np.diff(result["epoch"]) <= 0):
        raise BptrainError(f"{source}: epoch numbers must be finite and increasing")

    best = history.get("best_epoch")
    if best is None or best == 0:
        accuracy = result["val_accuracy"]
        best = int(result["epoch"][np.nanargmax(accuracy)]) if np.isfinite(accuracy).any() else None
    elif isinstance(best, bool) or not isinstance(best, int):
        raise BptrainError(f"{source}: best_epoch = {best!r}, expected an integer epoch number")
    elif best < result["epoch"][0]:
        # a resumed run none of whose epochs beat the model it started from: the best is the
        # resumed model itself, which this history does not hold, so no epoch is marked
        best = None
    elif best not in result["epoch"]:
        raise BptrainError(f"{source}: best_epoch {best} is not one of its epochs "
                           f"({int(result['epoch'][0])}..{int(result['epoch'][-1])})")
    result["best_epoch"] = best
    return result


def read_history_document(path: Path) -> dict:
    """A history file as ``bptrain train`` writes it; one-line errors for anything else."""
    if not is_history_file(path):
        raise BptrainError(f"{path} is not a bptrain history (a JSON object with an \"epochs\" list)")
    return parse_json(path.read_bytes(), str(path), BptrainError)
