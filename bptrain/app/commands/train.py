"""``bptrain train``: check the run (:mod:`bptrain.app.runs`), train it, save the best model and its history."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ...core.errors import TrainingDiverged
from ...core.network import DTYPES
from ...core.training import TrainSettings
from ...data.loader import resolve_data_path
from ...data.model_io import load_model, save_model
from ...engines import train
from .. import memory, runs
from ..compare import parameters_sha256
from ..history import history_path, training_metadata, write_history
from ..options import SETTINGS_FIELDS, TRAIN_OPTIONS, GroupedHelpCommand, click_options
from ..paths import data_files, is_history_file, is_model_file
from ..stopping import Stopped, StopSignals, exit_status
from .common import (
    CONFIG_PATH_KEY,
    EXIT_INTERRUPTED,
    check_memory,
    data_label,
    given,
    load_config_defaults,
    obtain_dataset,
    stopped_by,
)


@click.command("train", cls=GroupedHelpCommand)
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), is_eager=True, expose_value=False,
              callback=load_config_defaults, help="TOML file of settings; explicit flags override it.")
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
    runs.check_optimizer(learning)  # settings each option allows but not together, e.g. --nesterov with --momentum 0
    say = (lambda *a, **k: None) if quiet else click.echo
    progress = not quiet and sys.stderr.isatty()
    dataset = obtain_dataset(data, no_download, progress)  # first: its shape is part of what the run needs
    check_memory(memory.training_estimate(sizes, batch_size, resume=resume, dtype=dtype, augment=augment,
                                          data=memory.DataShape.of(dataset), engine=engine, **learning))
    model, init, first_epoch = _model_to_train(ctx, resume, sizes, loss, activation, init, dtype, seed)
    initial_sha256 = parameters_sha256(model.weights, model.biases)  # which runs started alike (bptrain compare)
    _note_unused_options(ctx, learning["optimizer"])
    runs.check_model_fits_data(model.sizes, dataset, "--sizes" if resume is None else str(resume))
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
            click.echo(f"{stopped_by(signals.signum)} before the model could be saved; {out} was not written",
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
            click.echo(f"{stopped_by(signals.signum)}: saved the model reached so far ({where}) to {out}", err=True)
        else:  # the signal came while a finished run was being saved: the save completed first
            click.echo(f"{stopped_by(signals.signum)} while saving; {out} and {history} were saved completely",
                       err=True)
        ctx.exit(exit_status(signals.signum) if signals.stopped else EXIT_INTERRUPTED)
    stop = " (early stopping)" if result.stopped_early else ""
    say(f"saved {out}: best validation accuracy {100 * result.best_val_accuracy:.2f}% at epoch "
        f"{result.best_epoch} of {trained_epochs}{stop}; history in {history}")


def _check_train_files(ctx, out: Path, history: Path, data, resume) -> None:
    """Before any work: the outputs can be written, and none of them is an input or someone else's file."""
    runs.check_writable(out, "model file", "out")
    runs.check_writable(history, "history file", "history")
    runs.check_files(inputs={data_label(data): data_files(resolve_data_path(data)),
                             "--config": [ctx.meta.get(CONFIG_PATH_KEY)], "--resume": [resume]},
                     outputs={"--out": [out], "--history": [history]},
                     allow={("--out", "--resume")},  # continuing in place: written atomically, and only when better
                     replaceable=[("--out", out, is_model_file, "a bptrain model"),
                                  ("--history", history, is_history_file, "a bptrain history JSON")])


def _model_to_train(ctx, resume, sizes, loss, activation, init, dtype, seed):
    """(model, its init, the number of its first epoch): the resumed model, or a new one."""
    if resume is None:
        return runs.new_network(sizes, loss, activation, init, dtype, seed), runs.initialisation(activation, init), 1
    model, meta = load_model(resume, dtype=DTYPES[dtype])
    runs.check_continued_model(model, {"sizes": sizes, "loss": loss, "activation": activation},
                               {name for name in ("sizes", "loss", "activation") if given(ctx, name)})
    return model, meta.get("init"), int(meta.get("epochs_trained", 0)) + 1


def _note_unused_options(ctx, optimizer: str) -> None:
    """Say (even with -q) when a command-line option does not apply to the optimizer; a config may list them all."""
    unused = ("momentum", "nesterov") if optimizer == "adam" else ("beta1", "beta2", "eps")
    for name in unused:
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            click.echo(f"note: --{name} does not apply to --optimizer {optimizer}; ignored", err=True)


def _fit_to_data(ctx, dataset, learning: dict, augment: int, batch_size: int, quiet: bool):
    """(augment, batch_size) that the data allows: shifts and distortions need square images
    (:func:`bptrain.app.runs.augment_for`), and a batch cannot be larger than the training set."""
    given_names = {"augment"} if given(ctx, "augment") else set()
    fitted = runs.augment_for({**learning, "augment": augment}, dataset.n_features, given_names)
    if fitted != augment and not quiet:
        click.echo(f"note: the {dataset.n_features}-feature inputs are not square images; augmentation is off",
                   err=True)
    n_train = len(dataset.train.x)
    if batch_size > n_train:
        # shown even with --quiet: it changes what the user asked for
        click.echo(f"note: --batch-size {batch_size} is larger than the {n_train} training samples; "
                   f"using {n_train}", err=True)
        batch_size = n_train
    return fitted, batch_size
