"""The ``bptrain`` command: parse, validate, call, print. No math here.

Every user error becomes one line on stderr and a non-zero exit code: the
library raises :class:`BptrainError` subclasses, and :class:`BptrainGroup`
turns them into click errors so nobody sees a traceback for a typo.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import tempfile
from pathlib import Path

import click
import numpy as np

from .. import __version__
from ..data.shifts import is_square_image
from . import memory
from .bench import SETTINGS_CHOICES as BENCH_SETTINGS
from .compare import compare_command, parameters_sha256
from .config import load_config
from .explain import explain_command
from .history import history_path, load_history, training_metadata, write_history
from ..core.errors import BptrainError, DataError, TrainingDiverged
from ..data.loader import DATA_ENV_VAR, DEFAULT_DATA_PATH, SPLIT_NAMES, load_dataset, resolve_data_path
from .metrics import confusion_matrix, format_confusion, format_per_class, per_class_accuracy
from ..data.model_io import atomic_write, load_model, save_model
from ..core.committee import Committee, mean_negative_log_likelihood
from ..core.network import AUTO_INIT, DTYPES, MLP, default_init
from .options import CLI_AUGMENT, FORM_OPTIONS, GROUPS, SETTINGS_FIELDS, TRAIN_OPTIONS, GroupedHelpCommand
from .options import click_options, table_option
from .paths import PathClash, OutputDir, check_no_clash, check_replaceable, data_files
from .paths import is_history_file, is_model_file, is_png_file
from .stopping import StopSignals, Stopped, exit_status, signal_name
from ..core.optimizers import check_sgd
from ..core.training import TrainSettings
from ..engines import train
from .sweep import sweep_command

EXIT_INTERRUPTED = 130
CONFIG_PATH_KEY = "bptrain.config_path"
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class BptrainGroup(click.Group):
    """A click group that reports every user error as one clean line on stderr.

    Our own errors (BptrainError) exit with 1, click's usage errors with 2;
    click's usual "Usage: ... Try --help" preamble is folded into one line.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # plain `bptrain`: show the help, as click does
            click.echo(exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else (prog_name or "bptrain")
            click.echo(f"Error: {exc.format_message()} (see '{command} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BptrainError as exc:
            raise click.ClickException(str(exc)) from None
        except MemoryError as exc:  # training's own advice is given by `train`; elsewhere just the fact
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise click.ClickException(f"out of memory{f' ({detail})' if detail else ''}") from None


def _load_config_defaults(ctx: click.Context, param, value):
    """Eager --config: its settings become the defaults of the other options, so flags still win."""
    if value is not None:
        try:
            settings = load_config(value)
        except BptrainError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        ctx.default_map = {**(ctx.default_map or {}), **settings}
        ctx.meta[CONFIG_PATH_KEY] = value  # an input of the command: no output may replace it
    return value


@click.group(cls=BptrainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bptrain")
def cli():
    """Train and evaluate an MLP (sigmoid hidden units by default) on MNIST with backpropagation written out in NumPy."""


cli.add_command(explain_command)  # defined beside its computation, in bptrain/app/explain.py


def data_options(func):
    """--data and --no-download, shared by every command that reads the data set."""
    func = click.option("--no-download", is_flag=True,
                        help="Do not download mnist.pkl.gz when it is missing from the default location.")(func)
    func = click.option("--data", type=click.Path(path_type=Path), default=None,
                        help=f"mnist.pkl.gz file or directory of MNIST IDX files "
                             f"[default: ${'BPTRAIN_DATA'} or {DEFAULT_DATA_PATH}]")(func)
    return func


def obtain_dataset(data: Path | None, no_download: bool, progress: bool, n_classes: int | None = None):
    """Find the data (downloading the default file if allowed) and load it."""
    path = resolve_data_path(data)
    if not path.exists():
        from ..data.download import ensure_data

        path = stoppable_download(ensure_data, path, allow_download=not no_download, progress=progress)
    return load_dataset(path, n_classes=n_classes)


def stoppable_download(download, *args, **kwargs):
    """Run ``download`` so that Ctrl-C, SIGTERM and SIGHUP stop it cleanly: its temporary file is removed
    (its own cleanup runs, which SIGTERM's default action would skip) and the exit status names the signal."""
    with StopSignals() as stop:
        try:
            return download(*args, **kwargs)
        except Stopped:
            pass
    click.echo(f"{_stopped_by(stop.signum)}: the download was cancelled; no partial file was left", err=True)
    click.get_current_context().exit(exit_status(stop.signum))


def _stopped_by(signum: int | None) -> str:
    return "interrupted" if signum in (None, signal.SIGINT) else f"terminated by {signal_name(signum)}"


def _data_label(data: Path | None) -> str:
    """How to name the data in a message: the user may not have given --data at all."""
    if data is not None:
        return "--data"
    return f"${DATA_ENV_VAR}" if os.environ.get(DATA_ENV_VAR) else "the default --data"


def check_paths(inputs: dict, outputs: dict, allow=(), replaceable=()) -> None:
    """Before any work: no output may be an input or another output (see bptrain.paths), and an existing
    output is replaced only if it holds what its option writes. ``replaceable``: check_replaceable's arguments."""
    try:
        check_no_clash(inputs, outputs, allow)
        for replaced in replaceable:
            check_replaceable(*replaced)
    except PathClash as exc:
        raise click.UsageError(str(exc), ctx=click.get_current_context()) from None


def check_writable(path: Path, what: str) -> None:
    """Fail before any work if ``path`` cannot be written (missing or read-only directory)."""
    if path.is_dir():
        raise click.UsageError(f"{what} {path} is a directory; give a file name like model.npy")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise click.UsageError(f"cannot write {what} {path}: directory {directory} does not exist")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise click.UsageError(f"cannot write {what} {path}: directory {directory} is not writable "
                               f"({exc.strerror or exc})") from None


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user set option ``name`` (on the command line or in a config), not just its default."""
    return ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)


def _check_memory(estimate: memory.Estimate) -> None:
    """Refuse, in one line, a run the machine's memory cannot hold; warn when it would take most of it."""
    warning = memory.check_fits(estimate)
    if warning:
        click.echo(f"warning: {warning}", err=True)  # even with --quiet, like the --batch-size note


# --------------------------------------------------------------------- train
@cli.command("train", cls=GroupedHelpCommand)
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), is_eager=True, expose_value=False,
              callback=_load_config_defaults, help="TOML file of settings; explicit flags override it.")
@click_options(TRAIN_OPTIONS)
def train_command(sizes, loss, activation, init, dtype, epochs, batch_size, augment, data, no_download, out,
                  history, resume, seed, quiet, engine, **learning):
    """Train a network and save it (the best epoch by validation accuracy) to a .npy file.

    No output may be an input (--data, --config; --resume only for --out: that continues the model in
    place). Ctrl-C, SIGTERM and SIGHUP save the best model so far and exit with 128 + the signal number.
    """
    ctx = click.get_current_context()
    out = Path(out)
    history = Path(history) if history else history_path(out)
    _check_train_files(ctx, out, history, data, resume)
    try:  # settings each option allows but not together, e.g. --nesterov with --momentum 0
        if learning["optimizer"] == "sgd":
            check_sgd(learning["momentum"], learning["nesterov"], learning["weight_decay"])
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx=ctx) from None
    say = (lambda *a, **k: None) if quiet else click.echo
    progress = not quiet and sys.stderr.isatty()
    dataset = obtain_dataset(data, no_download, progress)  # first: its shape is part of what the run needs
    _check_memory(memory.training_estimate(sizes, batch_size, resume=resume, dtype=dtype, augment=augment,
                                           data=memory.DataShape.of(dataset), engine=engine, **learning))
    model, init, first_epoch = _model_to_train(ctx, resume, sizes, loss, activation, init, dtype, seed)
    initial_sha256 = parameters_sha256(model.weights, model.biases)  # which runs started alike (bptrain compare)
    _note_unused_options(ctx, learning["optimizer"])
    check_model_fits_data(model, dataset, "--sizes" if resume is None else str(resume))
    augment, batch_size = _fit_to_data(ctx, dataset, learning, augment, batch_size, quiet)
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, seed=seed, augment=augment,
                             **{name: learning[name] for name in SETTINGS_FIELDS & learning.keys()})
    say(f"training {'-'.join(map(str, model.sizes))} ({model.activation} hidden, {model.loss}, {model.dtype.name}) "
        f"on {len(dataset.train.x)} images from {dataset.source}: {epochs} epochs, batch {batch_size}, "
        f"{settings.optimizer}, lr {settings.lr:g}" + ("" if engine == "fast" else f", {engine} engine"))
    last_epoch = first_epoch + epochs - 1

    def report(record, improved):
        say(f"epoch {record.epoch:>3}/{last_epoch}  train loss {record.train_loss:.4f}  "
            f"val loss {record.val_loss:.4f}  val acc {100 * record.val_accuracy:6.2f}%  "
            f"lr {record.lr:.4g}  {record.seconds:5.1f}s{'  *' if improved else ''}")

    # Ctrl-C, SIGTERM and SIGHUP stop training the same way; once one arrived, or once saving starts,
    # further signals wait until the model and its history are saved (bptrain.app.stopping).
    with StopSignals() as signals:
        try:
            result = train(model, dataset, settings, engine=engine, progress=progress, on_epoch=report,
                           first_epoch=first_epoch)
        except TrainingDiverged as exc:
            raise click.ClickException(f"{exc}; {out} was not written") from None
        except MemoryError:
            raise click.ClickException("out of memory while training; try a smaller --batch-size or network") from None
        except Stopped:  # before training started (resume's first evaluation) or after it returned
            click.echo(f"{_stopped_by(signals.signum)} before the model could be saved; {out} was not written",
                       err=True)
            ctx.exit(exit_status(signals.signum))
        signals.defer()
        metadata = training_metadata(settings, result, dataset, init, first_epoch, initial_sha256)
        save_model(model, out, metadata)
        write_history(history, result, metadata, model)
    trained_epochs = metadata["epochs_run"]
    if result.interrupted or signals.stopped:
        if result.interrupted:
            where = (f"the best so far, epoch {result.best_epoch}" if result.best_epoch
                     else "mid-epoch, before any validation")
            click.echo(f"{_stopped_by(signals.signum)}: saved the model reached so far ({where}) to {out}", err=True)
        else:  # the signal came while a finished run was being saved: the save completed first
            click.echo(f"{_stopped_by(signals.signum)} while saving; {out} and {history} were saved completely",
                       err=True)
        ctx.exit(exit_status(signals.signum) if signals.stopped else EXIT_INTERRUPTED)
    stop = " (early stopping)" if result.stopped_early else ""
    say(f"saved {out}: best validation accuracy {100 * result.best_val_accuracy:.2f}% at epoch "
        f"{result.best_epoch} of {trained_epochs}{stop}; history in {history}")


