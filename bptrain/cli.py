"""The ``bptrain`` command: parse, validate, call, print. No math here.

Every user error becomes one line on stderr and a non-zero exit code: the
library raises :class:`BptrainError` subclasses, and :class:`BptrainGroup`
turns them into click errors so nobody sees a traceback for a typo.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import click
import numpy as np

from . import __version__
from .augment import is_square_image
from .config import load_config, parse_sizes
from .errors import BptrainError, DataError, TrainingDiverged
from .loader import DEFAULT_DATA_PATH, SPLIT_NAMES, load_dataset, resolve_data_path
from .metrics import confusion_matrix, format_confusion, format_per_class, per_class_accuracy
from .model_io import atomic_write, load_model, save_model
from .network import DTYPES, INITS, LOSSES, MLP
from .optim import SCHEDULES
from .train import TrainSettings, train

EXIT_INTERRUPTED = 130
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2
DEFAULTS = TrainSettings()
# The library leaves augmentation off (it needs square images); the command, made for MNIST, turns it on
# and turns it off again, with a note, for inputs that are not square images.
CLI_AUGMENT = 1


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
        except MemoryError:
            raise click.ClickException("out of memory; try a smaller --batch-size or network") from None


class SizesType(click.ParamType):
    """Layer widths written as 784,128,64,10."""

    name = "SIZES"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_sizes(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class FiniteFloat(click.FloatRange):
    """A float range that also refuses nan and inf (click's FloatRange lets nan through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _load_config_defaults(ctx: click.Context, param, value):
    """Eager --config: its settings become the defaults of the other options, so flags still win."""
    if value is not None:
        try:
            settings = load_config(value)
        except BptrainError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        ctx.default_map = {**(ctx.default_map or {}), **settings}
    return value


@click.group(cls=BptrainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bptrain")
def cli():
    """Train and evaluate a sigmoid MLP on MNIST with backpropagation written out in NumPy."""


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
        from .download import ensure_data

        path = ensure_data(path, allow_download=not no_download, progress=progress)
    return load_dataset(path, n_classes=n_classes)


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


def _history_path(out: Path) -> Path:
    name = out.name[:-4] if out.name.endswith(".npy") else out.name
    return out.with_name(name + ".history.json")


# --------------------------------------------------------------------- train
@cli.command("train")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), is_eager=True, expose_value=False,
              callback=_load_config_defaults, help="TOML file of settings; explicit flags override it.")
@click.option("--sizes", type=SizesType(), default="784,128,64,10", show_default=True,
              help="Layer widths: input, hidden..., classes.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=DEFAULTS.lr, show_default=True,
              help="Learning rate (initial, if a schedule is used).")
@click.option("--epochs", type=click.IntRange(min=1), default=DEFAULTS.epochs, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True,
              help="Mini-batch size; clamped to the training set size with a notice.")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULTS.seed, show_default=True,
              help="Seeds initialisation and shuffling: same seed, same model file.")
@click.option("--loss", type=click.Choice(LOSSES), default="ce", show_default=True,
              help="ce: softmax output, cross-entropy. mse: sigmoid output, quadratic cost.")
@click.option("--init", type=click.Choice(INITS), default="xavier", show_default=True,
              help="xavier: Glorot-uniform weights. normal: standard normal weights and biases.")
@click.option("--dtype", type=click.Choice(tuple(DTYPES)), default="float32", show_default=True,
              help="float32 is twice as fast; float64 for exactness work.")
@click.option("--momentum", type=FiniteFloat(min=0, max=1, max_open=True), default=DEFAULTS.momentum,
              show_default=True)
@click.option("--nesterov/--no-nesterov", default=DEFAULTS.nesterov, show_default=True,
              help="Nesterov momentum instead of classical.")
@click.option("--weight-decay", type=FiniteFloat(min=0), default=DEFAULTS.weight_decay, show_default=True,
              help="L2 penalty on the weights (not the biases).")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=DEFAULTS.schedule, show_default=True,
              help="Learning-rate schedule over the epochs.")
@click.option("--step-size", type=click.IntRange(min=1), default=DEFAULTS.step_size, show_default=True,
              help="Epochs between decays of the step schedule.")
@click.option("--gamma", type=FiniteFloat(min=0, min_open=True), default=DEFAULTS.gamma, show_default=True,
              help="Decay factor of the step schedule.")
