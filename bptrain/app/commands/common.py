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
from ...data.loader import (
    DATA_ENV_VAR,
    DEFAULT_DATA_PATH,
    MAX_IMAGE_SIDE,
    DataOptions,
    load_dataset,
    resolve_data_path,
)
from ...data.model_io import class_names, label_values
from ...data.splits import CLASSES_FILE
from .. import memory
from ..config import load_config
from ..image_files import load_grayscale
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
    """--data and --no-download, shared by every command that reads the data set, and how to read it."""
    func = data_format_options(func)
    func = click.option("--no-download", is_flag=True,
                        help="Do not download mnist.pkl.gz when it is missing from the default location.")(func)
    func = click.option("--data", type=click.Path(path_type=Path), default=None, help=DATA_HELP)(func)
    return func


DATA_HELP = (f"mnist.pkl.gz, IDX files or a folder of them, a .csv, a Keras .npz, or a folder of class folders of "
             f"images (docs/data.md) [default: ${DATA_ENV_VAR} or {DEFAULT_DATA_PATH}]")
#: Where the data options record what they say in the click context (read by obtain_dataset).
DATA_OPTIONS_KEY = "bptrain.data_options"


def data_format_options(func):
    """How to read data whose files do not say it all (DataOptions): kept in the context, so that every
    command that loads data takes them without a parameter of its own."""

    def keep(name, convert=lambda value: value):
        def callback(ctx, param, value):
            if value is not None and value is not False:
                kept = ctx.meta.setdefault(DATA_OPTIONS_KEY, {})
                try:
                    kept[name] = convert(value)
                except ValueError as exc:
                    raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
            return value
        return callback

    func = click.option("--class-names", type=click.Path(path_type=Path), default=None, expose_value=False,
                        callback=keep("class_names"), metavar="FILE",
                        help=f"Names of the classes, one a line in class order [default: a {CLASSES_FILE} "
                             "beside the data, an image folder's folder names, else the labels].")(func)
    func = click.option("--resize", default=None, expose_value=False, callback=keep("resize", parse_image_size),
                        metavar="WxH", help="Bring every image of an image folder to this size (else images of "
                                            "another size than the first are refused).")(func)
    func = click.option("--transposed", is_flag=True, default=False, expose_value=False,
                        callback=keep("transposed"),
                        help="IDX images are stored transposed, as EMNIST's [default: EMNIST's files, by name].")(func)
    func = click.option("--label-column", default=None, expose_value=False, callback=keep("label_column"),
                        metavar="NAME", help="A CSV's label column: a header name or a column number from 0 "
                                             "[default: the first].")(func)
    return func


def data_format_args(ctx: click.Context | None = None) -> list[str]:
    """The data options given, as ``train``'s arguments: a sweep passes them on to every run."""
    kept = (ctx or click.get_current_context()).meta.get(DATA_OPTIONS_KEY, {})
    args = ["--label-column", str(kept["label_column"])] if "label_column" in kept else []
    args += ["--transposed"] if kept.get("transposed") else []
    args += ["--resize", "{}x{}".format(*kept["resize"])] if "resize" in kept else []
    return args + (["--class-names", str(Path(kept["class_names"]).resolve())] if "class_names" in kept else [])


def parse_image_size(text: str) -> tuple[int, int]:
    """'28x28' or '28' -> (width, height)."""
    parts = text.lower().split("x")
    try:
        width, height = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, 0)
    except ValueError:
        width = height = 0
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise ValueError(f"{text!r} is not an image size like 28x28 (each side 1 to {MAX_IMAGE_SIDE})")
    return width, height



def data_format(ctx: click.Context | None = None) -> DataOptions:
    """The data options the command was given."""
    ctx = ctx or click.get_current_context(silent=True)
    return DataOptions(**(ctx.meta.get(DATA_OPTIONS_KEY, {}) if ctx is not None else {}))


def obtain_dataset(data: Path | None, no_download: bool, progress: bool, n_classes: int | None = None,
                   model_meta: dict | None = None, options: DataOptions | None = None):
    """Find the data (downloading the default file if allowed) and load it, as the data options say (the
    command's, or ``options``) and as predict reads image files; ``model_meta``: a model's metadata, whose
    classes the labels then map to."""
    path = resolve_data_path(data)
    if not path.exists():
        path = stoppable_download(ensure_data, path, allow_download=not no_download, progress=progress)
    return load_data_at(path, n_classes=n_classes, model_meta=model_meta, options=options)


def load_data_at(path: Path, n_classes: int | None = None, model_meta: dict | None = None,
                 options: DataOptions | None = None):
    """Load the data at ``path`` as the data options say, its images read as predict reads image files, a
    file refused up front when it would not fit in the memory available."""
    return load_dataset(path, n_classes=n_classes, options=options or data_format(), read_image=load_grayscale,
                        max_bytes=memory.available_bytes(), **model_classes(model_meta))


def model_classes(meta: dict | None) -> dict:
    """load_dataset's label_values and class_names for a model's metadata (none for no model)."""
    if meta is None:
        return {}
    n_outputs = meta["sizes"][-1]
    return {"label_values": label_values(meta, n_outputs), "class_names": class_names(meta, n_outputs)}


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