def _check_train_files(ctx, out: Path, history: Path, data, resume) -> None:
    """Before any work: the outputs can be written, and none of them is an input or someone else's file."""
    check_writable(out, "model file")
    check_writable(history, "history file")
    check_paths(inputs={_data_label(data): data_files(resolve_data_path(data)),
                        "--config": [ctx.meta.get(CONFIG_PATH_KEY)], "--resume": [resume]},
                outputs={"--out": [out], "--history": [history]},
                allow={("--out", "--resume")},  # continuing in place: written atomically, and only when better
                replaceable=[("--out", out, is_model_file, "a bptrain model"),
                             ("--history", history, is_history_file, "a bptrain history JSON")])


def _model_to_train(ctx, resume, sizes, loss, activation, init, dtype, seed):
    """(model, its init, the number of its first epoch): the resumed model, or a new one."""
    if resume is None:
        init = default_init(activation) if init == AUTO_INIT else init
        try:
            model = MLP(sizes, loss, dtype=DTYPES[dtype], init=init, seed=seed, activation=activation)
        except MemoryError:
            raise click.ClickException(f"out of memory creating a {'-'.join(map(str, sizes))} network; "
                                       f"try a smaller network") from None
        return model, init, 1
    model, meta = load_model(resume, dtype=DTYPES[dtype])
    for name, given, kept, words in (("sizes", tuple(sizes), model.sizes, "sizes"),
                                     ("loss", loss, model.loss, "loss"),
                                     ("activation", activation, model.activation, "hidden units")):
        if _given(ctx, name) and given != kept:
            shown = (lambda v: ",".join(map(str, v))) if name == "sizes" else str
            raise click.UsageError(f"--{name} {shown(given)} conflicts with the resumed model's {words} "
                                   f"{shown(kept)}; drop --{name} when resuming")
    return model, meta.get("init"), int(meta.get("epochs_trained", 0)) + 1