@click.option("--min-lr", type=FiniteFloat(min=0), default=DEFAULTS.min_lr, show_default=True,
              help="Final learning rate of the cosine schedule.")
@click.option("--early-stopping", type=click.IntRange(min=0), default=DEFAULTS.early_stopping,
              show_default=True, metavar="N", help="Stop after N epochs without a better validation accuracy (0: off).")
@click.option("--augment", type=click.IntRange(min=0, max=4), default=CLI_AUGMENT, show_default=True,
              metavar="PIXELS", help="Shift each training image by up to PIXELS, anew each epoch (0: off).")
# Distortions of the training images, anew each epoch (README, "Distortions"); all 0: off.
@click.option("--elastic-alpha", type=FiniteFloat(min=0), default=DEFAULTS.elastic_alpha, show_default=True,
              metavar="ALPHA", help="Elastic distortion strength α in pixels (0: off; 34 in Simard et al. 2003).")
@click.option("--elastic-sigma", type=FiniteFloat(min=0, min_open=True), default=DEFAULTS.elastic_sigma,
              show_default=True, metavar="SIGMA", help="Smoothness σ of the elastic field, in pixels.")
@click.option("--affine-rotate", type=FiniteFloat(min=0, max=180), default=DEFAULTS.affine_rotate,
              show_default=True, metavar="DEG", help="Rotate by up to ±DEG degrees.")
@click.option("--affine-scale", type=FiniteFloat(min=0, max=1, max_open=True), default=DEFAULTS.affine_scale,
              show_default=True, metavar="FRACTION", help="Scale by a factor in [1 − FRACTION, 1 + FRACTION].")
@click.option("--affine-shear", type=FiniteFloat(min=0, max=1), default=DEFAULTS.affine_shear,
              show_default=True, metavar="FRACTION", help="Shear horizontally by up to ±FRACTION (x += FRACTION · y).")
@click.option("--affine-shift", type=FiniteFloat(min=0, max=4), default=DEFAULTS.affine_shift,
              show_default=True, metavar="PIXELS", help="Translate by up to ±PIXELS (subpixel) on each axis.")
@data_options
@click.option("--out", type=click.Path(path_type=Path), default=Path("model.npy"), show_default=True,
              help="Where to save the model (.npy).")
@click.option("--history", type=click.Path(path_type=Path), default=None,
              help="Where to write the per-epoch history JSON [default: next to --out, as NAME.history.json].")
@click.option("--resume", type=click.Path(path_type=Path), default=None,
              help="Continue training the model in this file (its architecture and loss are used).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-epoch lines.")
