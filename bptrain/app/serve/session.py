"""Training from the page of ``bptrain serve``: one run at a time, its knobs, its files, and what the page reads.

The session knows nothing of HTTP: it takes and gives plain values, and refuses with domain errors
(:mod:`.errors`, :class:`~bptrain.core.errors.BptrainError`) that :mod:`.http` gives a status. A run is
checked by the rules every run follows (:mod:`bptrain.app.runs`) and the page's limits (:mod:`.form`),
trained by :mod:`.live_run`, watched through :mod:`.events`, replayed from :mod:`.snapshots`.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import BptrainError, SettingError
from ...core.network import DTYPES, MLP
from ...core.optimizers import check_new_momentum
from ...core.schedules import learning_rate
from ...core.training import LoopState, TrainResult, TrainSettings
from ...data.model_io import save_model
from .. import memory, runs
from ..history import history_path, write_history
from ..options import OPTIONS_BY_NAME
from ..paths import is_history_file, is_model_file
from ..run_request import RunRequest
from .errors import Conflict, NotFound, Unavailable, WriteFailed
from .events import EventLog
from .form import PAGE_NAMES, PAGE_OPTIONS, check_run_fits, page_form, read_settings, train_settings
from .live_run import LiveRun
from .predictor import Predictor
from .snapshots import model_file_bytes, weight_tiles

#: How long a control request waits for the training thread to take it (seconds).
CONTROL_WAIT = 5.0

#: A file name the page may save under: plain, in the --out-dir folder.
#: Networks kept ready to read drawings (they share the run's snapshots and live copy: no copies of their own).
MAX_PREDICTORS = 8
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.npy")
CONTROL_ACTIONS = ("pause", "resume", "stop")


@dataclass
class Start:
    """Where a run of the page starts (:meth:`LiveTraining._model_for`)."""

    model: MLP
    init: str | None
    first_epoch: int
    accuracy: float | None = None  # of the network it starts from, when it continues one
    resume: LoopState | None = None  # a stopped run's state, continued exactly
    manual_lr: float | None = None  # a learning rate the stopped run had set by hand
    continued: dict | None = None  # what the page says of how it continues
    initial_sha256: str | None = None  # of the parameters the run continued exactly started from


class LiveTraining:
    """Training for one server: the data, the form's presets, the current run, and the event log.

    ``dataset``: what runs train on (None: ``data_problem`` says why there is none). ``model``/``meta``:
    the model `serve` was given, if any (continued by ``{"continue": true}``). ``presets``: the form's
    values, {option name: value}, from serve's command line and config. ``out_dir``: where the page
    saves. ``out``: where each run's best model is saved when it ends (None: not saved). ``inputs``:
    {option: [paths]} the server reads, which no save may replace. ``history``: the served model's
    history (:func:`bptrain.app.history.load_history`), for the page's charts before any run.
    """

    def __init__(self, *, dataset=None, data_problem: str | None = None, model: MLP | None = None,
                 meta: dict | None = None, presets: dict | None = None, out_dir: Path = Path("."),
                 out: Path | None = None, inputs: dict | None = None, say=None, history: dict | None = None):
        self.dataset, self.data_problem = dataset, data_problem
        self.base_model, self.base_meta = model, dict(meta or {})
        self.base_history = history if model is not None else None
        self.presets = {option.name: option.default_value() for option in PAGE_OPTIONS}
        self.presets.update({k: v for k, v in (presets or {}).items() if k in PAGE_NAMES})
        if dataset is not None and "augment" not in (presets or {}):  # as train: the default shift needs square images
            self.presets["augment"] = runs.augment_for(TrainSettings(augment=self.presets["augment"]),
                                                       dataset.n_features, ())
        self.out_dir, self.out = Path(out_dir), out
        self.inputs = {option: [Path(p) for p in paths if p is not None] for option, paths in (inputs or {}).items()}
        self.say = say or (lambda message: None)
        self.lock = threading.Condition()
        self.run: LiveRun | None = None
        self._run_ids = itertools.count(1)
        self._start_lock = threading.Lock()
        self.events = EventLog(self)
        self.closing = False
        self._predictors: dict = {}

    # -------------------------------------------------------------- the form
    def form(self) -> dict:
        """The form of the page (GET /api/train/form): :func:`.form.page_form`, and whether it can train."""
        form = {**page_form(self.presets, self.dataset, self._base()), "can_train": self.dataset is not None,
                "reason": self.data_problem, "continue_default": self.base_model is not None}
        if form["continue"] is not None:
            form["continue"]["note"] = self._continue_note()
        return form

    def _continue_note(self) -> str:
        """What continuing does, said beside the box: the stopped run exactly, or a new plan from the weights."""
        run = self.run
        if run is not None and run.status == "stopped" and run.loop_state is not None:
            return (f"Continues the stopped run exactly at epoch {run.loop_state.epoch + 1}, with its momentum, "
                    "schedule and random streams, while its settings stay as they are; changed settings start a new "
                    "plan from its weights.")
        last = run.records[-1].lr if run is not None and run.records else self.base_meta.get("last_lr")
        was = f" (it last trained at {last:.4g})" if last is not None else ""
        return (f"Starts a new plan from these weights: the schedule starts again at the learning rate above{was}, "
                "the momentum from zero and the random streams from the seed.")

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
            raise Conflict(f"cannot train: {self.data_problem}")
        values, continuing, given = read_settings(document, self.presets)
        with self._start_lock:
            with self.lock:
                if self.run is not None and self.run.active:
                    raise Conflict(f"a run is already in progress (epoch {self.run.epoch} of {self.run.last_epoch}); "
                                   "stop it before starting another")
            start = self._model_for(values, continuing, given)
            run = LiveRun(self, next(self._run_ids), start.model, train_settings(values), values["engine"], start.init,
                          start.first_epoch, start.accuracy, start.resume, start.manual_lr, start.continued,
                          start.initial_sha256)
            with self.lock:
                if self.closing:
                    raise Unavailable("the server is stopping")
                self.run = run
                self._predictors.clear()
                run.start()
                started = self.state_locked()
                self.log({"type": "state", "state": started})  # every stream hears the run from its start
                return started

    def _model_for(self, values: dict, continuing: bool, given: set) -> "Start":
        """Where a run starts: a new network, the one on show with a new plan, or the stopped run continued
        exactly; checked by the rules every run follows (:mod:`bptrain.app.runs`) and the page's own limits."""
        data = self.dataset
        if continuing and self._stopped_run_continues(values):
            return self._continue_exactly(values)
        if continuing:
            base = self._base()
            if base is None:
                raise SettingError("there is no model to continue: start serve with a MODEL, or train one first",
                                   field="continue")
            model, trained, base_init = base
            runs.check_continued_model(model, RunRequest.from_options(values, given), runs.plain, resuming=False)
            sizes = model.sizes
        else:
            sizes = tuple(values["sizes"])
        runs.check_model_fits_data(sizes, data, "sizes")
        values["augment"] = runs.augment_for(train_settings(values), data.n_features, given, runs.plain)
        settings = train_settings(values)
        runs.check_optimizer(settings)
        check_run_fits(sizes, settings, len(data.train.x), data, values["engine"])
        if continuing:
            try:
                model = model.astype(DTYPES[values["dtype"]])  # a copy: the served model stays as it was
            except MemoryError:
                raise memory.MemoryLimitError(f"out of memory copying the {'-'.join(map(str, sizes))} network",
                                              field="sizes") from None
            accuracy = float(np.mean(model.predict(data.validation.x) == data.validation.y))
            last = self.run.records[-1].lr if self.run is not None and self.run.records else self.base_meta.get("last_lr")
            was = f" (it last trained at {last:.4g})" if last is not None else ""
            continued = {"exact": False, "from_epoch": trained + 1, "lr": settings.lr, "last_lr": last,
                         "note": f"a new plan from these weights: the schedule starts again at lr {settings.lr:g}{was}, "
                                 "the momentum from zero and the random streams from the seed"}
            return Start(model, base_init, trained + 1, accuracy, continued=continued)
        model = runs.new_network(sizes, values["loss"], values["activation"], values["init"], values["dtype"],
                                 values["seed"])
        return Start(model, runs.initialisation(values["activation"], values["init"]), 1)

    def _stopped_run_continues(self, values: dict) -> bool:
        """Whether continuing goes on with the stopped run exactly: it was stopped before its plan's end, and
        the form asks for the same plan (its length may change)."""
        run = self.run
        if run is None or run.status != "stopped" or run.loop_state is None:
            return False
        asked = {**train_settings(values).to_dict(), "epochs": None}
        return asked == {**run.settings.to_dict(), "epochs": None} and values["engine"] == run.engine \
            and DTYPES[values["dtype"]] == run.model.dtype

    def _continue_exactly(self, values: dict) -> "Start":
        """The stopped run, from the end of its last finished epoch: its optimizer state, random stream,
        best model and knobs, as `train --resume CHECKPOINT` continues one."""
        run, settings, data = self.run, train_settings(values), self.dataset
        state, (weights, biases) = run.loop_state, run.loop_params
        if run.first_epoch + settings.epochs - 1 <= state.epoch:
            raise SettingError(f"epochs {settings.epochs} ends at epoch {run.first_epoch + settings.epochs - 1}, but "
                               f"the run has trained to epoch {state.epoch} already", field="epochs")
        check_run_fits(run.model.sizes, settings, len(data.train.x), data, values["engine"])
        model = MLP(run.model.sizes, run.model.loss, weights=[w.copy() for w in weights],
                    biases=[b.copy() for b in biases], dtype=run.model.dtype, activation=run.model.activation)
        next_epoch = state.epoch + 1
        lr = run.manual_lr or learning_rate(settings.schedule, settings.lr, next_epoch - run.first_epoch,
                                            settings.epochs, settings.step_size, settings.gamma, settings.min_lr)
        continued = {"exact": True, "from_epoch": next_epoch, "lr": lr, "last_lr": state.history[-1].lr,
                     "note": f"the stopped run, exactly: epoch {next_epoch} at lr {lr:.4g}, with its momentum, "
                             "schedule and random streams"}
        return Start(model, run.init, run.first_epoch, None, state, run.manual_lr, continued, run.initial_sha256)

    # -------------------------------------------------------------- the knobs
    def control(self, document) -> dict:
        """Pause, resume, stop, or set the learning rate and the momentum (POST /api/train/control)."""
        if not isinstance(document, dict):
            raise BptrainError('expected a JSON object like {"action": "pause"} or {"lr": 0.05}')
        unknown = [key for key in document if key not in ("action", "lr", "momentum")]
        if unknown:
            raise BptrainError(f"unknown key {unknown[0]!r}; send \"action\" (pause, resume, stop), \"lr\" and/or "
                               "\"momentum\"")
        if not document:
            raise BptrainError('send {"action": "pause" | "resume" | "stop"} and/or {"lr": ..., "momentum": ...}')
        action = document.get("action")
        if "action" in document and action not in CONTROL_ACTIONS:
            raise SettingError(f'"action" must be "pause", "resume" or "stop", got {action!r}', field="action")
        lr = document.get("lr")
        if "lr" in document:
            kind = OPTIONS_BY_NAME["lr"].kind
            problem = "must be a number" if not kind.has_type(lr) else kind.check(lr)
            if problem:
                raise SettingError(f"lr {problem}, got {lr!r}", field="lr")
            lr = float(lr)
        with self.lock:
            run = self.run
            if run is None or not run.active:
                raise Conflict("no run is in progress; press Train to start one")
            momentum = document.get("momentum")
            if "momentum" in document:
                name = "beta1" if run.settings.optimizer == "adam" else "momentum"
                if not OPTIONS_BY_NAME[name].kind.has_type(momentum):
                    raise SettingError(f"momentum must be a number, got {momentum!r}", field="momentum")
                try:
                    check_new_momentum(run.momentum if name == "momentum" else 1.0, float(momentum), name)
                except SettingError as exc:
                    raise SettingError(str(exc), field="momentum") from None
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
            return self.state_locked()

    def state_locked(self) -> dict:
        """:meth:`state`, with the lock held."""
        if self.run is None:
            tiles = weight_tiles(self.base_model.weights[0]) if self.base_model is not None else None
            return {"run": None, "status": "idle", "can_train": self.dataset is not None,
                    "reason": self.data_problem, "tiles": tiles, "history": self.base_history}
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
                    raise Conflict("there is no network yet: press Train to make one")
                if snapshot is not None:
                    raise NotFound("no run yet, so no snapshots: press Train first")
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
            predictor = Predictor(self.base_model, self.base_meta, self.dataset)
        else:
            meta = {"val_accuracy": None if accuracy is None or math.isnan(accuracy) else accuracy}
            try:
                predictor = Predictor(run.network(*params), meta, self.dataset)
            except BptrainError as exc:
                raise Conflict(str(exc)) from None
        with self.lock:  # the networks share the run's arrays; an old live copy is not kept alive by the cache
            if key[0] == "live":
                for old in [k for k in self._predictors if k[0] == "live"]:
                    del self._predictors[old]
            if len(self._predictors) >= MAX_PREDICTORS:
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
            raise Conflict("no run yet: press Train to start one")
        return self.run

    # -------------------------------------------------------------- saving
    def save(self, document) -> dict:
        """POST /api/train/save {"name": "model.npy"}: the run's model and history into --out-dir."""
        if not isinstance(document, dict) or set(document) - {"name"}:
            raise BptrainError('expected {"name": "NAME.npy"}')
        with self.lock:
            run = self._current_run()
        name = document.get("name", run.proposed_name())
        if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
            raise SettingError(f"the name must be a plain file name ending in .npy (letters, digits, '.', '_', '-'), "
                               f"like {run.proposed_name()}; got {name!r}", field="name")
        path = self.out_dir / name
        history = history_path(path)
        for target, what in ((path, "model file"), (history, "history file")):
            runs.check_writable(target, what, "name")
        runs.check_files(self.inputs, {"name": [path, history]}, show=lambda p: Path(p).name,
                         replaceable=[("name", path, is_model_file, "a bptrain model", path.name),
                                      ("name", history, is_history_file, "a bptrain history", history.name)])
        model, metadata, result = run.model_to_save()
        self._write(model, metadata, result, path, history)
        run.saved = path  # the server's stop need not warn that it is lost
        return {"run": run.id, "saved": path.name, "history": history.name,
                "epochs_trained": metadata["epochs_trained"], "val_accuracy": metadata["val_accuracy"]}

    @staticmethod
    def _write(model: MLP, metadata: dict, result: TrainResult, path: Path, history: Path) -> None:
        try:
            save_model(model, path, metadata)
            write_history(history, result, metadata, model)
        except OSError as exc:
            raise WriteFailed(f"cannot write {exc.filename and Path(exc.filename).name or path.name}: "
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
        except BptrainError as exc:
            self.say(f"run {run.id} {run.status}: could not save {self.out}: {exc}")

    # -------------------------------------------------------------- the event stream
    # -------------------------------------------------------------- the event stream (.events)
    def log(self, event: dict) -> None:
        """An event every client must hear (call with the lock held)."""
        self.events.log(event)

    # -------------------------------------------------------------- closing
    def close(self, timeout: float | None = None) -> LiveRun | None:
        """Stop the run (its thread saves to --out when asked) and end every event stream; returns the run
        that was stopped, if one was in progress."""
        with self.lock:
            self.closing = True
            run = self.run
            stopped = run if run is not None and run.active else None
            if stopped is not None:
                stopped.knobs.stop = True
                stopped.knobs.asked += 1
            self.lock.notify_all()
        if run is not None:
            run.thread.join(timeout)
        return stopped
