"""Checkpoints of a training run: its whole state at the end of every epoch, to continue it exactly.

What decides what a run does next is all kept: the current parameters (not only the best), the
optimizer's state in the form the engine keeps it, the epoch reached and the plan (every setting, the
schedule's length), the random generator's state the next epoch's preparation starts from, the best
parameters with their epoch and accuracy, the early-stopping count and the history. The file is
:mod:`bptrain.data.checkpoint_io`'s (no pickle, versioned, checksummed); it lives beside the model
(``NAME.checkpoint.npz``), is replaced at the end of every epoch, and is removed when the run completes,
so one that is there belongs to a run that was stopped.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core.errors import BptrainError, SettingError
from ..core.network import MLP
from ..core.training import Callbacks, EpochRecord, LoopState, TrainSettings
from ..data.checkpoint_io import SUFFIX, CheckpointError, load_checkpoint, save_checkpoint
from ..data.loader import DataOptions
from . import checkpoint_checks

#: What a resumed run may change of its plan (said in one line); any other setting is refused.
CHANGEABLE = ("epochs",)
#: The settings of a run that are not TrainSettings: the network's and the engine.
RUN_KEYS = ("sizes", "loss", "activation", "dtype", "engine")


def checkpoint_path(out: Path) -> Path:
    """Where the checkpoint of the run that writes model file ``out`` goes: beside it, NAME.checkpoint.npz."""
    name = out.name[:-4] if out.name.endswith(".npy") else out.name
    return out.with_name(name + SUFFIX)


def is_checkpoint_name(path) -> bool:
    return str(path).endswith(SUFFIX)


class CheckpointWriteError(BptrainError):
    """The checkpoint could not be written; ``state`` is where the run stood (its best model included)."""

    def __init__(self, message: str, state: LoopState):
        super().__init__(message)
        self.state = state


@dataclass
class Checkpoint:
    """A checkpoint read back: the run it belongs to, the network as it was, and where the loop stood."""

    path: Path
    run: dict  # run_id, the network's keys, engine, settings, first_epoch, initial_sha256, data, out, history
    model: MLP
    state: LoopState

    @property
    def settings(self) -> TrainSettings:
        return TrainSettings(**self.run["settings"])

    @property
    def last_epoch(self) -> int:
        return self.run["first_epoch"] + self.run["settings"]["epochs"] - 1

    @property
    def out(self) -> Path:
        """The model file the run writes: beside its checkpoint, under the name it was given, wherever the
        checkpoint is read from (another directory, a copied folder)."""
        return self.path.parent / Path(self.run["out"]).name

    @property
    def history(self) -> Path:
        """The run's history: recorded relative to the model's folder (older checkpoints: beside the model,
        or as typed), so it moves with the checkpoint too; an absolute path stays as it is."""
        recorded, out = Path(self.run["history"]), Path(self.run["out"])
        if recorded.is_absolute():
            return recorded
        if recorded.parent == out.parent:
            return self.path.parent / recorded.name
        return Path(os.path.normpath(self.path.parent / recorded))

    @property
    def data_options(self) -> DataOptions:
        """How the run read its data (:func:`recorded_data_options`; older checkpoints: as the files say)."""
        recorded = self.run.get("data_options") or {}
        resize, names = recorded.get("resize"), recorded.get("class_names")
        return DataOptions(recorded.get("label_column"), recorded.get("transposed"),
                           tuple(resize) if resize is not None else None, Path(names) if names is not None else None)

    @property
    def data(self) -> str | None:
        """Where to read the run's data: a relative path as it was read where the run started (if that
        is still there), else as recorded. The run records (and names) it as it did."""
        recorded, started = self.run.get("data"), self.run.get("cwd")
        if recorded and started and not Path(recorded).is_absolute() and (Path(started) / recorded).exists():
            return str(Path(started) / recorded)
        return recorded


class CheckpointWriter(Callbacks):
    """Writes the run's checkpoint at the end of every epoch (the loop's :meth:`epoch_state`), before the
    epoch is reported, and keeps how long each write took and how big the file is.

    ``written`` is the state the file on disk holds (``resumed``: the one a continued run started from,
    until this run writes its own). A stop can land between the loop's history growing and the file being
    written: what is saved then is ``written``'s, so that the model, its history and the checkpoint agree.
    ``signals`` (a :class:`.stopping.StopSignals`) hold a stop during a write and its record.
    """

    def __init__(self, path: Path, run: dict, model: MLP, signals=None, resumed: LoopState | None = None):
        self.path, self.run, self.model, self.signals = Path(path), run, model, signals
        self.seconds: list[float] = []
        self.bytes = 0
        self.written = resumed

    def epoch_state(self, state: LoopState) -> None:
        started = time.perf_counter()
        with self.signals.held() if self.signals is not None else nullcontext():
            try:
                self.bytes = write(self.path, self.run, self.model, state)
            except OSError as exc:  # a full disk stops the run: going on would lose what a stop could not keep
                raise CheckpointWriteError(f"cannot write the checkpoint {self.path}: {exc.strerror or exc}",
                                           state) from None
            self.written = replace(state, history=list(state.history), optimizer=None)
        self.seconds.append(time.perf_counter() - started)

    def remove(self) -> None:
        """The run completed: its checkpoint is no live one any more."""
        self.path.unlink(missing_ok=True)


def recorded_data_options(options: DataOptions) -> dict:
    """The data options a run was given, as its checkpoint records them (a class-names file by its whole path)."""
    recorded = {name: value for name, value in options._asdict().items() if value is not None}
    if "resize" in recorded:
        recorded["resize"] = list(recorded["resize"])
    if "class_names" in recorded:
        recorded["class_names"] = str(Path(recorded["class_names"]).resolve())
    return recorded


def write(path: Path, run: dict, model: MLP, state: LoopState) -> int:
    """Write ``state`` of ``run`` (whose network is ``model``) to ``path``; returns the file's size."""
    optimizer = dict(state.optimizer or {})
    optimizer_arrays = optimizer.pop("arrays", [])
    arrays = [*model.weights, *model.biases, *state.best[0], *state.best[1], *optimizer_arrays]
    meta = {
        "run": run,
        "epoch": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_accuracy": None if np.isnan(state.best_val_accuracy) else state.best_val_accuracy,
        "epochs_without_improvement": state.epochs_without_improvement,
        "history": [vars(record) for record in state.history],
        "initial_speed": state.initial_speed,
        "optimizer": optimizer,
        "optimizer_arrays": len(optimizer_arrays),
        "rng": state.rng,
    }
    return save_checkpoint(path, meta, arrays)


