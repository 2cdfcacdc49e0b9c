"""``bptrain serve``: the page to draw digits on and to train networks in (:mod:`bptrain.app.serve`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ...core.errors import BptrainError, DataError
from ...data.download import ensure_data
from ...data.loader import DATA_ENV_VAR, missing_data_message, resolve_data_path
from ...data.model_io import load_model
from .. import runs
from ..history import history_path, load_history
from ..image_files import require_pillow
from ..options import FORM_OPTIONS, GROUPS, GroupedHelpCommand, click_options, table_option
from ..paths import data_files, is_history_file, is_model_file
from ..serve.http import is_loopback, make_server, serve
from ..serve.predictor import Predictor
from ..serve.session import LiveTraining
from .common import (
    CONFIG_PATH_KEY,
    DATA_HELP,
    data_format_options,
    data_label,
    given,
    load_config_defaults,
    load_data_at,
    stoppable_download,
)


class ServeCommand(GroupedHelpCommand):
    """``serve --help``: how to serve first, then the form's presets under train's headings."""

    group_order = ("Serving",) + GROUPS
    other_groups = {"config": "Files", "out_dir": "Files", "host": "Serving", "port": "Serving",
                    "open_browser": "Serving", "verbose": "Serving"}


@click.command("serve", cls=ServeCommand)
@click.argument("model_path", metavar="[MODEL]", type=click.Path(path_type=Path), required=False)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback lets other machines use the page.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port; the URL printed says which).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default web browser.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request on stderr.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), is_eager=True, expose_value=False,
              callback=load_config_defaults, help="TOML file of settings to preset the form with; explicit flags "
                                                   "override it.")
@table_option("data", help="Data the page trains on: " + DATA_HELP)
@data_format_options
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
    ctx = click.get_current_context()
    require_pillow()
    model, meta, predictor, history = None, None, None, None
    if model_path is not None:
        model, meta = load_model(model_path)
        meta = {**meta, "last_lr": runs.last_lr(model_path)}  # what the page says a new plan starts against
        predictor = Predictor(model, meta)  # checks that its inputs are square images
        history = _history_beside(model_path)
    if not out_dir.is_dir():
        raise click.UsageError(f"--out-dir {out_dir} is not a directory")
    runs.check_writable(out_dir / "model.npy", "--out-dir")
    data_path = resolve_data_path(data)
    inputs = {data_label(data): data_files(data_path), "--config": [ctx.meta.get(CONFIG_PATH_KEY)],
              "MODEL": [model_path]}
    if out is not None:
        out = Path(out)
        runs.check_writable(out, "model file", "out")
        runs.check_files(inputs=inputs, outputs={"--out": [out], "its history": [history_path(out)]},
                         replaceable=[("--out", out, is_model_file, "a bptrain model"),
                                      ("--out", history_path(out), is_history_file, "a bptrain history JSON",
                                       f"its history {history_path(out)}")])
    dataset, problem = _data_to_serve(data, data_path, no_download, model_path is None)
    if dataset is None and model is None:
        raise click.ClickException(f"nothing to serve: {problem}; give a MODEL to draw with, or data to train on")
    if dataset is not None and not given(ctx, "sizes"):  # the form's default network fits the data
        settings["sizes"] = runs.sizes_for_data(settings["sizes"], dataset)
    live = LiveTraining(dataset=dataset, data_problem=problem, model=model, meta=meta, presets=settings,
                        out_dir=out_dir, out=out, inputs=inputs, say=lambda line: click.echo(line, err=True),
                        history=history)
    httpd = make_server(predictor, host, port, verbose=verbose, live=live)
    if problem:
        click.echo(f"note: the page can draw but not train: {problem}", err=True)
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}, not loopback: anyone who can reach this machine "
                   "can use the page", err=True)

    def stop_training():
        stopped = live.close()
        last = live.run
        if stopped is not None and out is None:
            click.echo(f"stopped the run in progress (epoch {stopped.epoch} of {stopped.last_epoch}); it was not "
                       "saved (give --out FILE to save every run)", err=True)
        elif out is None and last is not None and last.status in ("finished", "stopped") and last.saved is None:
            click.echo(f"the {last.status} run ({last.message}) was not saved: press Save model before stopping "
                       "the server, or give --out FILE to save every run", err=True)

    serve(httpd, open_browser=open_browser, say=click.echo, on_stop=stop_training)


def _history_beside(model_path: Path) -> dict | None:
    """The served model's history (NAME.history.json beside it), for the page's charts; None without one."""
    beside = history_path(model_path)
    if not beside.is_file():
        return None
    try:
        return load_history(beside)
    except BptrainError as exc:
        click.echo(f"note: the page shows no history for {model_path}: {exc}", err=True)
        return None


def _data_to_serve(data: Path | None, path: Path, no_download: bool, may_download: bool):
    """(dataset, None), or (None, why there is none). Data that was named (--data, $BPTRAIN_DATA) must load:
    its problems are errors. The default file is downloaded when missing only if ``may_download``."""
    named = data is not None or bool(os.environ.get(DATA_ENV_VAR))
    if not path.exists():
        if named or no_download or not may_download:
            if named:
                raise DataError(missing_data_message(path))
            return None, missing_data_message(path) + (" (automatic download disabled by --no-download)"
                                                       if no_download else "")

        try:
            path = stoppable_download(ensure_data, path, allow_download=True, progress=sys.stderr.isatty())
        except DataError as exc:
            return None, str(exc)
    try:
        return load_data_at(path), None
    except DataError as exc:
        if named:
            raise
        return None, str(exc)
