"""``bptrain train``: check the run (:mod:`bptrain.app.runs`), train it, save the best model and its history."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from ...core.errors import TrainingDiverged
from ...core.training import TrainResult, restore
from ...data.model_io import save_model
from ...engines import train
from .. import runs
from ..checkpoints import CheckpointWriteError, CheckpointWriter
from ..exercises.engine import WorkbookEngine
from ..history import training_metadata, write_history
from ..options import TRAIN_OPTIONS, GroupedHelpCommand, click_options
from ..run_request import RunRequest
from ..stopping import Stopped, StopSignals, exit_status
from .common import (
    CONFIG_PATH_KEY,
    EXIT_INTERRUPTED,
    data_format,
    data_format_options,
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
@data_format_options
def train_command(**values):
    """Train a network and save it (the best epoch by validation accuracy) to a .npy file.

    No output may be an input (--data, --config; --resume only for --out: that continues the model in
    place). At the end of every epoch the run's checkpoint is written beside --out (NAME.checkpoint.npz);
    --resume with it continues the run exactly. Ctrl-C, SIGTERM and SIGHUP save the best model so far and
    exit with 128 + the signal number; a kill loses at most the epoch in progress.
    """
    ctx = click.get_current_context()
    quiet = values["quiet"]
    say = (lambda *a, **k: None) if quiet else click.echo
    progress = not quiet and sys.stderr.isatty()
    request = RunRequest.from_options(values, {name for name in values if given(ctx, name)}, data_format(ctx))
    preflight = runs.check_before_data(request, config=ctx.meta.get(CONFIG_PATH_KEY),
                                       data_label=data_label(request.data))
    dataset = obtain_dataset(preflight.data, values["no_download"], progress,  # the command loads the data
                             options=preflight.request.data_options)
    plan = runs.plan_training(preflight, dataset)
    for text, even_quiet in plan.notes:
        if even_quiet or not quiet:
            click.echo(text, err=True)
    _note_unused_options(ctx, request.settings.optimizer)
    model, dataset, settings, out, history, engine = (plan.model, plan.dataset, plan.settings, plan.out, plan.history,
                                                      plan.engine)
    checkpoint = CheckpointWriter(plan.checkpoint, plan.run_record(), model, resumed=plan.resume)
    if plan.workbook is not None:
        update = f"momentum_step (momentum {settings.momentum:g})" if settings.momentum else "sgd_step (plain SGD)"
        say(f"training with your workbook {request.workbook}: its forward, backward and {update}")
        engine = WorkbookEngine(model, plan.workbook, str(request.workbook.resolve()), settings.momentum)
    say(f"training {'-'.join(map(str, model.sizes))} ({model.activation} hidden, {model.loss}, {model.dtype.name}) "
        f"on {len(dataset.train.x)} images from {dataset.source}: {settings.epochs} epoch{'' if settings.epochs == 1 else 's'}, batch "
        f"{settings.batch_size}, {settings.optimizer}, lr {settings.lr:g}"
        + ("" if engine == "fast" or plan.workbook is not None else f", {engine} engine") + _held_out(dataset))

    def report(record, improved):
        say(f"epoch {record.epoch:>3}/{plan.last_epoch}  train loss {record.train_loss:.4f}  "
            f"val loss {record.val_loss:.4f}  val acc {100 * record.val_accuracy:6.2f}%  "
            f"lr {record.lr:<9.4g} {record.seconds:6.1f}s{'  *' if improved else ''}")  # fixed widths: the columns line up

    # Ctrl-C, SIGTERM and SIGHUP stop training the same way; once one arrived, or once saving starts,
    # further signals wait until the model and its history are saved (bptrain.app.stopping).
    with StopSignals() as signals:
        checkpoint.signals = signals  # a stop during a checkpoint's write waits for it (and its record)
        result = None
        try:
            result = train(model, dataset, settings, engine=engine, progress=progress, on_epoch=report,
                           callbacks=[checkpoint], first_epoch=plan.first_epoch, resume=plan.resume)
            signals.defer()
        except TrainingDiverged as exc:
            checkpoint.remove()  # the run is over: continuing it would diverge again
            raise click.ClickException(f"{exc}; {out} was not written") from None
        except MemoryError:
            raise click.ClickException("out of memory while training; try a smaller --batch-size or network") from None
        except CheckpointWriteError as exc:  # a full disk: keep what was trained, where it can be written
            signals.defer()
            state = exc.state
            result = _as_checkpointed(model, state)
            metadata = training_metadata(settings, result, dataset, plan.init, plan.first_epoch,
                                         plan.initial_sha256, plan.run_id)
            raise click.ClickException(f"{exc}; the run stopped after epoch {state.epoch}; "
                                       f"{_save_somewhere(model, metadata, out)}") from None
        except Stopped:  # outside the epochs: before training started, or as the loop ended
            pass
        signals.defer()
        if (result is None or result.interrupted) and checkpoint.written is not None:
            # a stop lands anywhere, also between the loop's history growing and the checkpoint's write:
            # what is saved is what the checkpoint holds, so that the model, history and checkpoint agree
            result = _as_checkpointed(model, checkpoint.written)
        elif result is None:
            click.echo(f"{stopped_by(signals.signum)} before the model could be saved; {out} was not written",
                       err=True)
            ctx.exit(exit_status(signals.signum))
        metadata = training_metadata(settings, result, dataset, plan.init, plan.first_epoch, plan.initial_sha256,
                                     plan.run_id)
        try:
            save_model(model, out, metadata)
        except OSError as exc:
            raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}; "
                                       f"{_save_somewhere(model, metadata, out)}") from None
        try:
            write_history(history, result, metadata, model)
        except OSError as exc:
            raise click.ClickException(f"saved {out}, but cannot write its history {history}: "
                                       f"{exc.strerror or exc}") from None
        if not result.interrupted:
            checkpoint.remove()  # the run completed: no checkpoint may be taken for a live one
    trained_epochs = metadata["epochs_run"]
    if result.interrupted or signals.stopped:
        if result.interrupted:
            where = (f"the best so far, epoch {result.best_epoch}" if result.best_epoch
                     else "mid-epoch, before any validation")
            click.echo(f"{stopped_by(signals.signum)}: saved the model reached so far ({where}) to {out}", err=True)
            if checkpoint.written is not None and plan.checkpoint.is_file():
                click.echo(f"the run continues exactly from its last finished epoch with: bptrain train --resume "
                           f"{plan.checkpoint}", err=True)
        else:  # the signal came while a finished run was being saved: the save completed first
            click.echo(f"{stopped_by(signals.signum)} while saving; {out} and {history} were saved completely",
                       err=True)
        ctx.exit(exit_status(signals.signum) if signals.stopped else EXIT_INTERRUPTED)
    stop = " (early stopping)" if result.stopped_early else ""
    say(f"saved {out}: best validation accuracy {100 * result.best_val_accuracy:.2f}% at epoch "
        f"{result.best_epoch} of {trained_epochs}{stop}; history in {history}")


def _as_checkpointed(model, state) -> TrainResult:
    """The result of a run stopped where ``state`` (a checkpoint's) stands; the model holds its best epoch."""
    restore(model, state.best)
    return TrainResult(list(state.history), state.best_epoch, state.best_val_accuracy, interrupted=True,
                       initial_speed=state.initial_speed)


def _held_out(dataset) -> str:
    """The first line says when validation images were taken from the training data, and which."""
    held = getattr(dataset, "held_out", 0)
    if not held:
        return ""
    return (f"; {held} of its {held + len(dataset.train.x)} training images (a sixth, the same every time) held "
            "out for validation")


def _save_somewhere(model, metadata: dict, out: Path) -> str:
    """Write the trained model to the system's temporary folder (``out`` could not be written, and what was
    there, and the last checkpoint, stay as they were); say where, or that it could not be kept."""
    try:
        elsewhere = Path(tempfile.mkdtemp(prefix="bptrain-")) / out.name
        save_model(model, elsewhere, metadata)
    except OSError as exc:
        return f"the trained model could not be written anywhere either ({exc.strerror or exc})"
    return f"the trained model was written to {elsewhere} instead; {out} and its checkpoint are as they were"


def _note_unused_options(ctx, optimizer: str) -> None:
    """Say (even with -q) when a command-line option does not apply to the optimizer; a config may list them all."""
    unused = ("momentum", "nesterov") if optimizer == "adam" else ("beta1", "beta2", "eps")
    for name in unused:
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            click.echo(f"note: --{name} does not apply to --optimizer {optimizer}; ignored", err=True)