def read(path: Path) -> Checkpoint:
    """A checkpoint and the state it holds; one line of :class:`CheckpointError` if it cannot be one."""
    meta, arrays = load_checkpoint(path)
    try:
        checkpoint_checks.check(meta, arrays)  # nothing it says is believed unchecked
    except checkpoint_checks.Untrusted as exc:
        raise CheckpointError(f"{path} cannot be continued: {exc}") from None
    try:
        run = meta["run"]
        sizes = tuple(run["sizes"])
        n_layers = len(sizes) - 1
        expected = 4 * n_layers + meta["optimizer_arrays"]
        if len(arrays) != expected:
            raise ValueError(f"{len(arrays)} arrays, not {expected}")
        weights, biases = arrays[:n_layers], arrays[n_layers:2 * n_layers]
        best = (arrays[2 * n_layers:3 * n_layers], arrays[3 * n_layers:4 * n_layers])
        model = MLP(sizes, run["loss"], weights=weights, biases=biases, dtype=np.dtype(run["dtype"]),
                    activation=run["activation"])
        optimizer = {**meta["optimizer"], "arrays": arrays[4 * n_layers:]}
        accuracy = meta["best_val_accuracy"]
        state = LoopState(int(meta["epoch"]), int(meta["best_epoch"]), float("nan") if accuracy is None else accuracy,
                          ([np.array(w) for w in best[0]], [np.array(b) for b in best[1]]),
                          int(meta["epochs_without_improvement"]),
                          [EpochRecord(**record) for record in meta["history"]], meta["initial_speed"],
                          optimizer, meta["rng"])
        TrainSettings(**run["settings"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path} is not a checkpoint this bptrain can continue ({exc})") from None
    return Checkpoint(Path(path), run, model, state)


def check_plan_kept(checkpoint: Checkpoint, request, spell) -> list[str]:
    """The run a checkpoint continues keeps its plan: a setting the user gave (in ``request``, a
    :class:`.run_request.RunRequest`) that differs is refused, except :data:`CHANGEABLE` ones, which are
    taken and said. Returns the lines that say so."""
    recorded = {**checkpoint.run["settings"], **{key: checkpoint.run[key] for key in RUN_KEYS}}
    recorded["sizes"] = tuple(recorded["sizes"])
    notes = []
    for name in sorted(request.given):
        if name not in recorded:
            continue
        value = request.value(name)
        if value == recorded[name]:
            continue
        if name == "epochs":
            if checkpoint.run["first_epoch"] + value - 1 <= checkpoint.state.epoch:
                raise SettingError(f"{spell('epochs')} {value} ends at epoch {checkpoint.run['first_epoch'] + value - 1}, "
                                   f"but the run has trained to epoch {checkpoint.state.epoch} already", field="epochs")
            notes.append(f"note: the run was planned for {recorded['epochs']} epochs; it now runs {value} "
                         f"(to epoch {checkpoint.run['first_epoch'] + value - 1}), and its schedule stretches to match")
            continue
        raise SettingError(f"{spell(name)} {value} conflicts with the checkpoint's run ({name} "
                           f"{recorded[name]}): drop {spell(name)} to continue it exactly, or --resume the model "
                           "file to start a new plan from its weights", field=name)
    return notes


def checkpoint_state(model_path: Path, meta: dict) -> str:
    """What ``bptrain info`` says of the checkpoint beside a model: none, or the stopped run it continues."""
    path = checkpoint_path(model_path)
    if not path.exists():
        return "none (the run that wrote this model completed, or wrote no checkpoint)"
    try:
        checkpoint = read(path)
    except CheckpointError as exc:
        return f"{path} cannot be continued: {exc}"
    same = "of the run that wrote this model" if checkpoint.run.get("run_id") == meta.get("run_id") else \
        "of another run"
    return (f"{path}, {same}: stopped after epoch {checkpoint.state.epoch} of {checkpoint.last_epoch}; "
            f"bptrain train --resume {path} continues it exactly and writes {checkpoint.out}")
