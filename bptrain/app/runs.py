"""What a training run must satisfy before it starts: each rule written once, for `train`, the page and `sweep`.

The files (each output writable, none of them an input or someone else's file),
the network against the data and against the model it continues, the settings
that go together only on square images, the optimizer's settings, the
initialisation, the memory (:mod:`.memory`). Every rule raises a
:class:`~bptrain.core.errors.BptrainError` naming the setting it is about
(``field``): a :class:`~bptrain.core.errors.SettingError` for settings that do not
go together, a :class:`~bptrain.core.errors.DataError` for a network that does not
fit the data, a :class:`.memory.MemoryLimitError` for a run the machine cannot
hold. The command line and the HTTP layer translate them at their edge.

A message names settings as its reader knows them: ``--batch-size`` on the command
line (:func:`flag`), ``batch_size`` on the page (:func:`plain`).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core.errors import BptrainError, DataError, SettingError
from ..core.network import AUTO_INIT, DTYPES, MLP, default_init
from ..core.optimizers import check_adam, check_sgd
from ..core.training import DISTORTION_SETTINGS, LoopState, TrainSettings
from ..data.checkpoint_io import CheckpointError, is_checkpoint_file
from ..data.loader import DataOptions, resolve_data_path
from ..data.model_io import load_model, read_model_record
from ..data.npyfile import format_bytes
from ..data.shifts import is_square_image
from . import checkpoints, memory, run_identity
from .checkpoints import checkpoint_path
from .exercises.checker import load_checked, passes
from .history import history_path, load_history
from .memory import MemoryLimitError
from .run_request import RunRequest
from .paths import check_no_clash, check_replaceable, data_files, is_history_file, is_model_file

#: What a continued network keeps: (setting, how a message names it).
KEPT_BY_A_CONTINUED_MODEL = (("sizes", "sizes"), ("loss", "loss"), ("activation", "hidden units"))


#: An atomic write's temporary file is named ".NAME.XXXXXXXX.tmp": this many bytes longer than NAME.
TEMPORARY_NAME_EXTRA = 14
#: A model file's bytes beyond its parameters (header and metadata), and a history's per epoch, at most.
OUTPUT_SLACK = 64 * 1024
HISTORY_EPOCH_BYTES = 4 * 1024


class DiskSpaceError(BptrainError):
    """A run's files would not fit on their disk."""