def _note_unused_options(ctx, optimizer: str) -> None:
    """Say (even with -q) when a command-line option does not apply to the optimizer; a config may list them all."""
    unused = ("momentum", "nesterov") if optimizer == "adam" else ("beta1", "beta2", "eps")
    for name in unused:
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            click.echo(f"note: --{name} does not apply to --optimizer {optimizer}; ignored", err=True)


def _fit_to_data(ctx, dataset, learning: dict, augment: int, batch_size: int, quiet: bool):
    """(augment, batch_size) that the data allows: shifts and distortions need square images, and a
    batch cannot be larger than the training set."""
    distortions = {name: learning[name]
                   for name in ("elastic_alpha", "affine_rotate", "affine_scale", "affine_shear", "affine_shift")}
    if any(distortions.values()) and not is_square_image(dataset.n_features):
        used = ", ".join("--" + name.replace("_", "-") for name, value in distortions.items() if value)
        raise click.UsageError(f"{used} distort square images, but the inputs of {dataset.source} have "
                               f"{dataset.n_features} features")
    if augment and not is_square_image(dataset.n_features):
        if _given(ctx, "augment"):
            raise click.UsageError(f"--augment shifts square images, but the inputs of {dataset.source} have "
                                   f"{dataset.n_features} features; use --augment 0")
        if not quiet:
            click.echo(f"note: the {dataset.n_features}-feature inputs are not square images; augmentation is off",
                       err=True)
        augment = 0
    n_train = len(dataset.train.x)
    if batch_size > n_train:
        # shown even with --quiet: it changes what the user asked for
        click.echo(f"note: --batch-size {batch_size} is larger than the {n_train} training samples; "
                   f"using {n_train}", err=True)
        batch_size = n_train
    return augment, batch_size


def check_model_fits_data(model: MLP, dataset, source: str) -> None:
    if model.sizes[0] != dataset.n_features:
        raise DataError(f"{source} has input width {model.sizes[0]} but the images in {dataset.source} have "
                        f"{dataset.n_features} features")
    if model.sizes[-1] != dataset.n_classes:
        raise DataError(f"{source} has {model.sizes[-1]} output classes but {dataset.source} has labels for "
                        f"{dataset.n_classes} classes")


