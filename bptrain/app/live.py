"""Training from the page of ``bptrain serve``: one run at a time in a background thread, watched live.

The run is ``bptrain train``'s: the settings are the options table's, checked by its rules with the
same one-line messages (:func:`bptrain.app.config.check_config`), and the training is
:func:`bptrain.engines.train` with the same engine, loop and history records. This module adds the
watching and the knobs, through the loop's :class:`~bptrain.core.training.Callbacks`:

- The training thread keeps a small state under a lock: the running loss (about 20 points an epoch),
  each epoch's record, where it is in the epoch and, every 0.3 s or so, a float32 copy of the
  parameters. Request threads read only that state, never the engine's live arrays.
- Each client of the event stream (:meth:`LiveTraining.stream`) is sent what changed since it last
  heard, at most every :data:`EVENT_INTERVAL` seconds, and the first layer's weights at most every
  :data:`TILES_INTERVAL`: watching costs the training next to nothing, however many tabs are open.
- Pause, resume, stop, the learning rate and the momentum (Adam: β1) go to the training thread,
  which applies them between groups of steps (``Callbacks.control``, about 1/100 of an epoch apart).
  A learning rate set by hand replaces the schedule for the rest of the run (set again at the start
  of every epoch); each epoch's record lists the changes (``controls``) and the rate it ended with.
- The parameters at the start and at the end of every epoch are kept as float32 snapshots, at most
  :data:`MAX_SNAPSHOTS` and :data:`SNAPSHOT_BYTES`, thinned evenly, for the replay slider.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import re
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import engines
from ..core.errors import BptrainError, ConfigError, TrainingDiverged
from ..core.learning_speed import INITIAL_BATCH, batch_speed
from ..core.network import AUTO_INIT, DTYPES, MLP, default_init
from ..core.optimizers import check_adam, check_new_momentum, check_sgd
from ..core.training import Callbacks, EpochRecord, TrainResult, TrainSettings
from ..data.model_io import model_record, save_model
from ..data.shifts import is_square_image
from . import memory
from .compare import parameters_sha256
from .config import check_config
from .history import history_path, training_metadata, write_history
from .metrics import confusion_matrix
from .options import FORM_OPTIONS, OPTIONS_BY_NAME, SETTINGS_FIELDS, TRAIN_OPTIONS
from .paths import is_history_file, is_model_file, same_file
from .server import Predictor, RequestError, json_safe

#: The settings of the page's form (the options table's FORM_OPTIONS); the files are options of `serve`.
FILE_OPTIONS = frozenset(option.name for option in TRAIN_OPTIONS if option.group == "Files")
PAGE_OPTIONS = FORM_OPTIONS
PAGE_NAMES = frozenset(option.name for option in PAGE_OPTIONS)
#: The form's first row; the other settings fold away under their group's heading.
MAIN_OPTIONS = ("sizes", "activation", "loss", "optimizer", "lr", "momentum", "beta1", "batch_size", "epochs",
                "augment")

#: What a page may ask for (checked by :func:`check_run_fits`).
MAX_PARAMETERS = 50_000_000
MAX_LAYERS = 32
MAX_EPOCHS = 1000

#: Replay snapshots: at most this many, and at most this many bytes together (float32 copies).
MAX_SNAPSHOTS = 64
SNAPSHOT_BYTES = 256 * 1024 * 1024
#: First-layer units drawn as tiles, at most.
MAX_TILES = 256
#: Running-loss points per epoch (the loop reports progress up to 100 times an epoch).
LOSS_POINTS_PER_EPOCH = 20

#: Seconds between live copies of the parameters, at least; a copy may take at most COPY_SHARE of the time.
COPY_INTERVAL = 0.3
COPY_SHARE = 0.02
#: Each client of the event stream hears at most this often (seconds): a little over twice a second ...
EVENT_INTERVAL = 0.45
#: ... and gets the first layer's weights at most this often (with the same batch of events, when they changed).
TILES_INTERVAL = 0.4
#: A comment line this often keeps a silent stream open through proxies and tells a dead client apart.
HEARTBEAT_SECONDS = 15.0
#: Event streams open at once, at most (each holds a thread of the server).
MAX_STREAMS = 32
#: Events kept for clients that are behind; one further behind gets the whole state again.
LOG_LENGTH = 1000
#: How long a control request waits for the training thread to take it (seconds).
CONTROL_WAIT = 5.0

#: A file name the page may save under: plain, in the --out-dir folder.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.npy")
CONTROL_ACTIONS = ("pause", "resume", "stop")
ACTIVE = ("running", "paused")


class RunStopped(KeyboardInterrupt):
    """Stop pressed on the page, or the server is stopping: the loop keeps the best model, as for Ctrl-C."""


class TooBig(BptrainError):
    """A run the page may not start: the network, the batch or the epochs are beyond the page's limits."""

    def __init__(self, message: str, setting: str):
        super().__init__(message)
        self.setting = setting  # the form field to show the message beside