def flag(name: str) -> str:
    """How the command line spells a setting: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def plain(name: str) -> str:
    """How the page and a config spell a setting: as its name."""
    return name


# ------------------------------------------------------------------ files
def check_writable(path: Path, what: str, field: str | None = None) -> None:
    """Fail before any work if ``path`` cannot be written (a directory, a missing or read-only folder, a name
    longer than the file system allows)."""
    check_name_length(path, what, field)
    if path.is_dir():
        raise SettingError(f"{what} {path} is a directory; give a file name like model.npy", field=field)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise SettingError(f"cannot write {what} {path}: directory {directory} does not exist", field=field)
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise SettingError(f"cannot write {what} {path}: directory {directory} is not writable "
                           f"({exc.strerror or exc})", field=field) from None


def check_name_length(path: Path, what: str, field: str | None = None) -> None:
    """A name the file system can hold, counting the temporary file an atomic write puts beside it (the
    folder need not exist yet: the nearest one that does is asked)."""
    name_max = _name_max(path.parent if str(path.parent) else Path("."))
    length = len(os.fsencode(path.name)) + TEMPORARY_NAME_EXTRA
    if name_max is not None and length > name_max:
        raise SettingError(f"{what} {path}: its name is {len(os.fsencode(path.name))} bytes long, and with the "
                           f"temporary file written beside it {length}; this file system allows {name_max}",
                           field=field)


def _name_max(directory: Path) -> int | None:
    """The longest file name (in bytes) the file system of ``directory`` allows, where it says."""
    return _name_max_of(str(directory))


@functools.lru_cache(maxsize=256)  # a sweep asks it of the same folder for each of thousands of files
def _name_max_of(directory: str) -> int | None:
    directory = Path(directory)
    while not directory.is_dir() and directory != directory.parent:
        directory = directory.parent
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return None


def check_disk(plan: TrainingPlan) -> None:
    """The run's files fit on their disk: the model, the history, and the checkpoint twice over (the new
    one is written beside the old before it replaces it). A full disk found after hours of training
    would cost them; found here it costs nothing."""
    params = plan.model.n_parameters * plan.model.dtype.itemsize
    optimizer = {"adam": 2}.get(plan.settings.optimizer, 1 if plan.settings.momentum else 0)
    needs = {plan.out.parent: params + OUTPUT_SLACK, plan.history.parent: plan.settings.epochs * HISTORY_EPOCH_BYTES}
    needs[plan.checkpoint.parent] = needs.get(plan.checkpoint.parent, 0) + 2 * (2 + optimizer) * params
    for folder, size in needs.items():
        try:
            free = shutil.disk_usage(folder if str(folder) else ".").free
        except OSError:
            continue
        total = sum(n for f, n in needs.items() if _same_disk(f, folder))
        if free < total:
            raise DiskSpaceError(f"the run's files need about {format_bytes(total)} on the disk of "
                                 f"{folder if str(folder) else '.'} (the model, its history and its checkpoint), "
                                 f"and it has {format_bytes(free)} free; free some space or give --out elsewhere",
                                 field="out")


def _same_disk(a: Path, b: Path) -> bool:
    try:
        return os.stat(a if str(a) else ".").st_dev == os.stat(b if str(b) else ".").st_dev
    except OSError:
        return a == b


def check_files(inputs: dict, outputs: dict, allow=(), replaceable=(), show=str) -> None:
    """No output may be an input or another output, and an existing output is replaced only if it holds what
    its option writes (:mod:`.paths`). ``replaceable``: :func:`.paths.check_replaceable`'s arguments, each;
    ``show``: how a message names a path."""
    check_no_clash(inputs, outputs, allow, show)
    for replaced in replaceable:
        check_replaceable(*replaced)


# ------------------------------------------------------------------ the network
def check_continued_model(model: MLP, request: RunRequest, spell=flag, resuming: bool = True) -> None:
    """A run that continues ``model`` keeps its sizes, loss and hidden units: a setting the user gave
    that says otherwise is refused."""
    how = ("resumed", "drop {} when resuming") if resuming else ("continued", "leave {} out when continuing")
    for name, words in KEPT_BY_A_CONTINUED_MODEL:
        value, kept = request.value(name), getattr(model, name)
        if name in request.given and value != kept:
            shown = (lambda v: ",".join(map(str, v))) if name == "sizes" else str
            raise SettingError(f"{spell(name)} {shown(value)} conflicts with the {how[0]} model's {words} "
                               f"{shown(kept)}; {how[1].format(spell(name))}", field=name)


def check_model_fits_data(sizes, dataset, source: str) -> None:
    """The network's input width is the images' and its outputs are the data's classes (``source``: what
    the message calls the network: a model file, or the sizes setting)."""
    data = Path(str(dataset.source)).name
    must = f": {source} must start with {dataset.n_features}" if source in ("--sizes", "sizes") else ""
    if sizes[0] != dataset.n_features:
        raise DataError(f"{source} has input width {sizes[0]} but the images have {dataset.n_features} features "
                        f"(in {data}){must}", field="sizes")
    must = f": {source} must end with {dataset.n_classes}" if source in ("--sizes", "sizes") else ""
    if sizes[-1] != dataset.n_classes:
        raise DataError(f"{source} has {sizes[-1]} output classes but the data has labels for "
                        f"{dataset.n_classes} classes (in {data}){must}", field="sizes")


def sizes_for_data(sizes, dataset) -> tuple[int, ...]:
    """The default network for the data: its hidden layers, with the data's input width and classes."""
    return (dataset.n_features, *tuple(sizes)[1:-1], dataset.n_classes)


def initialisation(activation: str, init: str) -> str:
    """The initialisation a new network gets: ``auto`` is the one that suits its hidden units."""
    return default_init(activation) if init == AUTO_INIT else init


def new_network(sizes, loss: str, activation: str, init: str, dtype: str, seed: int) -> MLP:
    """A new network with its initial parameters; a network too big to create is one line, not a traceback."""
    try:
        return MLP(sizes, loss, dtype=DTYPES[dtype], init=initialisation(activation, init), seed=seed,
                   activation=activation)
    except MemoryError:
        raise MemoryLimitError(f"out of memory creating a {'-'.join(map(str, sizes))} network; try a smaller "
                               "network", field="sizes") from None


# ------------------------------------------------------------------ settings
def augment_for(settings: TrainSettings, n_features: int, given, spell=flag) -> int:
    """The shift (``augment``) the run uses: shifts and distortions move square images.

    Distortions asked for on other inputs are refused; a shift the user gave is refused too, while the
    default shift is turned off (0 is returned; the caller may say so).
    """
    if is_square_image(n_features):
        return settings.augment
    used = [name for name in DISTORTION_SETTINGS if getattr(settings, name)]
    if used:
        raise SettingError(f"{', '.join(map(spell, used))} distort square images, but the inputs have "
                           f"{n_features} features", field=used[0])
    if settings.augment and "augment" in given:
        raise SettingError(f"{spell('augment')} shifts square images, but the inputs have {n_features} features; "
                           f"use {spell('augment')} 0", field="augment")
    return 0