# ---------------------------------------------------------------------- eval
@cli.command("eval")
@click.argument("model_paths", metavar="MODEL...", nargs=-1, required=True, type=click.Path(path_type=Path))
@data_options
@click.option("--split", type=click.Choice(SPLIT_NAMES), default="test", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def eval_command(model_paths, data, no_download, split, as_json):
    """Report accuracy, loss, per-class accuracy and the confusion matrix of a saved model.

    Several MODELs are a committee: their class probabilities are averaged and the committee is scored
    (its loss is the mean -ln p of the true class); each member's own accuracy is shown too.
    """
    _check_distinct(model_paths)
    _check_committee_fits(model_paths)
    models = [load_model(path)[0] for path in model_paths]
    committee = Committee(models, names=[str(path) for path in model_paths])
    dataset = obtain_dataset(data, no_download, progress=not as_json and sys.stderr.isatty())
    for model, path in zip(models, model_paths):
        check_model_fits_data(model, dataset, str(path))
    x, y = dataset.split(split)
    if len(models) == 1:
        loss, predictions = models[0].evaluate(x, y)
        loss_kind, members = models[0].loss, []
    else:
        votes = committee.votes(x)
        probabilities = votes.mean(axis=0)
        loss, predictions = mean_negative_log_likelihood(probabilities, y), probabilities.argmax(axis=1)
        loss_kind = "nll"
        members = [{"model": str(path), "sizes": list(model.sizes), "activation": model.activation,
                    "accuracy": float(np.mean(vote.argmax(axis=1) == y))}
                   for path, model, vote in zip(model_paths, models, votes)]
    accuracy = float(np.mean(predictions == y))
    confusion = confusion_matrix(y, predictions, models[0].sizes[-1])
    per_class = per_class_accuracy(confusion)
    if as_json:
        identity = {"model": str(model_paths[0])} if len(models) == 1 else {"committee": members}
        click.echo(json.dumps({
            **identity, "data": dataset.source, "split": split, "samples": int(len(y)),
            "accuracy": accuracy, "loss": loss, "loss_kind": loss_kind,
            "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
            "confusion_matrix": confusion.tolist(),
        }))
        return
    if len(models) == 1:
        model = models[0]
        click.echo(f"model {model_paths[0]} ({'-'.join(map(str, model.sizes))}, {model.loss}) on the {split} "
                   f"split of {dataset.source} ({len(y)} images)")
        click.echo(f"accuracy {100 * accuracy:.2f}%   loss {loss:.4f}")
    else:
        click.echo(f"a committee of {len(models)} models on the {split} split of {dataset.source} "
                   f"({len(y)} images): their class probabilities averaged")
        width = max(len(m["model"]) for m in members)
        for m in members:
            click.echo(f"  {m['model']:<{width}}  {'-'.join(map(str, m['sizes']))} {m['activation']:<7}  "
                       f"accuracy {100 * m['accuracy']:.2f}%")
        click.echo(f"committee accuracy {100 * accuracy:.2f}%   loss (mean -ln p of the true class) {loss:.4f}")
    click.echo("")
    click.echo(format_per_class(per_class, confusion))
    click.echo("")
    click.echo("confusion matrix (rows: true class, columns: predicted)")
    click.echo(format_confusion(confusion))


def _check_committee_fits(model_paths) -> None:
    """A committee holds all its networks at once: refuse, in one line and before any loading, models whose
    files together exceed the memory this machine has available (a file holds its parameters as stored)."""
    if len(model_paths) < 2:
        return
    total = sum(path.stat().st_size for path in map(Path, model_paths) if path.is_file())
    available = memory.available_bytes()
    if available is not None and total > available:
        raise memory.MemoryLimitError(
            f"the {len(model_paths)} models need about {memory.format_gb(total)} together; this machine has "
            f"{memory.format_gb(available)} available: use fewer models")


def _check_distinct(model_paths) -> None:
    """A committee of one file twice is a typo, not a second opinion."""
    seen = {}
    for path in model_paths:
        key = os.path.realpath(path)
        if key in seen:
            same = f"{path} is given twice" if str(path) == str(seen[key]) else f"{seen[key]} and {path} are one file"
            raise click.UsageError(f"{same}; a committee needs different models", ctx=click.get_current_context())
        seen[key] = path


# ------------------------------------------------------------------ download
@cli.command("download")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_PATH.parent,
              show_default=True, help="Directory to put mnist.pkl.gz in.")
@click.option("--force", is_flag=True, help="Download again even if the file is already there.")
def download_command(dest, force):
    """Fetch mnist.pkl.gz from known mirrors and verify its size and MD5."""
    from ..data.download import MNIST_FILENAME, download_mnist

    target = dest / MNIST_FILENAME
    if target.exists() and not force:
        click.echo(f"{target} is already there; use --force to download it again")
        return
    path = stoppable_download(download_mnist, dest, force=force, progress=sys.stderr.isatty())
    click.echo(f"downloaded and verified {path}")


# --------------------------------------------------------------------- bench
@cli.command("bench")
@table_option("sizes")
@table_option("batch_size", multiple=True, default=(1, 10, 128), help="Repeat the option to time several batch sizes.")
@table_option("loss")
@table_option("dtype")
@table_option("engine")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed epochs per batch size (the median is reported).")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True,
              help="Untimed epochs before the timed ones.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Use only the first N training images [default: all].")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Data to time on [default: $BPTRAIN_DATA or data/mnist.pkl.gz; synthetic data of the "
                   "same shape when absent].")
@click.option("--settings", "settings_choice", type=click.Choice(BENCH_SETTINGS), default="both",
              show_default=True,
              help="default: what `bptrain train` trains with (momentum, weight decay, shifts); plain: SGD without "
                   "them; both: the two in alternation, with the ratio default / plain.")
