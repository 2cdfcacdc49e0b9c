"""``bptrain plot`` and ``bptrain compare``: pictures of runs and models, and runs side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from ...data.distort import PAPER_ELASTIC, SIMARD_AFFINE
from ...data.loader import SPLIT_NAMES, resolve_data_path
from ...data.model_io import load_model
from ...data.shifts import is_square_image
from .. import plot, runs
from ..compare import (
    collect_runs,
    differing_settings,
    failure_lines,
    format_table,
    json_value,
    option_label,
    plot_runs,
    same_line,
    same_settings,
    start_letters,
    start_note,
)
from ..history import history_path, load_history
from ..metrics import confusion_matrix
from ..paths import OutputDir, data_files, is_png_file
from .common import data_label, data_options, obtain_dataset


@click.command("plot")
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
    if len(sources) > 1 or (sources and sources[0].is_dir()):
        if distortions:
            raise click.UsageError("--distortions draws digits, not runs: give it without runs")
        for path in plot_runs(sources, out_dir, note=lambda text: click.echo(text, err=True)):
            click.echo(f"wrote {path}")
        return
    source = sources[0] if sources else None
    if source is not None and not source.exists():
        raise click.UsageError(f"nothing at {source}: plot takes a model .npy, a history .json or a folder of them")
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
    runs.check_files(inputs={"MODEL_OR_HISTORY": [source],
                             "the history": [None if source is None or is_history else history_path(source)],
                             data_label(data): data_files(resolve_data_path(data)) if reads_data else []},
                     outputs={"--out-dir": [pictures]},
                     replaceable=[("--out-dir", path, is_png_file, "a PNG picture",
                                   f"{path}, which --out-dir {out_dir} would write,") for path in pictures.files()])
    written = []
    if distortions:
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
        runs.check_model_fits_data(model.sizes, dataset, str(source))
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
        beside = history_path(source)
        if beside.exists():
            history = load_history(beside)
            written.append(plot.plot_history(history, out_dir / f"{stem}.curves.png"))
            if plot.has_speed(history):
                written.append(plot.plot_speed(history, out_dir / f"{stem}.speed.png"))
    for path in written:
        click.echo(f"wrote {path}")


@click.command("compare")
@click.argument("paths", metavar="RUN...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compare_command(paths, as_json):
    """Show runs side by side: the settings that differ between them, each one's best validation
    accuracy and its epoch, final train loss and seconds, and whether they started from the same weights.

    RUN is a model .npy, a history .json, or a folder of them (a sweep's --out-dir, or the files of
    `bptrain sweep --print-commands` gathered from wherever they ran).
    """
    found = collect_runs(paths)
    differ = differing_settings(found)
    if as_json:
        letters = start_letters(found)
        click.echo(json.dumps({
            "runs": [run.to_dict() for run in found],
            "differ": differ,
            "same": {key: json_value(value) for key, value in same_settings(found).items()},
            "without_settings": [run.label for run in found if not run.records_settings],   # "same" leaves them out
            "identical_start": None if sum(bool(r.initial_sha256) for r in found) < 2 else letters is None,
        }))
        return
    differ_text = ", ".join(option_label(key) for key in differ) if differ else "none"
    click.echo(f"{len(found)} run{'s' if len(found) != 1 else ''}; settings that differ: {differ_text}")
    line = same_line(found)
    if line:
        click.echo(line)
    click.echo("")
    click.echo(format_table(found, differ))
    for text in filter(None, [start_note(found), *failure_lines(found)]):
        click.echo(text)