def check_optimizer(settings: TrainSettings) -> None:
    """The optimizer's settings go together (e.g. Nesterov needs a momentum): :func:`~bptrain.core.optimizers.check_sgd`
    or :func:`~bptrain.core.optimizers.check_adam`."""
    if settings.optimizer == "sgd":
        check_sgd(settings.momentum, settings.nesterov, settings.weight_decay)
    else:
        check_adam(settings.beta1, settings.beta2, settings.eps, settings.weight_decay)


#: What a workbook cannot do: (setting, the value it trains with, why a given other value is refused).
WORKBOOK_FIXED = (("optimizer", "sgd", "its sgd_step is plain SGD"), ("momentum", 0.0, "its sgd_step is plain SGD"),
                  ("nesterov", False, "its sgd_step is plain SGD"), ("weight_decay", 0.0, "its sgd_step has no decay"),
                  ("loss", "ce", "its network ends in softmax and cross-entropy"),
                  ("activation", "sigmoid", "its hidden units are sigmoid"))


def workbook_request(request: RunRequest, spell=flag, momentum: bool = False) -> RunRequest:
    """The settings of a run with the learner's workbook: plain SGD, or momentum when the workbook's
    ``momentum`` step passes; sigmoid, softmax and cross-entropy. A setting the user gave that the workbook
    cannot do is refused; the defaults it cannot do are changed."""
    for name, value in (("resume", "a new run"), ("engine", "the engine")):
        if name in request.given and request.value(name) is not None:
            raise SettingError(f"{spell('workbook')} is {value}: drop {spell(name)}", field=name)
    changed = {}
    for name, kept, why in WORKBOOK_FIXED:
        if name == "momentum" and momentum:
            continue  # its momentum_step passes: any μ, the default's too
        value = request.value(name)
        if name in request.given and value != kept:
            shown = value if not isinstance(value, bool) else ""
            more = "; its momentum_step, once it passes, would add momentum" if name == "momentum" else ""
            raise SettingError(f"{spell(name)} {shown}".rstrip() + f" is more than {spell('workbook')} can do ({why}"
                               f"{more}); drop {spell(name)}", field=name)
        changed[name] = kept
    changed["engine"] = "reference"  # the workbook's steps allocate as the readable engine's do
    return request.with_values(changed)


# ------------------------------------------------------------------ a `train` run, all of it
@dataclass
class TrainingPlan:
    """A run that passed every rule, ready to train: what the loop is handed, and what the files record."""

    model: MLP
    init: str | None
    first_epoch: int
    dataset: object
    settings: TrainSettings
    engine: str
    initial_sha256: str  # of the parameters it starts from (which runs started alike: bptrain compare)
    out: Path
    history: Path
    run_id: str | None  # the run its checkpoints and files name (run_identity.run_id)
    resume: LoopState | None = None  # where a checkpoint's run stood: it goes on from there exactly
    started_in: str | None = None  # the folder a relative --data is read from (a continued run's: where it began)
    notes: list = field(default_factory=list)  # (text, shown even when quiet): what changed of what was asked
    workbook: dict | None = None  # the learner's functions (--workbook), checked: they run the steps
    data_options: DataOptions = DataOptions()  # how the data was read (a CSV's label column, ...): resumes read it so

    @property
    def last_epoch(self) -> int:
        return self.first_epoch + self.settings.epochs - 1

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.out)

    def run_record(self) -> dict:
        """What the checkpoints record of the run besides where it stands: enough to continue it alone."""
        model = self.model
        return {"run_id": self.run_id, "sizes": list(model.sizes), "loss": model.loss, "activation": model.activation,
                "dtype": model.dtype.name, "init": self.init, "engine": self.engine,
                "settings": self.settings.to_dict(), "first_epoch": self.first_epoch,
                "initial_sha256": self.initial_sha256, "data": str(self.dataset.source),
                "data_options": checkpoints.recorded_data_options(self.data_options),
                # the files belong beside the checkpoint: the model by its name, the history from the model's
                # folder; "cwd" finds a relative --data from wherever the run is continued
                "out": self.out.name, "cwd": self.started_in or os.getcwd(),
                "history": os.path.relpath(os.path.abspath(self.history), os.path.abspath(self.out.parent))}