@click.option("--augment", type=click.IntRange(min=0, max=4), default=CLI_AUGMENT, show_default=True,
              help="Largest shift in pixels of the default settings (0: time them without the shifts).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_command(sizes, batch_size, loss, dtype, engine, runs, warmup, samples, data, settings_choice, augment,
                  as_json):
    """Time training epochs (train's default settings and plain SGD) against this machine's matrix-multiply peak."""
    from . import bench

    path = resolve_data_path(data)
    if path.exists():
        dataset = load_dataset(path)
        x, y, source = dataset.train.x, dataset.train.y, str(path)
        if sizes[0] != x.shape[1] or sizes[-1] < dataset.n_classes:
            raise click.UsageError(f"--sizes {','.join(map(str, sizes))} does not fit {path} "
                                   f"({x.shape[1]} features, {dataset.n_classes} classes)")
    else:
        if data is not None:
            raise DataError(f"no data at {path}")
        x, y = bench.synthetic_like(50_000, sizes[0], sizes[-1])
        source = "synthetic (no data file found)"
    if samples is not None:
        x, y = x[:samples], y[:samples]
    if augment and not is_square_image(x.shape[1]):
        augment = 0  # as in train: shifts need square images (the settings line says "no shifts")
    settings = bench.settings_to_time(settings_choice, augment)
    _check_memory(memory.bench_estimate(sizes, batch_size, dtype=dtype, settings=settings, n_samples=len(x),
                                        engine=engine))
    rows, peak = bench.bench(sizes, loss, x, y, batch_size, dtype=DTYPES[dtype], runs=runs, warmup=warmup,
                             settings=settings, engine=engine)
    if as_json:
        click.echo(json.dumps({"sizes": list(sizes), "loss": loss, "dtype": dtype, "engine": engine, "samples": len(x),
                               "data": source, "gemm_peak_gflops": peak,
                               "settings": {s.name: s.to_dict() for s in settings},
                               "rows": [r.to_dict() for r in rows]}))
        return
    click.echo(f"{'-'.join(map(str, sizes))} {loss} {dtype}, {engine} engine, {len(x)} samples per epoch from {source}")
    for s in settings:
        click.echo(f"{s.name}: {s.describe()}" + (" (bptrain train's defaults)" if s.name == "default" else ""))
    click.echo("threads: BLAS threads of the steps, +1 when a thread prepares each epoch alongside "
               "(bptrain/fast/threads.py)")
    click.echo(f"GEMM peak {peak:.1f} GFLOP/s -> matmul floor {rows[0].floor_seconds:.3f} s/epoch")
    click.echo(f"{'settings':<9} {'batch':>6} {'s/epoch':>9} {'samples/s':>11} {'GFLOP/s':>8} {'x floor':>8} "
               f"{'x plain':>8} {'threads':>8}  runs")
    for r in rows:
        ratio = f"{r.ratio_to_plain:>8.2f}" if r.ratio_to_plain is not None else f"{'':>8}"
        click.echo(f"{r.settings:<9} {r.batch_size:>6} {r.seconds_per_epoch:>9.3f} {r.samples_per_second:>11,.0f} "
                   f"{r.gflops:>8.1f} {r.ratio_to_floor:>8.2f} {ratio} {r.threads:>8}  "
                   f"{' '.join(f'{t:.3f}' for t in r.runs)}")


# ------------------------------------------------------------------- predict
@cli.command("predict")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("input_paths", metavar="INPUT...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many most likely classes to show per image.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--save-preprocessed", "save_dir", metavar="DIR", type=click.Path(path_type=Path), default=None,
              help="Write, per image file, the picture the network saw as DIR/NAME.preprocessed.png "
                   "(DIR is created if missing; existing files are never overwritten).")
@click.option("--ink", type=click.Choice(["auto", "dark", "light"]), default="auto", show_default=True,
              help="Which side of the paper the ink of image files is on: found from the picture, or dark "
                   "(on light paper) or light (on dark paper), for a digit cropped so tight it is mostly ink.")
@click.option("--committee", "members", metavar="MODEL", multiple=True, type=click.Path(path_type=Path),
              help="Another model that votes with MODEL (repeat for more): the class probabilities of all of "
                   "them are averaged.")
def predict_command(model_path, input_paths, top_k, as_json, save_dir, ink, members):
    """Classify images: photos or drawings (PNG, JPEG, BMP, GIF, WebP; needs Pillow), directories of
    them, .npy arrays ((N, 784) or (N, 28, 28); uint8 0-255 or float 0-1) or IDX files.

    Image files are brought into MNIST's form first: ink found (either polarity), scaled into the
    20x20 box, centred by mass in 28x28. Prints, per image, the predicted class and its probability
    (softmax output for ce models; for mse models the sigmoid outputs normalised to sum to 1; with
    --committee, the mean of every model's probabilities). Every input is read before anything is printed or written. Of several files (or a directory), one
    that cannot be read is an error line of its own (an "error" entry in --json) and the others are
    predicted; the exit status is then 1.
    """
    from .inputs import expand_inputs, preprocessed_paths, read_inputs

    _check_distinct((model_path, *members))
    _check_committee_fits((model_path, *members))
    committee = Committee([load_model(path)[0] for path in (model_path, *members)],
                          names=[str(path) for path in (model_path, *members)])
    files = expand_inputs(input_paths, note=lambda message: click.echo(f"note: {message}", err=True))
    targets = preprocessed_paths(files, save_dir) if save_dir is not None else {}
    # one file named alone stops at its error as before; of several, each bad one costs only itself
    several = len(files) > 1 or any(Path(p).is_dir() for p in input_paths)
    batches = read_inputs(files, expected_width=committee.sizes[0], ink=ink, keep_going=several)
    images = np.concatenate([b.images for b in batches])
    scores = committee.predict_proba(images)
    top_k = min(top_k, committee.sizes[-1])
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    saved = _save_preprocessed(batches, targets)
    if save_dir is not None:
        click.echo(f"note: wrote {len(saved)} preprocessed image(s) to {save_dir}"
                   + ("" if saved else " (only image files get one)"), err=True)
    # One .npy or IDX file alone keeps the original output: lines "INDEX: ...", no file names.
    single_array = len(input_paths) == 1 and len(batches) == 1 and not batches[0].is_image
    # in input order: (file, index in it, is an image, row of scores, None), or (file, .., .., None, error)
    rows, n = [], 0
    for b in batches:
        if b.error is not None:
            rows.append((b.path, None, b.is_image, None, b.error))
        for i in range(len(b.images)):
            rows.append((b.path, i, b.is_image, n, None))
            n += 1
    failed = any(b.error is not None for b in batches)
    if as_json:
        for b in batches:
            if b.error is not None:
                click.echo(f"Error: {b.error}", err=True)
        document = {"model": str(model_path), "inputs": [str(p) for p in input_paths]}
        if members:
            document["committee"] = [str(p) for p in (model_path, *members)]
        if len(input_paths) == 1:
            document["input"] = str(input_paths[0])
        document["predictions"] = [
            {"file": str(path), "error": error} if error is not None else
            {"file": str(path), "index": i, "class": int(ranked[n, 0]),
             "top": [{"class": int(c), "probability": float(scores[n, c])} for c in ranked[n]],
             **({"preprocessed": str(saved[path])} if path in saved else {})}
            for path, i, _, n, error in rows]
        click.echo(json.dumps(document))
        return 1 if failed else 0
    for path, i, is_image, n, error in rows:
        if error is not None:
            click.echo(f"Error: {error}", err=True)
            continue
        name = str(i) if single_array else str(path) if is_image else f"{path}[{i}]"
        shown = "  ".join(f"{c} ({100 * scores[n, c]:.1f}%)" for c in ranked[n])
        click.echo(f"{name}: {shown}")
    return 1 if failed else 0


