"""What the commands share: the data options, loading the data, config files as defaults, stopping cleanly.

The commands are a thin skin: they parse, call the rules of a run (:mod:`bptrain.app.runs`) and the
library, and print. Errors rise as :class:`~bptrain.core.errors.BptrainError`; the group
(:mod:`bptrain.app.commands`) turns them into one line and an exit code.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from ...core.errors import BptrainError
from ...data.download import ensure_data
from ...data.loader import DATA_ENV_VAR, DEFAULT_DATA_PATH, load_dataset, resolve_data_path
from .. import memory
from ..config import load_config
from ..stopping import Stopped, StopSignals, exit_status, signal_name

#: Exit status of a run stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
EXIT_INTERRUPTED = 130
#: Where an eager --config records its path in the click context: an input no output may replace.
CONFIG_PATH_KEY = "bptrain.config_path"


def load_config_defaults(ctx: click.Context, param, value):
    """Eager --config: its settings become the defaults of the other options, so flags still win."""
    if value is not None:
        try:
            settings = load_config(value)
        except BptrainError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        ctx.default_map = {**(ctx.default_map or {}), **settings}
        ctx.meta[CONFIG_PATH_KEY] = value  # an input of the command: no output may replace it
    return value


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
    click.echo(f"{stopped_by(stop.signum)}: the download was cancelled; no partial file was left", err=True)
    click.get_current_context().exit(exit_status(stop.signum))


def stopped_by(signum: int | None) -> str:
    return "interrupted" if signum in (None, signal.SIGINT) else f"terminated by {signal_name(signum)}"


def data_label(data: Path | None) -> str:
    """How to name the data in a message: the user may not have given --data at all."""
    if data is not None:
        return "--data"
    return f"${DATA_ENV_VAR}" if os.environ.get(DATA_ENV_VAR) else "the default --data"


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user set option ``name`` (on the command line or in a config), not just its default."""
    return ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)


def check_memory(estimate: memory.Estimate) -> None:
    """Refuse, in one line, a run the machine's memory cannot hold; warn when it would take most of it."""
    warning = memory.check_fits(estimate)
    if warning:
        click.echo(f"warning: {warning}", err=True)  # even with --quiet, like the --batch-size note
