"""``bptrain eval`` and ``bptrain predict``: a saved model (or a committee of them) on the data, or on images."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from ...core.committee import Committee, mean_negative_log_likelihood
from ...data.loader import SPLIT_NAMES
from ...data.model_io import class_names, load_model
from .. import memory, runs
from ..image_files import save_input_png
from ..inputs import expand_inputs, preprocessed_paths, read_inputs
from ..metrics import confusion_matrix, format_confusion, format_per_class, per_class_accuracy
from ..printable import one_line, shown_name
from .common import data_options, model_classes, obtain_dataset


@click.command("eval")
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
    loaded = [load_model(path) for path in model_paths]
    models = [model for model, _ in loaded]
    committee = Committee(models, names=[str(path) for path in model_paths])
    meta = loaded[0][1]
    _check_same_classes(loaded, model_paths)
    dataset = obtain_dataset(data, no_download, progress=not as_json and sys.stderr.isatty(), model_meta=meta)
    names = list(dataset.class_names)
    for model, path in zip(models, model_paths):
        runs.check_model_fits_data(model.sizes, dataset, str(path))
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
            "confusion_matrix": confusion.tolist(), "class_names": names,
        }))
        return
    if len(models) == 1:
        model = models[0]
        click.echo(f"model {model_paths[0]} ({'-'.join(map(str, model.sizes))}, {model.loss}) on {_part(dataset, split)} "
                   f"({len(y)} images)")
        click.echo(f"accuracy {100 * accuracy:.2f}%   loss {loss:.4f}")
    else:
        click.echo(f"a committee of {len(models)} models on {_part(dataset, split)} "
                   f"({len(y)} images): their class probabilities averaged")
        width = max(len(m["model"]) for m in members)
        for m in members:
            click.echo(f"  {m['model']:<{width}}  {'-'.join(map(str, m['sizes']))} {m['activation']:<7}  "
                       f"accuracy {100 * m['accuracy']:.2f}%")
        click.echo(f"committee accuracy {100 * accuracy:.2f}%   loss (mean -ln p of the true class) {loss:.4f}")
    click.echo("")
    click.echo(format_per_class(per_class, confusion, names))
    click.echo("")
    click.echo("confusion matrix (rows: true class, columns: predicted)")
    click.echo(format_confusion(confusion, names))


def _part(dataset, split: str) -> str:
    """What was scored: a split, or all of a set that has no test part."""
    if split == "test" and dataset.test_is_all:
        return f"all of {dataset.source} (it has no test part)"
    return f"the {split} split of {dataset.source}"


def _check_same_classes(loaded, model_paths) -> None:
    """A committee's members must mean the same classes by their outputs."""
    first = model_classes(loaded[0][1])
    for (_, meta), path in zip(loaded[1:], model_paths[1:]):
        if model_classes(meta) != first:
            raise click.UsageError(f"{path} has other classes than {model_paths[0]}; a committee's models must "
                                   "share their classes", ctx=click.get_current_context())


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


@click.command("predict")
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
@click.option("-q", "--quiet", is_flag=True, help="No progress bar while the files are read.")
def predict_command(model_path, input_paths, top_k, as_json, save_dir, ink, members, quiet):
    """Classify images: photos or drawings (PNG, JPEG, BMP, GIF, WebP; needs Pillow), directories of
    them, .npy arrays ((N, 784) or (N, 28, 28); uint8 0-255 or float 0-1) or IDX files.

    Image files are brought into MNIST's form first: ink found (either polarity), scaled into the
    20x20 box, centred by mass in 28x28. Prints, per image, the predicted class and its probability
    (softmax output for ce models; for mse models the sigmoid outputs normalised to sum to 1; with
    --committee, the mean of every model's probabilities). Every input is read before anything is printed or written. Of several files (or a directory), one
    that cannot be read is an error line of its own (an "error" entry in --json) and the others are
    predicted; the exit status is then 1. Names that are not plain printable text (a newline, bytes
    that are not UTF-8) are printed quoted and escaped, so they cannot forge a line; --json keeps them.
    """
    _check_distinct((model_path, *members))
    _check_committee_fits((model_path, *members))
    loaded = [load_model(path) for path in (model_path, *members)]
    _check_same_classes(loaded, (model_path, *members))
    committee = Committee([model for model, _ in loaded], names=[str(path) for path in (model_path, *members)])
    meta = loaded[0][1]
    names = class_names(meta, committee.sizes[-1])
    image_size = meta.get("image_size")
    files = expand_inputs(input_paths, note=lambda message: click.echo(f"note: {one_line(message)}", err=True))
    targets = preprocessed_paths(files, save_dir) if save_dir is not None else {}
    # one file named alone stops at its error as before; of several, each bad one costs only itself
    several = len(files) > 1 or any(Path(p).is_dir() for p in input_paths)
    with tqdm(total=len(files), desc="reading", unit="file", leave=False, mininterval=0.2, file=sys.stderr,
              disable=quiet or len(files) < 2 or not sys.stderr.isatty()) as bar:
        batches = read_inputs(files, expected_width=committee.sizes[0], ink=ink, keep_going=several,
                              on_file=bar.update, image_size=image_size)
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
                click.echo(f"Error: {one_line(b.error)}", err=True)
        document = {"model": str(model_path), "inputs": [str(p) for p in input_paths]}
        if members:
            document["committee"] = [str(p) for p in (model_path, *members)]
        if len(input_paths) == 1:
            document["input"] = str(input_paths[0])
        document["predictions"] = [
            {"file": str(path), "error": error} if error is not None else
            {"file": str(path), "index": i, "class": int(ranked[n, 0]), "name": names[ranked[n, 0]],
             "top": [{"class": int(c), "name": names[c], "probability": float(scores[n, c])} for c in ranked[n]],
             **({"preprocessed": str(saved[path])} if path in saved else {})}
            for path, i, _, n, error in rows]
        click.echo(json.dumps(document))
        return 1 if failed else 0
    for path, i, is_image, n, error in rows:
        if error is not None:
            click.echo(f"Error: {one_line(error)}", err=True)
            continue
        name = str(i) if single_array else shown_name(path) if is_image else f"{shown_name(path)}[{i}]"
        shown = "  ".join(f"{names[c]} ({100 * scores[n, c]:.1f}%)" for c in ranked[n])
        click.echo(f"{name}: {shown}")
    return 1 if failed else 0


def _save_preprocessed(batches, targets) -> dict:
    """Write each image's model input as a PNG; on any failure remove what this run wrote, then fail."""
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