def _save_preprocessed(batches, targets) -> dict:
    """Write each image's model input as a PNG; on any failure remove what this run wrote, then fail."""
    from .images import save_input_png

    written = {}
    if not targets:
        return written
    try:
        next(iter(targets.values())).parent.mkdir(parents=True, exist_ok=True)
        for batch in batches:
            if batch.path in targets and batch.error is None:
                save_input_png(batch.images[0], targets[batch.path])
                written[batch.path] = targets[batch.path]
    except OSError as exc:
        for path in written.values():
            path.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {exc.filename or 'the preprocessed images'}: "
                                   f"{exc.strerror or exc}") from None
    return written


# ---------------------------------------------------------------------- plot
@cli.command("plot")
@click.argument("sources", metavar="[MODEL_OR_HISTORY]...", type=click.Path(path_type=Path), nargs=-1)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the PNG files [default: next to the input, or . for --distortions alone]. "
                   "Existing files of the same names are replaced only if they are PNGs.")
@data_options
@click.option("--split", type=click.Choice(SPLIT_NAMES), default="test", show_default=True,
              help="Split for the confusion matrix, the mistakes and --distortions.")
@click.option("--distortions", is_flag=True,
              help="Also draw distortions.png: 8 digits and their elastic and affine distortions "
                   "(those of configs/simard-elastic.toml and simard-affine.toml).")
def plot_command(sources, out_dir, data, no_download, split, distortions):
    """Draw PNGs: learning curves from a history .json; for a model .npy, also its confusion
    matrix, the digits it gets most confidently wrong, and its first layer's weights.

    Several runs (models, histories, or a folder of them such as a sweep's): their curves overlaid
    on shared axes, one PNG per quantity (compare.train-loss.png, ...), a colour per run."""
    from . import plot

    if len(sources) > 1 or (sources and sources[0].is_dir()):
        if distortions:
            raise click.UsageError("--distortions draws digits, not runs: give it without runs")
        from .compare import plot_runs

        for path in plot_runs(sources, out_dir):
            click.echo(f"wrote {path}")
        return
    source = sources[0] if sources else None
    if source is None and not distortions:
        raise click.UsageError("give a model .npy or history .json to plot, or --distortions")
    plot.require_matplotlib()
    out_dir = out_dir or (source.parent if source is not None else Path("."))
    if not out_dir.is_dir():
        raise click.UsageError(f"output directory {out_dir} does not exist")
    is_history = source is not None and source.suffix == ".json"
    stem = source.name.removesuffix(".json").removesuffix(".history").removesuffix(".npy") if source else ""
    kinds = () if source is None else ("curves", "speed") if is_history else \
        ("confusion", "mistakes", "weights", "curves", "speed")
    names = tuple(f"{stem}.{kind}.png" for kind in kinds) + (("distortions.png",) if distortions else ())
    pictures = OutputDir(out_dir, names)
    reads_data = distortions or (source is not None and not is_history)
    check_paths(inputs={"MODEL_OR_HISTORY": [source],
                        "the history": [None if source is None or is_history else history_path(source)],
                        _data_label(data): data_files(resolve_data_path(data)) if reads_data else []},
                outputs={"--out-dir": [pictures]},
                replaceable=[("--out-dir", path, is_png_file, "a PNG picture", f"{path}, which --out-dir {out_dir} "
                              "would write,") for path in pictures.files()])
    written = []
    if distortions:
        from ..data.distort import PAPER_ELASTIC, SIMARD_AFFINE

        x, _ = obtain_dataset(data, no_download, progress=sys.stderr.isatty()).split(split)
        rows = {"elastic 1": PAPER_ELASTIC, "elastic 2": PAPER_ELASTIC, "affine 1": SIMARD_AFFINE,
                "affine 2": SIMARD_AFFINE}  # two random draws of each
        written.append(plot.plot_distortions(x[:8], rows, out_dir / "distortions.png"))
    if source is None:
        pass
    elif is_history:
        history = load_history(source)
        written.append(plot.plot_history(history, out_dir / f"{stem}.curves.png"))
        if plot.has_speed(history):
            written.append(plot.plot_speed(history, out_dir / f"{stem}.speed.png"))
    else:
        model, _ = load_model(source)
        dataset = obtain_dataset(data, no_download, progress=sys.stderr.isatty())
        check_model_fits_data(model, dataset, str(source))
        x, y = dataset.split(split)
        probabilities = model.predict_proba(x)
        predictions = probabilities.argmax(axis=1)
        confusion = confusion_matrix(y, predictions, model.sizes[-1])
        written.append(plot.plot_confusion(confusion, out_dir / f"{stem}.confusion.png",
                                           title=f"Confusion matrix, {split} split "
                                                 f"({100 * np.mean(predictions == y):.2f}% correct)"))
        if is_square_image(model.sizes[0]):
            wrong = plot.most_confident_mistakes(probabilities, y)
            written.append(plot.plot_mistakes(x[wrong], y[wrong], predictions[wrong],
                                              probabilities[wrong, predictions[wrong]],
                                              out_dir / f"{stem}.mistakes.png"))
            written.append(plot.plot_weights(model.weights[0], out_dir / f"{stem}.weights.png"))
        else:
            click.echo(f"note: the {model.sizes[0]}-feature inputs are not square images; "
                       "no pictures of digits or weights", err=True)
        history_path = history_path(source)
        if history_path.exists():
            history = load_history(history_path)
            written.append(plot.plot_history(history, out_dir / f"{stem}.curves.png"))
            if plot.has_speed(history):
                written.append(plot.plot_speed(history, out_dir / f"{stem}.speed.png"))
    for path in written:
        click.echo(f"wrote {path}")