@dataclass
class Preflight:
    """A run checked as far as it can be without its data: the request as a workbook or a checkpoint leaves
    it, and where the data is (the command loads it: :attr:`data`)."""

    request: RunRequest
    out: Path
    history: Path
    checkpoint: checkpoints.Checkpoint | None = None  # the run it continues exactly
    workbook: dict | None = None   # the learner's functions, checked
    notes: list = field(default_factory=list)
    data_source: str | None = None  # the data as the continued run recorded it (read from where it began)
    started_in: str | None = None

    @property
    def data(self) -> Path | None:
        """The data to load: --data, or the continued run's."""
        return self.request.data


def check_before_data(request: RunRequest, *, config: Path | None = None, data_label: str = "--data") -> Preflight:
    """Check a ``train`` run before its data is loaded, cheapest first: the workbook, the checkpoint it
    continues (its plan, unless what may change is given), the files, the optimizer's settings."""
    functions = None
    if request.workbook is not None:  # the learner's functions, checked, and what they can do
        functions = load_checked(request.workbook)
        request = workbook_request(request, momentum=passes("momentum_step", functions))
    resume = request.resume
    checkpoint = _read_checkpoint(resume) if resume is not None and checkpoints.is_checkpoint_name(resume) else None
    notes, data_source, started_in = [], None, None
    if checkpoint is not None:
        notes += [(line, True) for line in checkpoints.check_plan_kept(checkpoint, request, flag)]
        run, given = checkpoint.run, request.given
        kept = {**run["settings"], **{key: run[key] for key in checkpoints.RUN_KEYS},
                "epochs": request.settings.epochs if "epochs" in given else run["settings"]["epochs"]}
        # the run's own files, unless given: beside the checkpoint; a new --out gets its own history
        if "out" not in given:
            kept["out"] = checkpoint.out
        if "history" not in given:
            kept["history"] = checkpoint.history if "out" not in given else None
        if "data" not in given and checkpoint.data is not None:
            kept["data"], data_source = Path(checkpoint.data), run["data"]
            started_in = run.get("cwd") if checkpoint.data != run["data"] else None
        # the data is read as the run read it, but for the data options given now
        kept["data_options"] = DataOptions(*(now if now is not None else then for now, then in
                                             zip(request.data_options, checkpoint.data_options)))
        request = request.with_values(kept)
    out = request.out
    history = request.history or history_path(out)
    check_writable(out, "model file", "out")
    check_writable(history, "history file", "history")
    check_writable(checkpoint_path(out), "its checkpoint", "out")
    check_files(inputs={data_label: data_files(resolve_data_path(request.data)), "--config": [config],
                        "--resume": [resume], "--workbook": [request.workbook]},
                outputs={"--out": [out], "--history": [history], "its checkpoint": [checkpoint_path(out)]},
                allow={("--out", "--resume"), ("its checkpoint", "--resume")},  # continuing in place
                replaceable=[("--out", out, is_model_file, "a bptrain model"),
                             ("--history", history, is_history_file, "a bptrain history JSON"),
                             ("--out", checkpoint_path(out), is_checkpoint_file, "a bptrain checkpoint",
                              f"its checkpoint {checkpoint_path(out)}")])
    check_optimizer(request.settings)  # settings each option allows but not together, e.g. --nesterov with --momentum 0
    return Preflight(request, out, history, checkpoint, functions, notes, data_source, started_in)


