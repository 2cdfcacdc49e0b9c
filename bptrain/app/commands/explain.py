"""``bptrain explain``: one digit's forward and backward pass with the numbers, as lines for the terminal.

The numbers are :func:`bptrain.app.explain.explain`'s (the readable core's own passes, on a float64
copy); this module reads the command line and lays the numbers out in the README's notation.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click
import numpy as np

from ...core.committee import class_probabilities
from ...core.errors import BptrainError, DataError
from ...core.network import MLP
from ...data.loader import SPLIT_NAMES
from ...data.model_io import class_names, load_model
from .. import runs
from ..explain import FULL_UP_TO, MAX_BATCH, MAX_STEPS, check_batch, check_unit, choose_labels, explain, model_lr
from ..image_files import require_pillow
from ..images import image_to_input
from ..inputs import pixels_input
from ..lesson import lesson as make_lesson
from ..lesson import probability_text
from ..lesson_batch import split_companions, teaching_digit
from ..options import table_option
from ..printable import shown_name
from .common import data_format_options, obtain_dataset
from .lesson import walk as walk_lesson
from .text import ASCII_SHADES, SHADES, digit_picture, number as _n, percent as _pct  # noqa: F401 (the pictures' shades)


# ================================================================== the terminal
def format_explanation(doc: dict, picture: list[str] | None = None) -> str:
    """The lines `bptrain explain` prints: the digit (``picture``, from :func:`digit_picture`), the forward
    pass, output and loss, the backward pass, and one gradient step, each matrix with its shape for this
    input and a summary of its values."""
    lines: list[str] = []
    say = lines.append
    model, B = doc["model"], doc["batch_size"]
    sizes = "-".join(map(str, model["sizes"]))
    labels = doc["labels"]
    rule = {"true": ("the true label", "the true labels"), "given": ("given with --label",) * 2,
            "prediction": ("the network's answer", "the network's answers")}[doc["label_rule"]][B > 1]
    say(f"{_describe_source(doc['input'], B)} through {sizes} ({model['activation']} hidden, {model['output']} "
        f"output, {'cross-entropy' if model['loss'] == 'ce' else 'quadratic cost'}), in float64")
    target = f"one-hot({labels[0]})" if B == 1 else f"one-hot of {_list_some(labels)}"
    say(f"B = {B} digit{'s' if B > 1 else ''} (rows); target Y = {target}, {rule}"
        + (f"; after {doc['steps_taken']} gradient step(s) of η = {doc['step']['lr']:g} on it"
           if doc["steps_taken"] else ""))
    if picture:
        say("")
        say("the input A_0 as the network sees it" + (" (the first digit of the batch)" if B > 1 else "")
            + ": one character pair per pixel, darker for more ink")
        lines.extend(f"  |{row:<{2 * len(picture)}}|" for row in picture)
    say("")
    say("forward pass   Z_l = A_{l-1} W_l + b_l,   A_l = f(Z_l)")
    _matrix_lines(say, "A_0 = X", doc["A_0"], B)
    for layer in doc["layers"]:
        l, formulas = layer["l"], layer["formulas"]
        say(f" layer {l}: {layer['units']} {layer['f']} units ({layer['kind']})")
        _matrix_lines(say, f"W_{l}", layer["W"], B, top=False, per_digit=False)
        _matrix_lines(say, f"b_{l}", layer["b"], B, top=False)
        _matrix_lines(say, formulas["Z"], layer["Z"], B)
        _matrix_lines(say, formulas["A"], layer["A"], B)
    say("")
    _output_lines(say, doc)
    say("")
    say("backward pass  Δ_{l-1} = (Δ_l W_lᵀ) ⊙ f'(Z_{l-1}),   ∂C/∂W_l = A_{l-1}ᵀ Δ_l,   ∂C/∂b_l = Σ_rows Δ_l")
    for layer in reversed(doc["layers"]):
        formulas = layer["formulas"]
        say(f" layer {layer['l']} ({layer['kind']})")
        if layer["backprop_sum"] is not None:
            _matrix_lines(say, formulas["backprop_sum"], layer["backprop_sum"], B)
        if layer["f_prime"] is not None:
            _matrix_lines(say, formulas["f_prime"], layer["f_prime"], B)
        _matrix_lines(say, formulas["delta"], layer["delta"], B)
        _matrix_lines(say, formulas["grad_W"], layer["grad_W"], B, per_digit=False)
        _matrix_lines(say, formulas["grad_b"], layer["grad_b"], B)
    say("")
    _step_lines(say, doc)
    if "unit" in doc:
        say("")
        _unit_lines(say, doc["unit"], B)
    return "\n".join(lines)


def _describe_source(source: dict, batch: int) -> str:
    kind = source.get("kind")
    if kind == "dataset":
        first = source["index"]
        where = f"{source['split']}[{first}]" if batch == 1 else f"{source['split']}[{first}:{first + batch}]"
        return f"{where} of {shown_name(source['data'])}" if source.get("data") else where
    if kind == "image":  # a name is one line: printable.shown_name
        return shown_name(source["file"]) if source.get("file") else "the uploaded image"
    return {"drawing": "the drawing", "input": "the input"}.get(kind, "the input")


NAME_WIDTH = 38
#: Width of a column of the output table: "-3.28e-10" (3 significant digits, sign and exponent) fits.
COLUMN = 9

def _matrix_lines(say, name: str, matrix: dict, batch: int, top: bool = True, per_digit: bool = True) -> None:
    """Two lines per matrix: formula, shape, min/mean/max, norm; then its largest entries (``per_digit``:
    a matrix with one row per digit, whose entries are named by unit)."""
    shape = "(" + ", ".join(map(str, matrix["shape"])) + ("," if len(matrix["shape"]) == 1 else "") + ")"
    say(f"  {name:<{NAME_WIDTH}} {shape:<11} min {_n(matrix['min'])}  mean {_n(matrix['mean'])}  "
        f"max {_n(matrix['max'])}  ‖·‖ {_n(matrix['norm'])}")
    if top:
        what = "largest |·|" if matrix["top_by"] == "magnitude" else "largest"
        entries = "  ".join(f"{_index(entry['index'], batch, per_digit)} {_n(entry['value'])}"
                            for entry in matrix["top"])
        say(f"      {what}: {entries}")


def _index(index: list, batch: int, per_digit: bool) -> str:
    """j=17 for unit 17 of a vector or of the only digit; [r,j] (digit, unit) or [i,j] (W's row, column)
    otherwise."""
    if len(index) == 1 or (per_digit and batch == 1):
        return f"j={index[-1]}"
    return "[" + ",".join(map(str, index)) + "]"


def _output_lines(say, doc: dict) -> None:
    output, layer = doc["output"], doc["layers"][-1]
    L, B = layer["l"], doc["batch_size"]
    labels, predictions = doc["labels"], output["predictions"]
    rows = [(f"A_{L}", layer["A"])]
    if doc["model"]["loss"] == "mse":
        rows.append(("p (A_L / Σ A_L)".replace("A_L", f"A_{L}"), output["probabilities"]))
    rows += [("Y", None), (f"A_{L} − Y", output["error"]), (f"Δ_{L}", layer["delta"])]
    classes = layer["units"]
    if "values" in layer["A"] and classes <= 20:
        first = " (first digit of the batch)" if B > 1 else ""
        say(f"output and loss{first}")
        # a space before every column: "-0.000493" fills the field, and two numbers must never touch
        say(f"  {'class':<16}" + "".join(f" {c:>{COLUMN}}" for c in range(classes)))
        for name, matrix in rows:
            if matrix is None:  # Y: the label's one-hot row
                say(f"  {name:<16}" + "".join(f" {int(c == labels[0]):>{COLUMN}}" for c in range(classes)))
            else:
                say(f"  {name:<16}" + "".join(f" {_n(v, 3):>{COLUMN}}" for v in matrix["values"][0]))
    else:
        say("output and loss")
        _matrix_lines(say, f"A_{L}", layer["A"], B)
        _matrix_lines(say, f"A_{L} − Y", output["error"], B)
    p = output["p_label"]
    if B == 1:
        say(f"  label {_named(doc, labels[0])}: p = {_pct(p[0])};  prediction {_named(doc, predictions[0])}")
    else:
        right = sum(int(a == b) for a, b in zip(predictions, labels))
        say(f"  predictions {_list_some(predictions)}: {right} of {B} equal the label; mean p(label) = "
            f"{_pct(_mean(p))}")
    if doc["model"]["loss"] == "ce" and B == 1:
        say(f"  loss  C = −log A_{L}[0, {labels[0]}] = −log {probability_text(p[0], doc['loss'])} = {_n(doc['loss'])}")
    else:
        say(f"  loss  {doc['loss_formula']} = {_n(doc['loss'])}")


def _named(doc: dict, c: int) -> str:
    """A class as its number, and its name when it has one of its own: "3 (dress)"."""
    names = doc.get("class_names") or []
    return f"{c} ({names[c]})" if c < len(names) and names[c] != str(c) else str(c)


def _step_lines(say, doc: dict) -> None:
    step, B = doc["step"], doc["batch_size"]
    say(f"one plain gradient step of η = {step['lr']:g} ({step['lr_source']})")
    say(f"  {step['rule']}")
    say(f"  loss C       {_n(step['loss_before'])} → {_n(step['loss_after'])}")
    before, after = step["p_label_before"], step["p_label_after"]
    if B == 1:
        say(f"  p(label {_named(doc, doc['labels'][0])})   {_pct(before[0])} → {_pct(after[0])}   "
            f"prediction {_named(doc, doc['output']['predictions'][0])} → {_named(doc, step['predictions_after'][0])}")
    else:
        rose = sum(1 for a, b in zip(before, after) if a is not None and b is not None and b > a)
        say(f"  mean p(label) {_pct(_mean(before))} → {_pct(_mean(after))}; it rose for {rose} of {B} digits")


def _unit_lines(say, unit: dict, batch: int) -> None:
    where = "" if batch == 1 else f" (digit {unit['row']} of the batch)"
    say(f"unit {unit['j']} of layer {unit['layer']} ({unit['kind']}){where}")
    say(f"  bias {_n(unit['bias'])}   z {_n(unit['z'])}   a {_n(unit['a'])}   δ {_n(unit['delta'])}"
        + (f"   f' {_n(unit['f_prime'])}" if unit["f_prime"] is not None else ""))
    say(f"  {unit['formula']}")
    weights = np.array([np.nan if w is None else w for w in unit["incoming_weights"]])
    say(f"  incoming weights W_{unit['layer']}[:, {unit['j']}]: {len(weights)} values, min {_n(np.nanmin(weights))}, "
        f"max {_n(np.nanmax(weights))}, ‖·‖ {_n(float(np.linalg.norm(np.nan_to_num(weights))))}")


def _mean(values: list):
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _list_some(values: list, shown: int = 10) -> str:
    return " ".join(map(str, values[:shown])) + (" …" if len(values) > shown else "")


# ================================================================== the command
class UnitType(click.ParamType):
    """LAYER,J: unit J (0-based) of layer LAYER (1..L)."""

    name = "LAYER,J"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            layer, j = (int(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not LAYER,J (two integers, e.g. 1,17)", param, ctx)
        return layer, j


@click.command("explain")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("image", metavar="[IMAGE]", required=False, type=click.Path(path_type=Path))
@click.option("--index", type=click.IntRange(min=0), default=None, metavar="N",
              help="Explain digit N of --split (instead of an IMAGE file).")
@click.option("--split", type=click.Choice(SPLIT_NAMES), default="test", show_default=True,
              help="The split --index counts in.")
@click.option("--label", type=click.IntRange(min=0), default=None, metavar="K",
              help="Target class [default: the true label of a digit of the data set; the network's answer "
                   "for an IMAGE].")
@table_option("lr", help="η of the gradient step shown [default: the initial learning rate in the model's "
                         "settings, else 0.1].")
@table_option("batch_size", default=1, type=click.IntRange(1, MAX_BATCH),
              help=f"Explain B digits from --index N on as one mini-batch (at most {MAX_BATCH:,}).")
@click.option("--steps", type=click.IntRange(0, MAX_STEPS), default=0, show_default=True,
              help="Take this many plain gradient steps on this input and label first (on a copy; the "
                   "file is never changed).")
@click.option("--unit", type=UnitType(), default=None,
              help="Also show unit J of layer LAYER for the first digit: bias, z, a, δ, the formula of δ "
                   "with the numbers, and its incoming weights.")
@click.option("--json", "as_json", is_flag=True,
              help=f"Print one JSON object: every array in full up to {FULL_UP_TO} digits, summaries beyond.")
@click.option("--full", is_flag=True, help="With --json: every array in full, whatever the batch size.")
@click.option("--lesson", is_flag=True,
              help="Walk through the forward and backward pass one step at a time (Enter for the next step), "
                   "with questions to answer or skip, a batch of 4 digits and a gradient check on one weight "
                   "by hand. Without IMAGE or --index: the first digit of --split the network reads wrong.")
@table_option("data")
@table_option("no_download")
@data_format_options
def explain_command(model_path, image, index, split, label, lr, batch_size, steps, unit, as_json, full, lesson,
                    data, no_download):
    """Show one digit's forward and backward pass in the notation of the README's math section.

    Give an IMAGE file (a photo or drawing, preprocessed as `bptrain predict` does) or --index N (a digit
    of the data set). Prints each matrix with its shape and a summary of its values, the output
    probabilities, the loss, Δ_l, ∂C/∂W_l and ∂C/∂b_l of every layer, and what one plain gradient step of
    size η does to the loss and the label's probability. The numbers come from the readable core's forward
    and backward pass (as `train --engine reference` runs them), on a float64 copy of the model.
    """
    if full and not as_json:
        raise click.UsageError("--full applies to --json")
    if lesson:
        clash = [name for name, given in (("--json", as_json), ("--batch-size", batch_size != 1),
                                           ("--steps", steps != 0), ("--unit", unit is not None)) if given]
        if clash:
            raise click.UsageError(f"--lesson walks one digit as it is; it does not take {clash[0]}")
    if image is not None and index is not None:
        raise click.UsageError("give an IMAGE file or --index N (one of them)")
    if image is None and index is None and not lesson:
        raise click.UsageError("give an IMAGE file or --index N (one of them)")
    if image is not None and batch_size != 1:
        raise click.UsageError("--batch-size needs --index N (an IMAGE is one digit)")
    model, meta = load_model(model_path)
    if label is not None and label >= model.sizes[-1]:
        raise click.UsageError(f"--label {label} is not a class of this model (0..{model.sizes[-1] - 1})")
    if unit is not None:
        try:
            check_unit(model, unit)
        except BptrainError as exc:
            raise click.UsageError(f"--{exc}") from None  # "--unit 4,1: the layers are 1..2"
    try:
        check_batch(model, batch_size)
    except BptrainError as exc:
        raise click.UsageError(f"--batch-size: {exc}") from None
    companions = None
    if image is not None:
        x, true_labels, source = _image_input(model, image, meta), None, {"kind": "image", "file": str(image)}
    elif lesson:
        x, true_labels, source, companions = _lesson_input(model, meta, data, no_download, split, index)
    else:
        x, true_labels, source = _dataset_input(model, meta, data, no_download, split, index, batch_size)
    labels, rule = choose_labels(model, x, true_labels, label)
    if lr is None:
        lr, lr_source = model_lr(meta)
    else:
        lr, lr_source = lr, "given with --lr"
    if lesson:
        _walk_lesson(model, x[0], int(labels[0]), lr, lr_source, rule, true_labels, source, companions,
                     class_names(meta, model.sizes[-1]))
        return
    arrays = "all" if full or len(x) <= FULL_UP_TO else "summaries"
    doc = explain(model, x, labels, lr=lr, lr_source=lr_source, label_rule=rule, true_labels=true_labels,
                  source=source, steps=steps, arrays=arrays, unit=unit)
    doc["class_names"] = class_names(meta, model.sizes[-1])
    if as_json:
        click.echo(json.dumps(doc, allow_nan=False))
    else:
        click.echo(format_explanation(doc, digit_picture(x[0], getattr(sys.stdout, "encoding", None))))


def _walk_lesson(model: MLP, x, label: int, lr: float, lr_source: str, rule: str, true_labels, source,
                 companions, names: list[str]) -> None:
    def document(weight=None):
        return {**make_lesson(model, x, label, lr=lr, lr_source=lr_source, label_rule=rule, source=source,
                              true_label=None if true_labels is None else int(true_labels[0]), weight=weight,
                              companions=companions),
                "class_names": names}

    walk_lesson(document(), sys.stdin.readline, click.echo, lambda weight: document(weight)["check"],
                getattr(sys.stdout, "encoding", None))


def _image_input(model: MLP, path: Path, meta: dict) -> np.ndarray:
    if meta.get("image_size"):  # learnt from a folder of images: read as its images were
        require_pillow()
        return pixels_input(path, meta["image_size"]).reshape(1, -1)
    side = math.isqrt(model.sizes[0])
    if side * side != model.sizes[0]:
        raise DataError(f"the model takes {model.sizes[0]} inputs, not a square image; explain a digit of its "
                        f"data set with --index N instead")
    require_pillow()
    return image_to_input(path, str(path), side).reshape(1, -1)


def _lesson_input(model: MLP, meta: dict, data, no_download: bool, split: str, index: int | None):
    """(x, true labels, source, the batch step's other digits) of a lesson on a data-set digit; without
    --index, the first digit of the split the network reads wrong (a right one teaches little)."""
    dataset = obtain_dataset(data, no_download, progress=sys.stderr.isatty(), model_meta=meta)
    runs.check_model_fits_data(model.sizes, dataset, "the model")
    xs, ys = dataset.split(split)
    if index is None:
        index, why = teaching_digit(class_probabilities(model, xs), np.asarray(ys, np.int64))
        click.echo(f"(no --index given: {split} digit {index}, {why}; --index N walks any other)")
    elif index >= len(xs):
        raise click.UsageError(f"--index {index} is out of range: the {split} split has {len(xs):,} digits "
                               f"(0..{len(xs) - 1})")
    source = {"kind": "dataset", "split": split, "index": index, "data": dataset.source}
    return xs[index:index + 1], ys[index:index + 1], source, split_companions(xs, ys, index, split)


def _dataset_input(model: MLP, meta: dict, data, no_download: bool, split: str, index: int, batch_size: int):
    dataset = obtain_dataset(data, no_download, progress=sys.stderr.isatty(), model_meta=meta)
    runs.check_model_fits_data(model.sizes, dataset, "the model")
    x, y = dataset.split(split)
    if index >= len(x):
        raise click.UsageError(f"--index {index} is out of range: the {split} split has {len(x):,} digits "
                               f"(0..{len(x) - 1})")
    if index + batch_size > len(x):
        raise click.UsageError(f"--index {index} --batch-size {batch_size} runs past the end of the {split} split "
                               f"({len(x):,} digits): at most {len(x) - index} from {index}")
    source = {"kind": "dataset", "split": split, "index": index, "data": dataset.source}
    return x[index:index + batch_size], y[index:index + batch_size], source