def check_run_fits(sizes, settings: TrainSettings, n_train: int, data=None, engine: str = "fast") -> None:
    """Refuse, in one line, a run this server should not start: the one place a page's run is checked
    against the machine before anything is allocated. Raises :class:`TooBig` (a 400 beside the field).

    The cheap bounds first (a page request must not ask for an absurd network, batch or number of
    epochs), then the memory the run needs in this process (which holds the data already), the kept
    replay snapshots included, against what the machine has available (:mod:`.memory`).
    """
    n_parameters = sum(m * n + n for m, n in zip(sizes[:-1], sizes[1:]))
    if n_parameters > MAX_PARAMETERS:
        raise TooBig(f"sizes {','.join(map(str, sizes))} make {n_parameters:,} parameters; the page trains "
                     f"networks of at most {MAX_PARAMETERS:,} (use `bptrain train` for bigger ones)", "sizes")
    if len(sizes) - 1 > MAX_LAYERS:
        raise TooBig(f"sizes has {len(sizes) - 1} layers; the page trains at most {MAX_LAYERS}", "sizes")
    if settings.batch_size > n_train:
        raise TooBig(f"batch_size {settings.batch_size} is larger than the {n_train} training samples",
                     "batch_size")
    if settings.epochs > MAX_EPOCHS:
        raise TooBig(f"epochs {settings.epochs} is more than the page runs at once ({MAX_EPOCHS}); "
                     "continue the model for more", "epochs")
    snapshot_bytes = 4 * n_parameters
    kept = min(MAX_SNAPSHOTS, max(1, SNAPSHOT_BYTES // max(1, snapshot_bytes)))
    needs = memory.estimate(sizes, settings.batch_size, engine=engine, optimizer=settings.optimizer,
                            momentum=settings.momentum, augment=settings.augment,
                            distorts=any(getattr(settings, name) for name in memory.DISTORTION_SETTINGS),
                            data=None if data is None else memory.DataShape.of(data),
                            kept_snapshots=kept, in_process=True)
    message = memory.refusal(needs)
    if message is not None:
        raise TooBig(message, "sizes")


# ------------------------------------------------------------------ small pieces
def float32_copy(arrays) -> list[np.ndarray]:
    return [np.array(a, np.float32) for a in arrays]


def weight_tiles(w1: np.ndarray, max_tiles: int = MAX_TILES) -> dict | None:
    """The first layer's weights as 28x28 tiles for the page, or None when the inputs are not square images.

    Each unit's incoming weights (a column of W1) become one tile, scaled to its own largest |w| (as
    ``bptrain plot`` draws them), quantised to a byte: 128 is 0, 255 is +max, 1 is −max. The bytes of
    all tiles, unit after unit, row by row, go as one base64 string.
    """
    n_inputs, n_units = w1.shape
    side = math.isqrt(n_inputs)
    if side * side != n_inputs or n_units == 0:
        return None
    count = min(n_units, max_tiles)
    tiles = np.asarray(w1[:, :count], np.float32).T
    limits = np.abs(tiles).max(axis=1, keepdims=True)
    scaled = tiles / np.where(limits > 0, limits, 1)
    quantised = np.rint(128 + 127 * scaled).clip(1, 255).astype(np.uint8)
    return {"side": side, "count": count, "units": int(n_units),
            "tiles": base64.b64encode(quantised.tobytes()).decode("ascii")}


def sse(event: dict) -> bytes:
    """One Server-Sent Event: a ``data:`` line of JSON and a blank line."""
    return b"data: " + json.dumps(json_safe(event), separators=(",", ":")).encode("utf-8") + b"\n\n"


def thin_evenly(snapshots: list, keep: int) -> None:
    """Drop snapshots until ``keep`` are left, in place: the first and the last stay, and each drop takes
    the one whose neighbours are closest together, so the kept epochs stay about evenly spread."""
    while len(snapshots) > max(keep, 1):
        if len(snapshots) <= 2:
            del snapshots[0]
            continue
        gaps = [(snapshots[i + 1].epoch - snapshots[i - 1].epoch, i) for i in range(1, len(snapshots) - 1)]
        del snapshots[min(gaps)[1]]


def model_file_bytes(model: MLP, metadata: dict) -> bytes:
    """The bytes ``save_model`` writes, for a download."""
    buffer = io.BytesIO()
    np.save(buffer, model_record(model, metadata), allow_pickle=False)
    return buffer.getvalue()


@dataclass
class Snapshot:
    """The parameters at one point of the run (the end of ``epoch``; the start is the end of epoch − 1)."""

    epoch: int
    weights: list
    biases: list
    record: EpochRecord | None = None
    confusion: list | None = None  # of the validation split: the loop's at the end of an epoch, else when asked for
    tiles: dict | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.weights + self.biases)

    def describe(self) -> dict:
        record = self.record
        return {"epoch": self.epoch,
                "val_accuracy": record.val_accuracy if record else None,
                "val_loss": record.val_loss if record else None}


@dataclass
class Knobs:
    """What the page asked the training thread to do, and how far the thread has taken it."""

    pause: bool = False
    stop: bool = False
    lr: float | None = None
    momentum: float | None = None
    asked: int = 0  # control requests so far
    taken: int = 0  # of which the training thread has applied


# ------------------------------------------------------------------ one run
class LiveRun(Callbacks):
    """One training run: its thread, the state the page sees, and the knobs.

    Everything below ``lock`` (the owner's condition) is written by the training thread in the
    callbacks and read by request threads; the model itself is touched by the training thread only,
    until the run is over.
    """

    def __init__(self, owner: "LiveTraining", run_id: int, model: MLP, settings: TrainSettings, engine: str,
                 init: str | None, first_epoch: int, start_accuracy: float | None):
        self.owner, self.id, self.model, self.settings = owner, run_id, model, settings
        self.engine, self.init, self.first_epoch = engine, init, first_epoch
        self.initial_sha256 = parameters_sha256(model.weights, model.biases)  # as train records it
        self.last_epoch = first_epoch + settings.epochs - 1
        self.lock = owner.lock
        data = owner.dataset
        self.n_train, self.batch_size = len(data.train.x), settings.batch_size
        self.status, self.message = "running", None
        self.records: list[EpochRecord] = []
        self.loss_points: list[list[float]] = []
        self.epoch, self.batch, self.batches, self.running_loss = first_epoch, 0, 0, None
        self.lr = settings.lr
        self.momentum = settings.beta1 if settings.optimizer == "adam" else settings.momentum
        self.manual_lr: float | None = None
        self.knobs = Knobs()
        self.progress_version = 0
        self.started_at = self.epoch_started_at = time.monotonic()
        self.paused_seconds = self.epoch_paused_seconds = 0.0
        self.paused_since: float | None = None
        self.images_before_epoch = 0
        self.ended_at: float | None = None
        self._next_point = 1
        self._next_copy = 0.0
        self.live_version = 0
        self.live: tuple[list, list] | None = None  # float32 copy: the network as it is now
        self.live_speed: list | None = None  # this epoch's mean ‖∂C/∂b_l‖ so far
        self._tiles: tuple[int, dict | None] | None = None
        self._confusion: list | None = None  # of the last validation, from the loop's own predictions
        self.snapshots: list[Snapshot] = []
        self.max_snapshots = MAX_SNAPSHOTS
        self.best_epoch = first_epoch - 1 if first_epoch > 1 else 0
        self.best_val_accuracy = start_accuracy if start_accuracy is not None else float("nan")
        self.best: tuple[list, list] | None = None  # the model's dtype: what a save writes
        self.initial_speed: dict | None = None
        self.result: TrainResult | None = None
        self.compute_lock = threading.Lock()  # tiles and confusion matrices are computed once
        self.thread = threading.Thread(target=self._train, name=f"bptrain-live-run-{run_id}", daemon=True)

    # -------------------------------------------------------------- the thread
    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def start(self) -> None:
        model = self.model
        weights, biases = float32_copy(model.weights), float32_copy(model.biases)
        self.snapshots.append(Snapshot(self.first_epoch - 1, weights, biases))
        self.max_snapshots = max(1, min(MAX_SNAPSHOTS, SNAPSHOT_BYTES // max(1, self.snapshots[0].nbytes)))
        self.live, self.live_version = (weights, biases), 1
        if self.first_epoch > 1:
            self.best = ([w.copy() for w in model.weights], [b.copy() for b in model.biases])
        self.thread.start()

    def _train(self) -> None:
        status, message, result = "failed", None, None
        try:
            x, y = self.owner.dataset.train
            self.initial_speed = batch_speed(self.model, x[:INITIAL_BATCH], y[:INITIAL_BATCH])
            result = engines.train(self.model, self.owner.dataset, self.settings, engine=self.engine,
                                   progress=False, callbacks=[self], first_epoch=self.first_epoch)
            status = "stopped" if result.interrupted else "finished"
            message = self._summary(result)
        except TrainingDiverged as exc:
            status, message = "diverged", str(exc)
        except MemoryError:
            message = "out of memory while training; try a smaller --batch-size or network"
        except BaseException as exc:  # a bug must not pass silently, nor take the server down
            message = f"training failed: {type(exc).__name__}: {exc}".splitlines()[0]
            traceback.print_exc(file=sys.stderr)
        if status in ("finished", "stopped"):
            final = (float32_copy(self.model.weights), float32_copy(self.model.biases))
        else:  # the live parameters may be NaN: show the last epoch that ended
            final = (self.snapshots[-1].weights, self.snapshots[-1].biases)
        with self.lock:
            self.result, self.status, self.message = result, status, message
            self.ended_at = time.monotonic()
            if self.paused_since is not None:
                self.paused_seconds += self.ended_at - self.paused_since
                self.paused_since = None
            self.live, self.live_version = final, self.live_version + 1
            self.progress_version += 1
            kind = "error" if status in ("diverged", "failed") else "status"
            self.owner.log({"type": kind, "run": self.id, "status": status, "message": message})
        self.owner.run_ended(self)

    def _summary(self, result: TrainResult) -> str:
        if result.best_epoch == 0:
            return "stopped before the first epoch ended"
        best = f"best validation accuracy {100 * result.best_val_accuracy:.2f}% at epoch {result.best_epoch}"
        if result.interrupted:
            return f"{best} (the best so far)"
        return best + (" (early stopping)" if result.stopped_early else "")

    # -------------------------------------------------------------- the callbacks
    def epoch_started(self, epoch: int, n_batches: int) -> None:
        with self.lock:
            self.epoch, self.batches, self.batch = epoch, n_batches, 0
            self.epoch_started_at, self.epoch_paused_seconds = time.monotonic(), 0.0
            self._next_point = 1
            self.progress_version += 1
            self.lock.notify_all()

    def progress(self, epoch: int, batches_done: int, running_loss: float) -> None:
        with self.lock:
            self.batch, self.running_loss = batches_done, running_loss
            if batches_done * LOSS_POINTS_PER_EPOCH >= self._next_point * self.batches:
                self.loss_points.append([epoch - 1 + batches_done / self.batches, running_loss])
                self._next_point = batches_done * LOSS_POINTS_PER_EPOCH // self.batches + 1
            self.progress_version += 1
            self.lock.notify_all()

    def control(self, steps) -> None:
        now = time.monotonic()
        if self.knobs.asked != self.knobs.taken or now >= self._next_copy or self.knobs.pause or self.knobs.stop:
            self._take_knobs(steps)
            if now >= self._next_copy:
                self._copy_live(steps)
        if self.manual_lr is not None and steps.lr != self.manual_lr:
            steps.set_lr(self.manual_lr)  # set by hand: it replaces the schedule, epoch after epoch
        self.lr = steps.lr

    def _take_knobs(self, steps) -> None:
        with self.lock:
            while True:
                knobs = self.knobs
                if knobs.lr is not None:
                    steps.set_lr(knobs.lr)
                    self.manual_lr, self.lr, knobs.lr = knobs.lr, knobs.lr, None
                if knobs.momentum is not None:
                    steps.set_momentum(knobs.momentum)
                    self.momentum, knobs.momentum = knobs.momentum, None
                if knobs.taken != knobs.asked:
                    knobs.taken = knobs.asked
                    self.progress_version += 1
                    self.lock.notify_all()
                if knobs.stop:
                    raise RunStopped
                if not knobs.pause:
                    break
                if self.status != "paused":
                    self.status, self.paused_since = "paused", time.monotonic()
                    self.live = (float32_copy(self.model.weights), float32_copy(self.model.biases))
                    self.live_version += 1
                    self.owner.log({"type": "status", "run": self.id, "status": "paused", "message": None})
                self.lock.wait()
            if self.status == "paused":
                paused = time.monotonic() - self.paused_since
                self.paused_seconds += paused
                self.epoch_paused_seconds += paused
                self.status, self.paused_since = "running", None
                self.owner.log({"type": "status", "run": self.id, "status": "running", "message": None})

    def _copy_live(self, steps) -> None:
        """A float32 copy of the parameters for the request threads, at most COPY_SHARE of the time."""
        started = time.monotonic()
        copy = (float32_copy(self.model.weights), float32_copy(self.model.biases))
        speed, _ = steps.speed_means()
        took = time.monotonic() - started
        with self.lock:
            self.live, self.live_version, self.live_speed = copy, self.live_version + 1, speed
        self._next_copy = started + max(COPY_INTERVAL, took / COPY_SHARE)

    def validated(self, epoch: int, predictions: np.ndarray) -> None:
        labels = self.owner.dataset.validation.y
        self._confusion = confusion_matrix(labels, predictions, self.model.sizes[-1]).tolist()

    def epoch_ended(self, record: EpochRecord, improved: bool) -> None:
        snapshot = Snapshot(record.epoch, float32_copy(self.model.weights), float32_copy(self.model.biases), record,
                            confusion=self._confusion)
        best = ([w.copy() for w in self.model.weights], [b.copy() for b in self.model.biases]) if improved else None
        with self.lock:
            self.records.append(record)
            self.images_before_epoch += self.n_train
            if improved:
                self.best, self.best_epoch, self.best_val_accuracy = best, record.epoch, record.val_accuracy
            self.snapshots.append(snapshot)
            thin_evenly(self.snapshots, self.max_snapshots)
            self.live, self.live_version = (snapshot.weights, snapshot.biases), self.live_version + 1
            self.live_speed = None
            self.owner.log({"type": "epoch", "run": self.id, "record": vars(record), "improved": improved,
                            "best_epoch": self.best_epoch, "best_val_accuracy": self.best_val_accuracy,
                            "snapshots": [s.epoch for s in self.snapshots]})

    # -------------------------------------------------------------- what the page sees (under the lock)
    def progress_event(self) -> dict:
        now = self.ended_at or time.monotonic()
        paused_now = now - self.paused_since if self.paused_since is not None else 0.0
        in_epoch = max(1e-9, now - self.epoch_started_at - self.epoch_paused_seconds - paused_now)
        images_in_epoch = min(self.n_train, self.batch * self.batch_size)
        active = max(1e-9, now - self.started_at - self.paused_seconds - paused_now)
        done = self.images_before_epoch + images_in_epoch
        total = (self.last_epoch - self.first_epoch + 1) * self.n_train
        rate = done / active
        eta = (total - done) / rate if rate > 0 and self.active else (0.0 if not self.active else None)
        return {"type": "progress", "run": self.id, "status": self.status, "epoch": self.epoch,
                "first_epoch": self.first_epoch, "last_epoch": self.last_epoch, "batch": self.batch,
                "batches": self.batches, "running_loss": self.running_loss,
                "images_per_second": images_in_epoch / in_epoch if self.batch else None,
                "eta_seconds": eta, "elapsed_seconds": active, "lr": self.lr, "momentum": self.momentum,
                "lr_by_hand": self.manual_lr is not None, "speed": self.live_speed}

    def state(self) -> dict:
        settings = self.settings.to_dict()
        return {"run": self.id, "status": self.status, "message": self.message,
                "sizes": list(self.model.sizes), "loss": self.model.loss, "activation": self.model.activation,
                "engine": self.engine, "settings": settings, "first_epoch": self.first_epoch,
                "last_epoch": self.last_epoch, "n_train": self.n_train,
                "momentum_name": "beta1" if self.settings.optimizer == "adam" else "momentum",
                "has_momentum": bool(self.momentum),
                "epochs": [vars(r) for r in self.records], "loss_points": [list(p) for p in self.loss_points],
                "snapshots": [s.epoch for s in self.snapshots], "best_epoch": self.best_epoch,
                "best_val_accuracy": self.best_val_accuracy, "initial_speed": self.initial_speed,
                "progress": self.progress_event(), "proposed_name": self.proposed_name()}

    def proposed_name(self) -> str:
        return f"model-{'-'.join(map(str, self.model.sizes))}.npy"

    def snapshot(self, epoch: int) -> Snapshot:
        for snapshot in self.snapshots:
            if snapshot.epoch == epoch:
                return snapshot
        kept = ", ".join(str(s.epoch) for s in self.snapshots)
        raise RequestError(404, f"no snapshot of epoch {epoch} in this run (kept: {kept})")

    # -------------------------------------------------------------- computed once, outside the lock
    def tiles(self) -> tuple[int, dict | None]:
        """(version, tiles) of the live copy."""
        with self.lock:
            version, (weights, _) = self.live_version, self.live
        with self.compute_lock:
            if self._tiles is None or self._tiles[0] != version:
                self._tiles = (version, weight_tiles(weights[0]))
            return self._tiles

    def snapshot_tiles(self, snapshot: Snapshot) -> dict | None:
        with self.compute_lock:
            if snapshot.tiles is None:
                snapshot.tiles = weight_tiles(snapshot.weights[0]) or {}
            return snapshot.tiles or None

    def confusion(self, snapshot: Snapshot) -> list:
        """The validation split's confusion matrix at ``snapshot`` (rows: true class, columns: predicted)."""
        with self.compute_lock:
            if snapshot.confusion is None:
                x, y = self.owner.dataset.validation
                network = self.network(snapshot.weights, snapshot.biases)
                snapshot.confusion = confusion_matrix(y, network.predict(x), self.model.sizes[-1]).tolist()
            return snapshot.confusion

    def network(self, weights, biases) -> MLP:
        return MLP(self.model.sizes, self.model.loss, weights=weights, biases=biases, dtype=np.float32,
                   activation=self.model.activation)

    # -------------------------------------------------------------- saving
    def model_to_save(self) -> tuple[MLP, dict, TrainResult]:
        """(the run's model as `train` would save it now, its metadata, the result its history is written
        from): the best epoch so far, the current parameters before any epoch ended; once over, the model
        the loop left."""
        with self.lock:
            if self.status in ("diverged", "failed"):
                raise RequestError(409, f"the run {self.status}; nothing to save (as `bptrain train`, which "
                                        "writes no file then)")
            if self.active:
                params = self.best or (list(self.live[0]), list(self.live[1]))
                result = TrainResult(list(self.records), self.best_epoch, self.best_val_accuracy,
                                     interrupted=True, initial_speed=self.initial_speed)
            else:
                params, result = (self.model.weights, self.model.biases), self.result
        model = MLP(self.model.sizes, self.model.loss, weights=params[0], biases=params[1], dtype=self.model.dtype,
                    activation=self.model.activation)
        metadata = training_metadata(self.settings, result, self.owner.dataset, self.init, self.first_epoch,
                                      self.initial_sha256)
        return model, metadata, result


# ------------------------------------------------------------------ the server's side
class LiveTraining:
    """Training for one server: the data, the form's presets, the current run, and the event log.

    ``dataset``: what runs train on (None: ``data_problem`` says why there is none). ``model``/``meta``:
    the model `serve` was given, if any (continued by ``{"continue": true}``). ``presets``: the form's
    values, {option name: value}, from serve's command line and config. ``out_dir``: where the page
    saves. ``out``: where each run's best model is saved when it ends (None: not saved). ``inputs``:
    {option: [paths]} the server reads, which no save may replace.
    """

    def __init__(self, *, dataset=None, data_problem: str | None = None, model: MLP | None = None,
                 meta: dict | None = None, presets: dict | None = None, out_dir: Path = Path("."),
                 out: Path | None = None, inputs: dict | None = None, say=None):
        self.dataset, self.data_problem = dataset, data_problem
        self.base_model, self.base_meta = model, dict(meta or {})
        self.presets = {option.name: option.default_value() for option in PAGE_OPTIONS}
        self.presets.update({k: v for k, v in (presets or {}).items() if k in PAGE_NAMES})
        if dataset is not None and not is_square_image(dataset.n_features) and "augment" not in (presets or {}):
            self.presets["augment"] = 0  # as train: shifts need square images
        self.out_dir, self.out = Path(out_dir), out
        self.inputs = {option: [Path(p) for p in paths if p is not None] for option, paths in (inputs or {}).items()}
        self.say = say or (lambda message: None)
        self.lock = threading.Condition()
        self.run: LiveRun | None = None
        self._run_ids = itertools.count(1)
        self._start_lock = threading.Lock()
        self._events: deque = deque(maxlen=LOG_LENGTH)
        self._seq = 0
        self._streams = 0
        self._closing = False
        self._predictors: dict = {}

    # -------------------------------------------------------------- the form
    def form(self) -> dict:
        """The form of the page: every setting with its kind, limits, help and preset value."""
        fields = []
        for option in PAGE_OPTIONS:
            click_type = option.kind.click_type()
            value = self.presets.get(option.name)
            if option.name == "sizes" and value is not None and not isinstance(value, str):
                value = ",".join(map(str, value))
            entry = {"name": option.name, "flag": option.cli_name, "group": option.group, "help": option.help,
                     "kind": {"an integer": "integer", "a number": "number", "true or false": "flag",
                              "sizes": "sizes"}.get(option.kind.expected, "choice"),
                     "value": value, "main": option.name in MAIN_OPTIONS}
            if hasattr(click_type, "choices"):
                entry["choices"] = list(click_type.choices)
            for bound in ("min", "max"):
                if getattr(click_type, bound, None) is not None:
                    entry[bound] = getattr(click_type, bound)
            fields.append(entry)
        data = None
        if self.dataset is not None:
            data = {"train": len(self.dataset.train.x), "validation": len(self.dataset.validation.x),
                    "features": self.dataset.n_features, "classes": self.dataset.n_classes,
                    "name": Path(self.dataset.source).name}
        base = self._base()
        return {"options": fields, "can_train": self.dataset is not None, "reason": self.data_problem,
                "data": data, "groups": list(dict.fromkeys(o.group for o in PAGE_OPTIONS)),
                "continue": None if base is None else {"sizes": list(base[0].sizes), "loss": base[0].loss,
                                                       "activation": base[0].activation,
                                                       "epochs_trained": base[1]},
                "continue_default": self.base_model is not None,
                "limits": {"parameters": MAX_PARAMETERS, "layers": MAX_LAYERS, "epochs": MAX_EPOCHS}}

    def _base(self):
        """(the model a run continues, its epochs trained, its init): the last run's if it ended well, else
        serve's MODEL's."""
        run = self.run
        if run is not None and run.status in ("finished", "stopped") and run.result is not None:
            return run.model, run.result.best_epoch or run.first_epoch - 1, run.init
        if self.base_model is not None:
            return self.base_model, int(self.base_meta.get("epochs_trained") or 0), self.base_meta.get("init")
        return None

    # -------------------------------------------------------------- starting a run
    def start(self, document) -> dict:
        """Check the page's settings as `train` checks its options, and start a run (POST /api/train)."""
        if self.dataset is None:
            raise RequestError(409, f"cannot train: {self.data_problem}")
        values, continuing, given = self._checked(document)
        with self._start_lock:
            with self.lock:
                if self.run is not None and self.run.active:
                    raise RequestError(409, f"a run is already in progress (epoch {self.run.epoch} of "
                                            f"{self.run.last_epoch}); stop it before starting another")
            model, init, first_epoch, start_accuracy = self._model_for(values, continuing, given)
            settings = self._settings(values)
            run = LiveRun(self, next(self._run_ids), model, settings, values["engine"], init, first_epoch,
                          start_accuracy)
            with self.lock:
                if self._closing:
                    raise RequestError(503, "the server is stopping")
                self.run = run
                self._predictors.clear()
                run.start()
                started = self._state()
                self.log({"type": "state", "state": started})  # every stream hears the run from its start
                return started

    def _checked(self, document) -> tuple[dict, bool, set]:
        if not isinstance(document, dict):
            raise RequestError(400, 'expected a JSON object of settings, like {"epochs": 5, "lr": 0.1}')
        raw = dict(document)
        continuing = raw.pop("continue", False)
        if not isinstance(continuing, bool):
            raise RequestError(400, f'"continue" must be true or false, got {continuing!r}', "continue")
        checked = {}
        for key, value in raw.items():
            name = key.replace("-", "_") if isinstance(key, str) else key
            if name in FILE_OPTIONS or name in ("resume", "no_download", "quiet"):
                flag = OPTIONS_BY_NAME[name].cli_name
                raise RequestError(400, f"{key} is not a setting of the page: the files are `bptrain serve`'s "
                                        f"own options ({flag}, --out-dir); requests carry no file paths", name)
            if name not in PAGE_NAMES:
                raise RequestError(400, f"unknown setting {key!r} (known: {', '.join(sorted(PAGE_NAMES))})")
            try:
                checked.update(check_config({key: value}, None))
            except ConfigError as exc:
                raise RequestError(400, str(exc), name) from None
        values = {**self.presets, **checked}
        if isinstance(values["sizes"], str):
            values["sizes"] = tuple(int(n) for n in values["sizes"].split(","))
        return values, continuing, set(checked)

    def _model_for(self, values: dict, continuing: bool, given: set):
        """(model, init, first epoch, the start's validation accuracy): a new network, or the one continued."""
        data = self.dataset
        if continuing:
            base = self._base()
            if base is None:
                raise RequestError(400, "there is no model to continue: start serve with a MODEL, or train one "
                                        "first", "continue")
            model, trained, base_init = base
            for name, kept, words in (("sizes", model.sizes, "sizes"), ("loss", model.loss, "loss"),
                                      ("activation", model.activation, "hidden units")):
                value = values[name]
                if name in given and (tuple(value) if name == "sizes" else value) != kept:
                    shown = (lambda v: ",".join(map(str, v))) if name == "sizes" else str
                    raise RequestError(400, f"{name} {shown(value)} conflicts with the continued model's {words} "
                                            f"{shown(kept)}; leave {name} out when continuing", name)
            sizes = model.sizes
        else:
            sizes = tuple(values["sizes"])
        if sizes[0] != data.n_features:
            raise RequestError(400, f"sizes has input width {sizes[0]} but the images have {data.n_features} "
                                    "features", "sizes")
        if sizes[-1] != data.n_classes:
            raise RequestError(400, f"sizes has {sizes[-1]} output classes but the data has labels for "
                                    f"{data.n_classes} classes", "sizes")
        self._check_square(values, given)
        settings = self._settings(values)
        try:
            check_run_fits(sizes, settings, len(data.train.x), data)
        except TooBig as exc:
            raise RequestError(400, str(exc), exc.setting) from None
        dtype = DTYPES[values["dtype"]]
        try:
            if continuing:
                model = model.astype(dtype)  # a copy: the served model stays as it was
                accuracy = float(np.mean(model.predict(data.validation.x) == data.validation.y))
                return model, base_init, trained + 1, accuracy
            init = default_init(values["activation"]) if values["init"] == AUTO_INIT else values["init"]
            model = MLP(sizes, values["loss"], dtype=dtype, init=init, seed=values["seed"],
                        activation=values["activation"])
            return model, init, 1, None
        except MemoryError:
            raise RequestError(400, f"out of memory creating a {'-'.join(map(str, sizes))} network; try a smaller "
                                    "network", "sizes") from None

    def _check_square(self, values: dict, given: set) -> None:
        """Shifts and distortions move square images, as `train` says."""
        if is_square_image(self.dataset.n_features):
            return
        distortions = [name for name in ("elastic_alpha", "affine_rotate", "affine_scale", "affine_shear",
                                         "affine_shift") if values[name]]
        if distortions:
            raise RequestError(400, f"{', '.join(distortions)} distort square images, but the inputs have "
                                    f"{self.dataset.n_features} features", distortions[0])
        if values["augment"]:
            if "augment" in given:
                raise RequestError(400, f"augment shifts square images, but the inputs have "
                                        f"{self.dataset.n_features} features; use augment 0", "augment")
            values["augment"] = 0

    @staticmethod
    def _settings(values: dict) -> TrainSettings:
        try:
            settings = TrainSettings(**{name: values[name] for name in SETTINGS_FIELDS & values.keys()})
            if settings.optimizer == "sgd":
                check_sgd(settings.momentum, settings.nesterov, settings.weight_decay)
            else:
                check_adam(settings.beta1, settings.beta2, settings.eps, settings.weight_decay)
        except ValueError as exc:
            message = str(exc)
            name = next((n for n in ("nesterov", "momentum", "beta1", "beta2", "eps", "weight_decay")
                         if n.replace("_", " ") in message.lower()), None)
            raise RequestError(400, message, name) from None
        return settings

    # -------------------------------------------------------------- the knobs
    def control(self, document) -> dict:
        """Pause, resume, stop, or set the learning rate and the momentum (POST /api/train/control)."""
        if not isinstance(document, dict):
            raise RequestError(400, 'expected a JSON object like {"action": "pause"} or {"lr": 0.05}')
        unknown = [key for key in document if key not in ("action", "lr", "momentum")]
        if unknown:
            raise RequestError(400, f"unknown key {unknown[0]!r}; send \"action\" (pause, resume, stop), "
                                    "\"lr\" and/or \"momentum\"")
        if not document:
            raise RequestError(400, 'send {"action": "pause" | "resume" | "stop"} and/or {"lr": ..., "momentum": ...}')
        action = document.get("action")
        if "action" in document and action not in CONTROL_ACTIONS:
            raise RequestError(400, f'"action" must be "pause", "resume" or "stop", got {action!r}', "action")
        lr = document.get("lr")
        if "lr" in document:
            kind = OPTIONS_BY_NAME["lr"].kind
            problem = "must be a number" if not kind.has_type(lr) else kind.check(lr)
            if problem:
                raise RequestError(400, f"lr {problem}, got {lr!r}", "lr")
            lr = float(lr)
        with self.lock:
            run = self.run
            if run is None or not run.active:
                raise RequestError(409, "no run is in progress; press Train to start one")
            momentum = document.get("momentum")
            if "momentum" in document:
                name = "beta1" if run.settings.optimizer == "adam" else "momentum"
                if not OPTIONS_BY_NAME[name].kind.has_type(momentum):
                    raise RequestError(400, f"momentum must be a number, got {momentum!r}", "momentum")
                try:
                    check_new_momentum(run.momentum if name == "momentum" else 1.0, float(momentum), name)
                except ValueError as exc:
                    raise RequestError(400, str(exc), "momentum") from None
                run.knobs.momentum = float(momentum)
            if lr is not None:
                run.knobs.lr = lr
            if action == "stop":
                run.knobs.stop = True
            elif action in ("pause", "resume"):
                run.knobs.pause = action == "pause"
            run.knobs.asked += 1
            mine = run.knobs.asked
            self.lock.notify_all()
            deadline = time.monotonic() + CONTROL_WAIT  # a stop waits for the run to end, the rest to be taken
            while run.active and (run.knobs.taken < mine or action == "stop") \
                    and (wait := deadline - time.monotonic()) > 0:
                self.lock.wait(wait)
            return {"run": run.id, "status": run.status, "taken": run.knobs.taken >= mine, "lr": run.lr,
                    "lr_by_hand": run.manual_lr is not None, "momentum": run.momentum}

    # -------------------------------------------------------------- reading
    def state(self) -> dict:
        """The whole state of the current run (GET /api/train; the stream's "state" event)."""
        with self.lock:
            return self._state()

    def _state(self) -> dict:
        if self.run is None:
            tiles = weight_tiles(self.base_model.weights[0]) if self.base_model is not None else None
            return {"run": None, "status": "idle", "can_train": self.dataset is not None,
                    "reason": self.data_problem, "tiles": tiles}
        return {**self.run.state(), "can_train": self.dataset is not None, "reason": self.data_problem}

    def describe(self) -> dict:
        """GET /api/model: the network the drawing pad reads now."""
        return self.predictor().describe()

    def predictor(self, snapshot: int | None = None) -> Predictor:
        """The network a drawing is read by: the run's as it is now (or at a kept epoch), else serve's model."""
        with self.lock:
            run = self.run
            if run is None:
                if self.base_model is None:
                    raise RequestError(409, "there is no network yet: press Train to make one")
                if snapshot is not None:
                    raise RequestError(404, "no run yet, so no snapshots: press Train first")
                key, params = ("served",), None
            elif snapshot is not None:
                chosen = run.snapshot(snapshot)
                key, params = ("snapshot", run.id, snapshot), (chosen.weights, chosen.biases)
            else:
                key, params = ("live", run.id, run.live_version), run.live
            predictor = self._predictors.get(key)
            accuracy = run.best_val_accuracy if run is not None else None
        if predictor is not None:
            return predictor
        if params is None:
            predictor = Predictor(self.base_model, self.base_meta)
        else:
            meta = {"val_accuracy": None if accuracy is None or math.isnan(accuracy) else accuracy}
            try:
                predictor = Predictor(run.network(*params), meta)
            except BptrainError as exc:
                raise RequestError(409, str(exc)) from None
        with self.lock:
            if len(self._predictors) >= 8:
                self._predictors.pop(next(iter(self._predictors)))
            self._predictors[key] = predictor
        return predictor

    def snapshots(self) -> dict:
        """GET /api/train/snapshots: the kept epochs of the current run."""
        with self.lock:
            run = self._current_run()
            return {"run": run.id, "max": run.max_snapshots, "bytes_each": run.snapshots[0].nbytes,
                    "snapshots": [s.describe() for s in run.snapshots]}

    def snapshot(self, epoch: int) -> dict:
        """GET /api/train/snapshot?epoch=K: one kept epoch, as the page shows it."""
        with self.lock:
            run = self._current_run()
            snapshot = run.snapshot(epoch)
        return {"run": run.id, **snapshot.describe(), "record": vars(snapshot.record) if snapshot.record else None,
                "tiles": run.snapshot_tiles(snapshot), "confusion": run.confusion(snapshot)}

    def snapshot_file(self, epoch: int) -> tuple[bytes, str]:
        """GET /api/train/snapshot?epoch=K&format=npy: that epoch's parameters as a bptrain model file."""
        with self.lock:
            run = self._current_run()
            snapshot = run.snapshot(epoch)
        model = run.network(snapshot.weights, snapshot.biases)
        metadata = {"settings": run.settings.to_dict(), "epochs_trained": epoch, "snapshot_of_run": run.id,
                    "val_accuracy": snapshot.record.val_accuracy if snapshot.record else None}
        return model_file_bytes(model, metadata), run.proposed_name()[:-4] + f"-epoch{epoch}.npy"

    def _current_run(self) -> LiveRun:
        if self.run is None:
            raise RequestError(409, "no run yet: press Train to start one")
        return self.run

    # -------------------------------------------------------------- saving
    def save(self, document) -> dict:
        """POST /api/train/save {"name": "model.npy"}: the run's model and history into --out-dir."""
        if not isinstance(document, dict) or set(document) - {"name"}:
            raise RequestError(400, 'expected {"name": "NAME.npy"}')
        with self.lock:
            run = self._current_run()
        name = document.get("name", run.proposed_name())
        if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
            raise RequestError(400, f"the name must be a plain file name ending in .npy (letters, digits, '.', "
                                    f"'_', '-'), like {run.proposed_name()}; got {name!r}", "name")
        path = self.out_dir / name
        history = self.out_dir / (name[:-4] + ".history.json")
        for target, holds_ours, what in ((path, is_model_file, "a bptrain model"),
                                         (history, is_history_file, "a bptrain history")):
            for option, paths in self.inputs.items():
                if any(same_file(target, p) for p in paths):
                    raise RequestError(400, f"{target.name} is a file this server reads ({option}); choose "
                                            "another name", "name")
            if target.exists() and (not target.is_file() or (target.stat().st_size and not holds_ours(target))):
                raise RequestError(400, f"{target.name} already exists in the output folder and is not {what}; "
                                        "bptrain replaces only its own files: choose another name", "name")
        model, metadata, result = run.model_to_save()
        self._write(model, metadata, result, path, history)
        return {"run": run.id, "saved": path.name, "history": history.name,
                "epochs_trained": metadata["epochs_trained"], "val_accuracy": metadata["val_accuracy"]}

    @staticmethod
    def _write(model: MLP, metadata: dict, result: TrainResult, path: Path, history: Path) -> None:
        try:
            save_model(model, path, metadata)
            write_history(history, result, metadata, model)
        except OSError as exc:
            raise RequestError(500, f"cannot write {exc.filename and Path(exc.filename).name or path.name}: "
                                    f"{exc.strerror or exc}") from None

    def model_file(self) -> tuple[bytes, str]:
        """GET /api/train/model: the file "Save model" writes, for the browser to download."""
        with self.lock:
            run = self._current_run()
        model, metadata, _ = run.model_to_save()
        return model_file_bytes(model, metadata), run.proposed_name()

    def run_ended(self, run: LiveRun) -> None:
        """Called by a run's thread when it is over: with --out, its best model is saved there, as `train` does."""
        if self.out is None or run.status not in ("finished", "stopped"):
            return
        try:
            model, metadata, result = run.model_to_save()
            self._write(model, metadata, result, self.out, history_path(self.out))
            self.say(f"run {run.id} {run.status}: saved {self.out} ({run.message})")
        except (RequestError, BptrainError) as exc:
            self.say(f"run {run.id} {run.status}: could not save {self.out}: {exc}")

    # -------------------------------------------------------------- the event stream
    def log(self, event: dict) -> None:
        """Append an event every client must hear (call with the lock held)."""
        self._seq += 1
        self._events.append((self._seq, event))
        self.lock.notify_all()

    def open_stream(self) -> None:
        with self.lock:
            if self._closing:
                raise RequestError(503, "the server is stopping")
            if self._streams >= MAX_STREAMS:
                raise RequestError(503, f"{MAX_STREAMS} event streams are open already; close a tab")
            self._streams += 1

    def close_stream(self) -> None:
        with self.lock:
            self._streams -= 1

    def stream(self):
        """One client's Server-Sent Events (bytes to write), from its own state: call :meth:`open_stream` first.

        The first event is the whole state; then each is what changed, at most every EVENT_INTERVAL
        seconds, and a heartbeat comment when nothing did for HEARTBEAT_SECONDS. Ends when the server closes.
        """
        client = {"seq": 0, "run": None, "points": 0, "progress": -1, "tiles": -1, "tiles_at": 0.0}
        with self.lock:
            first = self._welcome(client)
        yield sse(first)
        while True:
            deadline = time.monotonic() + HEARTBEAT_SECONDS
            with self.lock:
                while not self._closing:
                    news = self._news(client)
                    if news or (wait := deadline - time.monotonic()) <= 0:
                        break
                    self.lock.wait(min(wait, TILES_INTERVAL))
                if self._closing:
                    return
            sent_at = time.monotonic()
            if news:
                yield b"".join(sse(self._finished(event)) for event in news)
            else:
                yield b": heartbeat\n\n"
            time.sleep(max(0.0, sent_at + EVENT_INTERVAL - time.monotonic()))

    def _welcome(self, client: dict) -> dict:
        client.update(seq=self._seq, run=self.run.id if self.run else None, points=0, progress=-1, tiles=-1)
        state = self._state()
        if self.run is not None:
            client.update(points=len(self.run.loss_points), progress=self.run.progress_version)
        return {"type": "state", "state": state}

    def _news(self, client: dict) -> list:
        """What ``client`` has not heard yet (with the lock held)."""
        run = self.run
        if self._events and self._events[0][0] > client["seq"] + 1:
            return [self._welcome(client)]  # too far behind: everything again
        news = [event for seq, event in self._events if seq > client["seq"]]
        if (run.id if run else None) != client["run"]:  # a new run: from its start on, in order
            starts = [i for i, event in enumerate(news) if event["type"] == "state"
                      and event["state"]["run"] == run.id]
            if not starts:
                return [self._welcome(client)]
            news = news[starts[-1]:]
            client.update(run=run.id, points=0, progress=-1, tiles=-1)
        client["seq"] = self._seq
        if run is None:
            return news
        if run.progress_version != client["progress"]:
            event = run.progress_event()
            event["loss"] = run.loss_points[client["points"]:]
            client.update(progress=run.progress_version, points=len(run.loss_points))
            news.append(event)
        now = time.monotonic()
        if run.live_version != client["tiles"] and now - client["tiles_at"] >= TILES_INTERVAL:
            client.update(tiles=run.live_version, tiles_at=now)
            news.append({"type": "weights", "run": run.id, "epoch": run.epoch, "batch": run.batch,
                         "batches": run.batches, "status": run.status, "tiles": run})  # filled in outside the lock
        return news

    def _finished(self, event: dict) -> dict:
        """An event ready to send: the parts computed outside the lock (tiles, confusion matrices) added."""
        if event["type"] == "weights":
            return {**event, "tiles": event["tiles"].tiles()[1]}
        if event["type"] == "epoch":
            with self.lock:
                run = self.run
                snapshot = next((s for s in run.snapshots if s.epoch == event["record"]["epoch"]), None) \
                    if run is not None and run.id == event["run"] else None
            if snapshot is not None:
                return {**event, "confusion": run.confusion(snapshot)}
            return {**event, "confusion": None}
        return event

    # -------------------------------------------------------------- closing
    def close(self, timeout: float | None = None) -> LiveRun | None:
        """Stop the run (its thread saves to --out when asked) and end every event stream; returns the run
        that was stopped, if one was in progress."""
        with self.lock:
            self._closing = True
            run = self.run
            stopped = run if run is not None and run.active else None
            if stopped is not None:
                stopped.knobs.stop = True
                stopped.knobs.asked += 1
            self.lock.notify_all()
        if run is not None:
            run.thread.join(timeout)
        return stopped