def plan_training(preflight: Preflight, dataset) -> TrainingPlan:
    """Set up a checked run on its loaded ``dataset``: the memory, the network (new, continued or the
    checkpoint's) and what the data allows (the network's ends, the shift, the batch size)."""
    request, checkpoint, notes = preflight.request, preflight.checkpoint, list(preflight.notes)
    resume, settings, out, history = request.resume, request.settings, preflight.out, preflight.history
    if preflight.data_source is not None:  # read where the run started: recorded as the run recorded it
        dataset = dataset._replace(source=preflight.data_source)
    if "sizes" not in request.given and resume is None:
        request = request.with_values({"sizes": sizes_for_data(request.sizes, dataset)})
    warning = memory.check_fits(memory.training_estimate(
        request.sizes, settings.batch_size, resume=None if checkpoint else resume, dtype=request.dtype,
        augment=settings.augment, data=memory.DataShape.of(dataset), engine=request.engine,
        **{name: getattr(settings, name) for name in DISTORTION_SETTINGS + ("optimizer", "momentum")}))
    if warning:
        notes.append((f"warning: {warning}", True))
    if checkpoint is not None:
        _check_latest(checkpoint, checkpoint.out)
        model, init, first_epoch = checkpoint.model, checkpoint.run["init"], checkpoint.run["first_epoch"]
        run_id, initial_sha256, state = checkpoint.run["run_id"], checkpoint.run["initial_sha256"], checkpoint.state
        notes.append((f"continuing the run of {checkpoint.path} exactly: epoch {state.epoch + 1} of "
                      f"{first_epoch + settings.epochs - 1}, with its optimizer state, schedule and random streams; "
                      f"writing {out} and {history}", False))
    else:
        state, run_id = None, None
        if resume is None:
            model = new_network(request.sizes, request.loss, request.activation, request.init, request.dtype,
                                settings.seed)
            init, first_epoch = initialisation(request.activation, request.init), 1
        else:
            model, meta = load_model(resume, dtype=DTYPES[request.dtype])
            check_continued_model(model, request)
            init, first_epoch = meta.get("init"), int(meta.get("epochs_trained", 0)) + 1
            notes.append((_fresh_start_note(resume, meta, settings), False))
        initial_sha256 = run_identity.parameters_sha256(model.weights, model.biases)
        if checkpoint_path(out).is_file():
            notes.append((f"note: {checkpoint_path(out)} holds a stopped run; this run replaces it at the end of its "
                           f"first epoch (--resume {checkpoint_path(out)} would continue that run instead)", True))
    check_model_fits_data(model.sizes, dataset, "--sizes" if resume is None else str(resume))
    augment = augment_for(settings, dataset.n_features, request.given)
    if augment != settings.augment:
        notes.append((f"note: the {dataset.n_features}-feature inputs are not square images; augmentation is off",
                      False))
    batch_size, n_train = settings.batch_size, len(dataset.train.x)
    if batch_size > n_train:
        notes.append((f"note: --batch-size {batch_size} is larger than the {n_train} training samples; using "
                      f"{n_train}", True))  # it changes what the user asked for
        batch_size = n_train
    settings = replace(settings, batch_size=batch_size, augment=augment)
    plan = TrainingPlan(model, init, first_epoch, dataset, settings, request.engine, initial_sha256, out, history,
                        run_id, state, notes=notes, started_in=preflight.started_in, workbook=preflight.workbook,
                        data_options=request.data_options)
    plan.run_id = plan.run_id or run_identity.run_id(plan.run_record())
    check_disk(plan)
    return plan


def _read_checkpoint(path: Path):
    """The checkpoint to continue; a missing one beside a model file is a run that finished, and said so."""
    if not path.exists():
        stem = path.name[:-len(checkpoints.SUFFIX)]
        for model in (path.with_name(stem + ".npy"), path.with_name(stem)):
            if model.is_file() and is_model_file(model):
                raise CheckpointError(f"no checkpoint at {path}: the run that wrote {model} finished (a run that "
                                      f"completes removes its checkpoint) and its model is {model}; --resume {model} "
                                      "starts a new plan from its weights")
    return checkpoints.read(path)


def _check_latest(checkpoint, out: Path) -> None:
    """A checkpoint is continued only if it is the last state its run wrote: the model file the run saved
    later (stopped by a signal) says how far it got."""
    if not out.is_file() or not is_model_file(out):
        return
    try:
        meta = read_model_record(out)[2]
    except BptrainError:
        return
    if meta.get("run_id") == checkpoint.run["run_id"] and (meta.get("epochs_run") or 0) > checkpoint.state.epoch:
        raise CheckpointError(f"{checkpoint.path} holds epoch {checkpoint.state.epoch} of its run, but {out} was "
                              f"saved by the same run after epoch {meta['epochs_run']}: it is not the run's last "
                              "checkpoint")


def _fresh_start_note(path: Path, meta: dict, settings: TrainSettings) -> str:
    """What continuing from a model file alone does: a new plan from its weights, said with the rates."""
    last = last_lr(path, meta.get("settings") or {})
    was = f" (it last trained at {last:.4g})" if last is not None else ""
    lr = settings.lr
    return (f"note: continuing {path}'s weights with a new plan: the schedule starts again at lr {lr:g}{was}, the "
            "momentum from zero and the random streams from --seed; a checkpoint (NAME.checkpoint.npz) would "
            "continue a run exactly")


def last_lr(path: Path, settings: dict | None = None) -> float | None:
    """The learning rate of the model's last epoch: from its history beside it, if there is one."""
    beside = history_path(path)
    try:
        epochs = load_history(beside).get("epochs") if beside.is_file() else None
        value = epochs[-1].get("lr") if epochs else None
        return float(value) if isinstance(value, (int, float)) else None
    except BptrainError:
        return None