def train_command(sizes, lr, epochs, batch_size, seed, loss, init, dtype, momentum, nesterov, weight_decay,
                  schedule, step_size, gamma, min_lr, early_stopping, augment, elastic_alpha, elastic_sigma,
                  affine_rotate, affine_scale, affine_shear, affine_shift, data, no_download, out, history,
                  resume, quiet):
    """Train a network and save it (the best epoch by validation accuracy) to a .npy file."""
    ctx = click.get_current_context()
    out = Path(out)
    history = Path(history) if history else _history_path(out)
    check_writable(out, "model file")
    check_writable(history, "history file")
    say = (lambda *a, **k: None) if quiet else click.echo
    note = (lambda text: None) if quiet else (lambda text: click.echo(text, err=True))
    progress = not quiet and sys.stderr.isatty()

    first_epoch = 1
    if resume is not None:
        model, meta = load_model(resume, dtype=DTYPES[dtype])
        if _given(ctx, "sizes") and tuple(sizes) != model.sizes:
            raise click.UsageError(f"--sizes {','.join(map(str, sizes))} conflicts with the resumed model's "
                                   f"sizes {','.join(map(str, model.sizes))}; drop --sizes when resuming")
        if _given(ctx, "loss") and loss != model.loss:
            raise click.UsageError(f"--loss {loss} conflicts with the resumed model's loss {model.loss}; "
                                   "drop --loss when resuming")
        first_epoch = int(meta.get("epochs_trained", 0)) + 1
    else:
        model = MLP(sizes, loss, dtype=DTYPES[dtype], init=init, seed=seed)

    dataset = obtain_dataset(data, no_download, progress)
    check_model_fits_data(model, dataset, "--sizes" if resume is None else str(resume))
    n_train = len(dataset.train.x)
    distortions = {"elastic_alpha": elastic_alpha, "affine_rotate": affine_rotate, "affine_scale": affine_scale,
                   "affine_shear": affine_shear, "affine_shift": affine_shift}
    if any(distortions.values()) and not is_square_image(dataset.n_features):
        used = ", ".join("--" + name.replace("_", "-") for name, value in distortions.items() if value)
        raise click.UsageError(f"{used} distort square images, but the inputs of {dataset.source} have "
                               f"{dataset.n_features} features")
    if augment and not is_square_image(dataset.n_features):
        if _given(ctx, "augment"):
            raise click.UsageError(f"--augment shifts square images, but the inputs of {dataset.source} have "
                                   f"{dataset.n_features} features; use --augment 0")
        note(f"note: the {dataset.n_features}-feature inputs are not square images; augmentation is off")
        augment = 0
    if batch_size > n_train:
        # shown even with --quiet: it changes what the user asked for
        click.echo(f"note: --batch-size {batch_size} is larger than the {n_train} training samples; "
                   f"using {n_train}", err=True)
        batch_size = n_train

    settings = TrainSettings(lr=lr, epochs=epochs, batch_size=batch_size, seed=seed, momentum=momentum,
                             nesterov=nesterov, weight_decay=weight_decay, schedule=schedule,
                             step_size=step_size, gamma=gamma, min_lr=min_lr, early_stopping=early_stopping,
                             augment=augment, elastic_sigma=elastic_sigma, **distortions)
    say(f"training {'-'.join(map(str, model.sizes))} ({model.loss}, {model.dtype.name}) on {n_train} images "
        f"from {dataset.source}: {epochs} epochs, batch {batch_size}, lr {lr:g}")
    last_epoch = first_epoch + epochs - 1

    def report(record, improved):
        say(f"epoch {record.epoch:>3}/{last_epoch}  train loss {record.train_loss:.4f}  "
            f"val loss {record.val_loss:.4f}  val acc {100 * record.val_accuracy:6.2f}%  "
            f"lr {record.lr:.4g}  {record.seconds:5.1f}s{'  *' if improved else ''}")

    try:
        result = train(model, dataset, settings, progress=progress, on_epoch=report, first_epoch=first_epoch)
    except TrainingDiverged as exc:
        raise click.ClickException(f"{exc}; {out} was not written") from None

    trained_epochs = first_epoch - 1 + len(result.history)
    metadata = {
        "bptrain_version": __version__,
        "init": init if resume is None else meta.get("init"),
        "settings": settings.to_dict(),
        # the saved parameters are those of the best epoch: that many epochs trained them
        # (epochs are numbered across resumes, so --resume continues from here)
        "epochs_trained": result.best_epoch or first_epoch - 1,
        "epochs_run": trained_epochs,
        "best_epoch": result.best_epoch,
        "val_accuracy": None if math.isnan(result.best_val_accuracy) else result.best_val_accuracy,
        "data": dataset.source,
    }
    save_model(model, out, metadata)
    _write_history(history, result, metadata)
    if result.interrupted:
        where = (f"the best so far, epoch {result.best_epoch}" if result.best_epoch
                 else "mid-epoch, before any validation")
        click.echo(f"interrupted: saved the model reached so far ({where}) to {out}", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    stop = " (early stopping)" if result.stopped_early else ""
    say(f"saved {out}: best validation accuracy {100 * result.best_val_accuracy:.2f}% at epoch "
        f"{result.best_epoch} of {trained_epochs}{stop}; history in {history}")


def _write_history(path: Path, result, metadata: dict) -> None:
    document = {
        "epochs": [vars(record) for record in result.history],
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "interrupted": result.interrupted,
        **{k: metadata[k] for k in ("settings", "bptrain_version", "data")},
    }
    text = json.dumps(document, indent=2)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def check_model_fits_data(model: MLP, dataset, source: str) -> None:
    if model.sizes[0] != dataset.n_features:
        raise DataError(f"{source} has input width {model.sizes[0]} but the images in {dataset.source} have "
                        f"{dataset.n_features} features")
    if model.sizes[-1] != dataset.n_classes:
        raise DataError(f"{source} has {model.sizes[-1]} output classes but {dataset.source} has labels for "
                        f"{dataset.n_classes} classes")


# ---------------------------------------------------------------------- eval
@cli.command("eval")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@data_options
@click.option("--split", type=click.Choice(SPLIT_NAMES), default="test", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def eval_command(model_path, data, no_download, split, as_json):
    """Report accuracy, loss, per-class accuracy and the confusion matrix of a saved model."""
    model, meta = load_model(model_path)
    dataset = obtain_dataset(data, no_download, progress=not as_json and sys.stderr.isatty())
    check_model_fits_data(model, dataset, str(model_path))
    x, y = dataset.split(split)
    loss, predictions = model.evaluate(x, y)
    accuracy = float(np.mean(predictions == y))
    confusion = confusion_matrix(y, predictions, model.sizes[-1])
    per_class = per_class_accuracy(confusion)
    if as_json:
        click.echo(json.dumps({
            "model": str(model_path), "data": dataset.source, "split": split, "samples": int(len(y)),
            "accuracy": accuracy, "loss": loss, "loss_kind": model.loss,
            "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
            "confusion_matrix": confusion.tolist(),
        }))
        return
    click.echo(f"model {model_path} ({'-'.join(map(str, model.sizes))}, {model.loss}) on the {split} split of "
               f"{dataset.source} ({len(y)} images)")
    click.echo(f"accuracy {100 * accuracy:.2f}%   loss {loss:.4f}")
    click.echo("")
    click.echo(format_per_class(per_class, confusion))
    click.echo("")
    click.echo("confusion matrix (rows: true class, columns: predicted)")
    click.echo(format_confusion(confusion))


# ------------------------------------------------------------------ download
@cli.command("download")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_PATH.parent,
              show_default=True, help="Directory to put mnist.pkl.gz in.")
@click.option("--force", is_flag=True, help="Download again even if the file is already there.")
def download_command(dest, force):
    """Fetch mnist.pkl.gz from known mirrors and verify its size and MD5."""
    from .download import MNIST_FILENAME, download_mnist

    target = dest / MNIST_FILENAME
    if target.exists() and not force:
        click.echo(f"{target} is already there; use --force to download it again")
        return
    path = download_mnist(dest, force=force, progress=sys.stderr.isatty())
    click.echo(f"downloaded and verified {path}")


# --------------------------------------------------------------------- bench
@cli.command("bench")
@click.option("--sizes", type=SizesType(), default="784,128,64,10", show_default=True)
@click.option("--batch-size", "batch_sizes", type=click.IntRange(min=1), multiple=True, default=(1, 10, 128),
              show_default=True, help="Repeat the option to time several batch sizes.")
@click.option("--loss", type=click.Choice(LOSSES), default="ce", show_default=True)
@click.option("--dtype", type=click.Choice(tuple(DTYPES)), default="float32", show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed epochs per batch size (the median is reported).")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True,
              help="Untimed epochs before the timed ones.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Use only the first N training images [default: all].")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Data to time on [default: $BPTRAIN_DATA or data/mnist.pkl.gz; synthetic data of the "
                   "same shape when absent].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_command(sizes, batch_sizes, loss, dtype, runs, warmup, samples, data, as_json):
    """Time training epochs and compare them with this machine's matrix-multiply peak."""
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
    rows, peak = bench.bench(sizes, loss, x, y, batch_sizes, dtype=DTYPES[dtype], runs=runs, warmup=warmup)
    if as_json:
        click.echo(json.dumps({"sizes": list(sizes), "loss": loss, "dtype": dtype, "samples": len(x),
                               "data": source, "gemm_peak_gflops": peak, "rows": [r.to_dict() for r in rows]}))
        return
    click.echo(f"{'-'.join(map(str, sizes))} {loss} {dtype}, {len(x)} samples per epoch from {source}")
    click.echo(f"GEMM peak {peak:.1f} GFLOP/s -> matmul floor {rows[0].floor_seconds:.3f} s/epoch")
    click.echo(f"{'batch':>6} {'s/epoch':>9} {'samples/s':>11} {'GFLOP/s':>8} {'x floor':>8}  runs")
    for r in rows:
        click.echo(f"{r.batch_size:>6} {r.seconds_per_epoch:>9.3f} {r.samples_per_second:>11,.0f} "
                   f"{r.gflops:>8.1f} {r.ratio_to_floor:>8.2f}  {' '.join(f'{t:.3f}' for t in r.runs)}")


# ------------------------------------------------------------------- predict
@cli.command("predict")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many most likely classes to show per image.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def predict_command(model_path, input_path, top_k, as_json):
    """Classify images: a .npy array ((N, 784) or (N, 28, 28); uint8 0-255 or float 0-1) or an IDX file.

    Prints, per image, the predicted class and its probability (softmax output
    for ce models; for mse models the sigmoid outputs normalised to sum to 1).
    """
    from .inputs import read_images

    model, _ = load_model(model_path)
    images = read_images(input_path, expected_width=model.sizes[0])
    scores = model.predict_proba(images).astype(np.float64)
    if model.loss == "mse":
        scores /= np.maximum(scores.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    top_k = min(top_k, model.sizes[-1])
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    if as_json:
        click.echo(json.dumps({"model": str(model_path), "input": str(input_path), "predictions": [
            {"index": i, "class": int(ranked[i, 0]),
             "top": [{"class": int(c), "probability": float(scores[i, c])} for c in ranked[i]]}
            for i in range(len(images))]}))
        return
    for i in range(len(images)):
        shown = "  ".join(f"{c} ({100 * scores[i, c]:.1f}%)" for c in ranked[i])
        click.echo(f"{i}: {shown}")


# ---------------------------------------------------------------------- plot
@cli.command("plot")
@click.argument("source", metavar="[MODEL_OR_HISTORY]", type=click.Path(path_type=Path), required=False)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the PNG files [default: next to the input, or . for --distortions alone].")
@data_options
@click.option("--split", type=click.Choice(SPLIT_NAMES), default="test", show_default=True,
              help="Split for the confusion matrix, the mistakes and --distortions.")
@click.option("--distortions", is_flag=True,
              help="Also draw distortions.png: 8 digits and their elastic and affine distortions "
                   "(those of configs/simard-elastic.toml and simard-affine.toml).")
def plot_command(source, out_dir, data, no_download, split, distortions):
    """Draw PNGs: learning curves from a history .json; for a model .npy, also its confusion
    matrix, the digits it gets most confidently wrong, and its first layer's weights."""
    from . import plot

    if source is None and not distortions:
        raise click.UsageError("give a model .npy or history .json to plot, or --distortions")
    plot.require_matplotlib()
    out_dir = out_dir or (source.parent if source is not None else Path("."))
    if not out_dir.is_dir():
        raise click.UsageError(f"output directory {out_dir} does not exist")
    written = []
    if distortions:
        from .distort import PAPER_ELASTIC, SIMARD_AFFINE

        x, _ = obtain_dataset(data, no_download, progress=sys.stderr.isatty()).split(split)
        rows = {"elastic 1": PAPER_ELASTIC, "elastic 2": PAPER_ELASTIC, "affine 1": SIMARD_AFFINE,
                "affine 2": SIMARD_AFFINE}  # two random draws of each
        written.append(plot.plot_distortions(x[:8], rows, out_dir / "distortions.png"))
    stem = source.name.removesuffix(".json").removesuffix(".history").removesuffix(".npy") if source else ""
    if source is None:
        pass
    elif source.suffix == ".json":
        written.append(plot.plot_history(plot.load_history(source), out_dir / f"{stem}.curves.png"))
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
        history = _history_path(source)
        if history.exists():
            written.append(plot.plot_history(plot.load_history(history), out_dir / f"{stem}.curves.png"))
    for path in written:
        click.echo(f"wrote {path}")


# ----------------------------------------------------------------- gradcheck
@cli.command("gradcheck")
@click.option("--sizes", type=SizesType(), default="784,30,10", show_default=True)
@click.option("--loss", type=click.Choice(LOSSES), default="ce", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--max-entries", type=click.IntRange(min=0), default=500, show_default=True,
              help="Entries compared per array, chosen at random (0: all of them).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def gradcheck_command(sizes, loss, batch_size, seed, max_entries, as_json):
    """Compare backprop's gradients with central differences, layer by layer (float64).

    Exits with code 1 if any relative error reaches the tolerance.
    """
    from .gradcheck import TOLERANCE, gradient_check

    rows = gradient_check(sizes, loss, batch_size, seed, max_entries or None)
    passed = all(row.passed for row in rows)
    if as_json:
        click.echo(json.dumps({"sizes": list(sizes), "loss": loss, "tolerance": TOLERANCE, "passed": passed,
                               "rows": [{**vars(r), "shape": list(r.shape), "passed": r.passed} for r in rows]}))
    else:
        click.echo(f"gradient check of {'-'.join(map(str, sizes))} ({loss}, float64, batch {batch_size}): "
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
               f"(sigmoid hidden, {'softmax' if model.loss == 'ce' else 'sigmoid'} output)")
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


def main():
    """Console-script entry point."""
    cli(prog_name="bptrain")
