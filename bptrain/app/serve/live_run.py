"""One training run of the page, in a thread of its own: the state the page sees, the knobs, the snapshots.

The run is ``bptrain train``'s: :func:`bptrain.engines.train` with the same engine, loop and history
records; this adds the watching and the knobs through the loop's :class:`~bptrain.core.training.Callbacks`.
The training thread keeps a small state under a lock (the running loss, each epoch's record, where it is,
and every 0.3 s or so a float32 copy of the parameters); request threads read only that state, never the
engine's live arrays. Pause, resume, stop, the learning rate and the momentum (Adam: β1) are applied
between groups of steps (``Callbacks.control``, about 1/100 of an epoch apart); a learning rate set by
hand replaces the schedule for the rest of the run, and each epoch's record lists the changes.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np

from ... import engines
from ...core.errors import TrainingDiverged
from ...core.learning_speed import INITIAL_BATCH, batch_speed
from ...core.network import MLP
from ...core.training import Callbacks, EpochRecord, LoopState, TrainResult, TrainSettings
from ..run_identity import parameters_sha256
from ..history import training_metadata
from ..metrics import confusion_matrix
from .errors import Conflict, NotFound
from .snapshots import MAX_SNAPSHOTS, SNAPSHOT_BYTES, Snapshot, float32_copy, thin_evenly, weight_tiles

#: Running-loss points per epoch (the loop reports progress up to 100 times an epoch).
LOSS_POINTS_PER_EPOCH = 20

#: Seconds between live copies of the parameters, at least; a copy may take at most COPY_SHARE of the time.
COPY_INTERVAL = 0.3
COPY_SHARE = 0.02
ACTIVE = ("running", "paused")


class RunStopped(KeyboardInterrupt):
    """Stop pressed on the page, or the server is stopping: the loop keeps the best model, as for Ctrl-C."""


@dataclass
class Knobs:
    """What the page asked the training thread to do, and how far the thread has taken it."""

    pause: bool = False
    stop: bool = False
    lr: float | None = None
    momentum: float | None = None
    asked: int = 0  # control requests so far
    taken: int = 0  # of which the training thread has applied


class LiveRun(Callbacks):
    """One training run: its thread, the state the page sees, and the knobs.

    Everything below ``lock`` (the owner's condition) is written by the training thread in the
    callbacks and read by request threads; the model itself is touched by the training thread only,
    until the run is over.
    """

    def __init__(self, owner, run_id: int, model: MLP, settings: TrainSettings, engine: str,
                 init: str | None, first_epoch: int, start_accuracy: float | None, resume: LoopState | None = None,
                 manual_lr: float | None = None, continued: dict | None = None, initial_sha256: str | None = None):
        self.owner, self.id, self.model, self.settings = owner, run_id, model, settings
        self.resume = resume  # a stopped run's state, continued exactly
        self.continued = continued  # how it continues the network it starts from, for the page to say
        self.loop_state: LoopState | None = None  # a copy of the state at the end of the last epoch
        self.loop_params: tuple[list, list] | None = None  # and of the parameters then
        self.engine, self.init, self.first_epoch = engine, init, first_epoch
        # as train records it; a run continued exactly keeps the one it started from
        self.initial_sha256 = initial_sha256 or parameters_sha256(model.weights, model.biases)
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
        self.manual_lr: float | None = manual_lr
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
        self.saved = None  # where the page last saved it (a run the server stops unsaved is lost: it warns)
        if resume is not None:
            self.records = list(resume.history)
            self.best_epoch, self.best_val_accuracy = resume.best_epoch, resume.best_val_accuracy
            self.initial_speed = resume.initial_speed
            self.images_before_epoch = 0
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
        if self.resume is not None:
            self.snapshots[0].epoch = self.resume.epoch
            self.best = self.resume.best
        elif self.first_epoch > 1:
            self.best = ([w.copy() for w in model.weights], [b.copy() for b in model.biases])
        self.thread.start()

    def _train(self) -> None:
        status, message, result = "failed", None, None
        try:
            if self.resume is None:
                x, y = self.owner.dataset.train
                self.initial_speed = batch_speed(self.model, x[:INITIAL_BATCH], y[:INITIAL_BATCH])
            result = engines.train(self.model, self.owner.dataset, self.settings, engine=self.engine,
                                   progress=False, callbacks=[self], first_epoch=self.first_epoch,
                                   resume=self.resume)
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

    def epoch_state(self, state: LoopState) -> None:
        """Keep a copy of where the run stands, so that a stop can be continued exactly (as a checkpoint)."""
        optimizer = dict(state.optimizer or {})
        optimizer["arrays"] = [np.array(a) for a in optimizer.get("arrays", [])]
        self.loop_state = LoopState(state.epoch, state.best_epoch, state.best_val_accuracy, state.best,
                                    state.epochs_without_improvement, list(state.history), state.initial_speed,
                                    optimizer, dict(state.rng) if state.rng else None)
        self.loop_params = ([w.copy() for w in self.model.weights], [b.copy() for b in self.model.biases])

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
                "progress": self.progress_event(), "proposed_name": self.proposed_name(),
                "continued": self.continued}

    def proposed_name(self) -> str:
        return f"model-{'-'.join(map(str, self.model.sizes))}.npy"

    def snapshot(self, epoch: int) -> Snapshot:
        for snapshot in self.snapshots:
            if snapshot.epoch == epoch:
                return snapshot
        kept = ", ".join(str(s.epoch) for s in self.snapshots)
        raise NotFound(f"no snapshot of epoch {epoch} in this run (kept: {kept})")

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
        """A network over float32 parameters the run keeps (a snapshot, the live copy): it shares them, for
        reading only, so a prediction or a confusion matrix costs no copy of the network."""
        return MLP(self.model.sizes, self.model.loss, weights=weights, biases=biases, dtype=np.float32,
                   activation=self.model.activation, copy=False)

    # -------------------------------------------------------------- saving
    def model_to_save(self) -> tuple[MLP, dict, TrainResult]:
        """(the run's model as `train` would save it now, its metadata, the result its history is written
        from): the best epoch so far, the current parameters before any epoch ended; once over, the model
        the loop left."""
        with self.lock:
            if self.status in ("diverged", "failed"):
                raise Conflict(f"the run {self.status}; nothing to save (as `bptrain train`, which writes no file "
                               "then)")
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