# ----------------------------------------------------------------- gradcheck
@cli.command("gradcheck")
@table_option("sizes", default="784,30,10")
@table_option("loss")
@table_option("activation", help="Hidden units (relu is checked where no unit sits on its kink at 0).")
@table_option("batch_size", default=8)
@table_option("seed")
@click.option("--max-entries", type=click.IntRange(min=0), default=500, show_default=True,
              help="Entries compared per array, chosen at random (0: all of them).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def gradcheck_command(sizes, loss, activation, batch_size, seed, max_entries, as_json):
    """Compare backprop's gradients with central differences, layer by layer (float64).

    Exits with code 1 if any relative error reaches the tolerance.
    """
    from .gradcheck import TOLERANCE, gradient_check

    _check_memory(memory.gradcheck_estimate(sizes, batch_size, engine="reference"))  # the core's own arrays
    rows = gradient_check(sizes, loss, batch_size, seed, max_entries or None, activation=activation)
    passed = all(row.passed for row in rows)
    if as_json:
        click.echo(json.dumps({"sizes": list(sizes), "loss": loss, "activation": activation,
                               "tolerance": TOLERANCE, "passed": passed,
                               "rows": [{**vars(r), "shape": list(r.shape), "passed": r.passed} for r in rows]}))
    else:
        click.echo(f"gradient check of {'-'.join(map(str, sizes))} ({activation} hidden, {loss}, float64, "
                   f"batch {batch_size}): "
                   f"backprop vs central differences")
        click.echo(f"{'layer':>5} {'param':>5} {'shape':>12} {'checked':>8} {'rel. error':>11}  result")
        for r in rows:
            shape = "x".join(map(str, r.shape))
            click.echo(f"{r.layer:>5} {r.name:>5} {shape:>12} {r.checked:>8} {r.relative_error:>11.2e}  "
                       f"{'pass' if r.passed else 'FAIL'}")
        click.echo(f"{'all passed' if passed else 'FAILED'} (tolerance {TOLERANCE:g})")
    if not passed:
        raise SystemExit(1)


# ---------------------------------------------------------------------- info
@cli.command("info")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def info_command(model_path, as_json):
    """Show a model's architecture, parameter count, training settings and recorded accuracy."""
    model, meta = load_model(model_path)
    if as_json:
        click.echo(json.dumps({**meta, "parameters": model.n_parameters}, sort_keys=True))
        return
    click.echo(f"model        {model_path}")
    click.echo(f"layers       {' -> '.join(map(str, model.sizes))}  "
               f"({model.activation} hidden, {'softmax' if model.loss == 'ce' else 'sigmoid'} output)")
    click.echo(f"loss         {model.loss}")
    click.echo(f"parameters   {model.n_parameters:,}")
    click.echo(f"dtype        {meta.get('dtype')}   format version {meta.get('format_version')}")
    if meta.get("val_accuracy") is not None:
        run = f" of {meta['epochs_run']} run" if meta.get("epochs_run") else ""
        click.echo(f"validation   {100 * meta['val_accuracy']:.2f}% (the best epoch, {meta.get('best_epoch')}{run})")
    settings = meta.get("settings") or {}
    if settings:
        click.echo("settings     " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    if meta.get("data"):
        click.echo(f"data         {meta['data']}")
    history = history_path(model_path)
    if history.is_file():
        from .history import format_speed_table

        table = format_speed_table(load_history(history))
        if table:
            click.echo(f"\nlearning speed per layer, ‖∂C/∂b_l‖ (Nielsen's speed), from {history}:")
            click.echo(table)


# --------------------------------------------------------------------- serve
class ServeCommand(GroupedHelpCommand):
    """``serve --help``: how to serve first, then the form's presets under train's headings."""

    group_order = ("Serving",) + GROUPS
    other_groups = {"config": "Files", "out_dir": "Files", "host": "Serving", "port": "Serving",
                    "open_browser": "Serving", "verbose": "Serving"}


@cli.command("serve", cls=ServeCommand)
@click.argument("model_path", metavar="[MODEL]", type=click.Path(path_type=Path), required=False)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback lets other machines use the page.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port; the URL printed says which).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default web browser.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request on stderr.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), is_eager=True, expose_value=False,
              callback=_load_config_defaults, help="TOML file of settings to preset the form with; explicit flags "
                                                   "override it.")
@table_option("data", help="Data the page trains on: mnist.pkl.gz file or directory of MNIST IDX files "
                           "[default: $BPTRAIN_DATA or data/mnist.pkl.gz]")
@table_option("no_download", help="Do not download mnist.pkl.gz when it is missing from the default location "
                                  "(serve downloads it only without a MODEL: with one, the page draws anyway).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The folder the page's \"Save model\" writes into (plain file names only; an existing file is "
                   "replaced only if it is a bptrain model).")
@table_option("out", default=None, show_default=False,
              help="Save each run's best model here when it ends, also when the server is stopped (Ctrl-C, "
                   "SIGTERM), with its history as NAME.history.json [default: runs are saved only from the page]. "
                   "An existing file is replaced only if it is a bptrain model.")
@click_options(FORM_OPTIONS)
def serve_command(model_path, host, port, open_browser, verbose, data, no_download, out_dir, out, **settings):
    """Serve a page to train a network on and to draw digits for it to read (Ctrl-C stops).

    Press Train to watch a network learn: its loss and accuracy, its first layer's weights and how fast
    each layer learns, live; pause it, change the learning rate and the momentum while it runs, save it,
    and replay it epoch by epoch. The train options preset the page's form (the same defaults and checks
    as `bptrain train`). With MODEL the page opens on that model and can continue training it. Drawings
    and image files are read by the network as it is at that moment: the ten class probabilities, the
    28x28 image it sees and every hidden layer's activations.
    """
    from . import images
    from . import server
    from .live import LiveTraining

    ctx = click.get_current_context()
    images.require_pillow()
    model, meta, predictor = None, None, None
    if model_path is not None:
        model, meta = load_model(model_path)
        predictor = server.Predictor(model, meta)  # checks that its inputs are square images
    if not out_dir.is_dir():
        raise click.UsageError(f"--out-dir {out_dir} is not a directory")
    check_writable(out_dir / "model.npy", "--out-dir")
    data_path = resolve_data_path(data)
    inputs = {_data_label(data): data_files(data_path), "--config": [ctx.meta.get(CONFIG_PATH_KEY)],
              "MODEL": [model_path]}
    if out is not None:
        out = Path(out)
        check_writable(out, "model file")
        check_paths(inputs=inputs, outputs={"--out": [out], "its history": [history_path(out)]},
                    replaceable=[("--out", out, is_model_file, "a bptrain model"),
                                 ("--out", history_path(out), is_history_file, "a bptrain history JSON",
                                  f"its history {history_path(out)}")])
    dataset, problem = _data_to_serve(data, data_path, no_download, model_path is None)
    if dataset is None and model is None:
        raise click.ClickException(f"nothing to serve: {problem}; give a MODEL to draw with, or data to train on")
    live = LiveTraining(dataset=dataset, data_problem=problem, model=model, meta=meta, presets=settings,
                        out_dir=out_dir, out=out, inputs=inputs, say=lambda line: click.echo(line, err=True))
    httpd = server.make_server(predictor, host, port, verbose=verbose, live=live)
    if problem:
        click.echo(f"note: the page can draw but not train: {problem}", err=True)
    if not server.is_loopback(host):
        click.echo(f"warning: listening on {host}, not loopback: anyone who can reach this machine "
                   "can use the page", err=True)

    def stop_training():
        stopped = live.close()
        if stopped is not None and out is None:
            click.echo(f"stopped the run in progress (epoch {stopped.epoch} of {stopped.last_epoch}); it was not "
                       "saved (give --out FILE to save every run)", err=True)

    server.serve(httpd, open_browser=open_browser, say=click.echo, on_stop=stop_training)


def _data_to_serve(data: Path | None, path: Path, no_download: bool, may_download: bool):
    """(dataset, None), or (None, why there is none). Data that was named (--data, $BPTRAIN_DATA) must load:
    its problems are errors. The default file is downloaded when missing only if ``may_download``."""
    named = data is not None or bool(os.environ.get(DATA_ENV_VAR))
    if not path.exists():
        if named or no_download or not may_download:
            from ..data.loader import missing_data_message

            if named:
                raise DataError(missing_data_message(path))
            return None, missing_data_message(path) + (" (automatic download disabled by --no-download)"
                                                       if no_download else "")
        from ..data.download import ensure_data

        try:
            path = stoppable_download(ensure_data, path, allow_download=True, progress=sys.stderr.isatty())
        except DataError as exc:
            return None, str(exc)
    try:
        return load_dataset(path), None
    except DataError as exc:
        if named:
            raise
        return None, str(exc)


cli.add_command(sweep_command)
cli.add_command(compare_command)


def main():
    """Console-script entry point."""
    cli(prog_name="bptrain")
