"""Runs side by side: which settings differ, how well each learned, and their curves on shared axes.

``bptrain compare RUN...`` and ``bptrain plot RUN RUN...`` read runs from model
files, history files and folders of them (a sweep's ``--out-dir``, or the files
of ``bptrain sweep --print-commands`` gathered from wherever they ran). A run is
a model ``NAME.npy`` and its history ``NAME.history.json``, either of which may
be missing: both record the network and the training settings; the results
(best validation accuracy and its epoch, final train loss, seconds) come from the
history, or from the model's metadata when it is alone. A sweep's
``summary.json`` adds the runs that left no files (a diverged run).

Both files also record the SHA-256 of the parameters a run started from, so
"these runs started from identical weights" is a fact read from the runs
themselves, not a promise about seeds.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path


from ..core.errors import BptrainError, SettingError
from ..core.training import DISTORTION_SETTINGS
from ..data.json_text import is_json_object, parse_json
from ..data.model_io import read_model_record
from . import plot
from .history import HISTORY_SUFFIX, read_history_document, validate_history
from .options import OPTIONS_BY_NAME, TRAIN_OPTIONS
from .paths import OutputDir, check_no_clash, check_replaceable, is_history_file, is_model_file, is_png_file

#: The settings of the network, recorded beside train's settings in models and histories.
NETWORK_KEYS = ("sizes", "loss", "activation", "init", "dtype")
#: Where a model and a history record the SHA-256 of the parameters their run started from.
DIGEST_KEY = "initial_parameters_sha256"
SUMMARY_NAME = "summary.json"
SUMMARY_FORMAT = "bptrain-sweep"
#: The order settings are shown in: the options table's, then the data the run trained on.
SETTING_ORDER = tuple(option.name for option in TRAIN_OPTIONS if option.name not in ("out", "history", "resume",
                                                                                      "quiet", "no_download", "data"))
SETTING_ORDER += ("data",)


@dataclass
class Run:
    """One run as its files (or a sweep's summary) describe it; numbers are None where nothing says them."""

    label: str
    model: Path | None = None
    history: Path | None = None
    settings: dict = field(default_factory=dict)
    status: str = "finished"  # finished, stopped, diverged, failed, not started, no epochs
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    final_train_loss: float | None = None
    seconds: float | None = None
    initial_sha256: str | None = None
    message: str | None = None
    skipped: bool = False  # a sweep found it finished and did not run it again
    document: dict | None = None  # the history, for the curves
    records_settings: bool = True  # False: its files record no training settings (an old or bare history)

    def to_dict(self) -> dict:
        return {"label": self.label, "model": _path_text(self.model), "history": _path_text(self.history),
                "status": self.status, "settings": {k: json_value(v) for k, v in self.settings.items()},
                "best_val_accuracy": self.best_val_accuracy, "best_epoch": self.best_epoch,
                "epochs_run": self.epochs_run, "final_train_loss": self.final_train_loss, "seconds": self.seconds,
                DIGEST_KEY: self.initial_sha256, "message": self.message}


def _path_text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def json_value(value):
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------- reading runs
def flat_settings(document: dict) -> dict:
    """{option name: value} from a model's metadata or a history: the network's keys and train's settings,
    each a plain value (a file may hold anything JSON can: what is not a number, a string or sizes is
    kept as its JSON text, so it still shows and compares)."""
    settings = {}
    for key in NETWORK_KEYS:
        value = document.get(key)
        if value is not None:
            settings[key] = _plain(key, value)
    recorded = document.get("settings")
    if isinstance(recorded, dict):
        settings.update({str(key): _plain(str(key), value) for key, value in recorded.items()})
    if document.get("data"):
        settings["data"] = _plain("data", document["data"])
    return settings


def _plain(key: str, value):
    if key == "sizes" and isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool)
                                                          for n in value):
        return tuple(value)
    if value is None or isinstance(value, (str, bool, float)) or (isinstance(value, int) and key != "sizes"):
        return value
    return json.dumps(value)


def read_run(label: str, model: Path | None = None, history: Path | None = None) -> Run:
    """Read what a run's model and/or history say about it."""
    run = Run(label, model, history)
    meta = {}
    recorded = False
    if model is not None:
        _, _, meta = read_model_record(model)
        recorded = isinstance(meta.get("settings"), dict)
        run.settings = flat_settings(meta)
        run.initial_sha256 = meta.get(DIGEST_KEY)
        run.best_val_accuracy = meta.get("val_accuracy")
        run.best_epoch = meta.get("best_epoch") or None
        run.epochs_run = meta.get("epochs_run")
    if history is None:
        run.records_settings = recorded
        return run
    document = read_history_document(history)
    run.document = document
    run.records_settings = recorded or isinstance(document.get("settings"), dict)
    run.settings = {**flat_settings(document), **run.settings}
    run.initial_sha256 = run.initial_sha256 or document.get(DIGEST_KEY)
    run.status = "stopped" if document.get("interrupted") else "finished"
    if document["epochs"]:
        columns = validate_history(document, source=str(history))
        run.epochs_run = int(columns["epoch"][-1])
        run.final_train_loss = float(columns["train_loss"][-1])
        if columns["seconds"] is not None:
            run.seconds = float(sum(s for s in columns["seconds"] if math.isfinite(s)))
        best = columns["best_epoch"]
        if best is not None:
            run.best_epoch = int(best)
            run.best_val_accuracy = float(columns["val_accuracy"][list(columns["epoch"]).index(best)])
    else:
        run.epochs_run = run.epochs_run or 0
        if run.status == "finished":
            run.status = "no epochs"      # not "finished": nothing ran
    return run


def run_label(path: Path) -> str:
    """A run's name from either of its files: runs/lr=0.25.npy and runs/lr=0.25.history.json -> lr=0.25."""
    name = path.name
    if name.endswith(HISTORY_SUFFIX):
        return name[:-len(HISTORY_SUFFIX)]
    return name.removesuffix(".npy").removesuffix(".json")


def run_files(path: Path) -> tuple[Path | None, Path | None]:
    """(model, history) of the run one of its files belongs to; the partner only if it exists and is ours."""
    label = run_label(path)
    if path.name.endswith(".json"):
        model = path.with_name(label + ".npy")
        return (model if model.is_file() and is_model_file(model) else None), path
    history = path.with_name(label + HISTORY_SUFFIX)
    return path, (history if history.is_file() and is_history_file(history) else None)


def is_summary_file(path: Path) -> bool:
    """A summary.json a sweep wrote."""
    try:
        document = is_json_object(path.read_bytes())
    except OSError:
        return False
    return document is not None and document.get("format") == SUMMARY_FORMAT


def read_summary(folder: Path) -> dict | None:
    path = folder / SUMMARY_NAME
    if not path.is_file() or not is_summary_file(path):
        return None
    document = parse_json(path.read_bytes(), str(path), BptrainError)
    return document if isinstance(document.get("runs"), list) else None


def folder_runs(folder: Path) -> list[Run]:
    """Every run in a folder: models and histories paired by name, plus the summary's runs without files."""
    labels = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        if path.name.endswith(HISTORY_SUFFIX) and is_history_file(path):
            labels.setdefault(run_label(path), [None, None])[1] = path
        elif path.suffix == ".npy" and is_model_file(path):
            labels.setdefault(run_label(path), [None, None])[0] = path
    runs = {label: read_run(label, model, history) for label, (model, history) in labels.items()}
    summary = read_summary(folder)
    order = []
    for entry in (summary or {}).get("runs", []):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        order.append(name)
        if name not in runs and entry.get("status") in ("diverged", "failed", "not started", "stopped"):
            settings = entry.get("settings") if isinstance(entry.get("settings"), dict) else {}
            runs[name] = Run(name, settings={k: tuple(v) if k == "sizes" else v for k, v in settings.items()},
                             status=entry["status"], message=entry.get("message"), seconds=entry.get("seconds"))
    rank = {name: i for i, name in enumerate(order)}
    return sorted(runs.values(), key=lambda run: (rank.get(run.label, len(rank)), _natural_key(run.label)))


def _natural_key(label: str):
    """Sort lr=0.025 before lr=0.25 before lr=2.5: the value parts of NAME=VALUE_NAME=VALUE as numbers."""
    key = []
    for part in label.split("_"):
        name, _, value = part.partition("=")
        try:
            key.append((name, 0, float(value), ""))
        except ValueError:
            key.append((name, 1, 0.0, value))
    return key


def collect_runs(paths) -> list[Run]:
    """The runs named by ``paths`` (models, histories, folders), each once, in the order given."""
    runs, seen = [], set()
    for path in map(Path, paths):
        if path.is_dir():
            found = folder_runs(path)
            if not found:
                raise BptrainError(f"{path} holds no bptrain models or histories")
        elif not path.exists():
            raise BptrainError(f"no run at {path} (give a model .npy, a history .json or a folder of them)")
        elif path.name.endswith(".json"):
            model, history = run_files(path)
            found = [read_run(run_label(path), model, history)]
        else:
            model, history = run_files(path)
            found = [read_run(run_label(path), model, history)]
        for run in found:
            identity = tuple(str(p.resolve()) for p in (run.model, run.history) if p is not None) or \
                (str(path.resolve()), run.label)
            if identity not in seen:
                seen.add(identity)
                runs.append(run)
    _unique_labels(runs)
    return runs


def _unique_labels(runs: list[Run]) -> None:
    """Runs of the same name from different folders are named by their path instead."""
    counts = {}
    for run in runs:
        counts[run.label] = counts.get(run.label, 0) + 1
    for run in runs:
        if counts[run.label] > 1:
            path = run.model or run.history
            if path is not None:
                run.label = str(path.with_name(run.label))


# --------------------------------------------------------------------- settings
def differing_settings(runs: list[Run]) -> list[str]:
    """The settings with more than one value among the runs that record them, in the options table's order."""
    keys = [key for key in SETTING_ORDER if any(key in run.settings for run in runs)]
    return [key for key in keys if len({_comparable(run.settings[key]) for run in runs if key in run.settings}) > 1]


def same_settings(runs: list[Run]) -> dict:
    """The settings every run that records them shares, leaving out those that do not apply to them."""
    differ = set(differing_settings(runs))
    same = {}
    for key in SETTING_ORDER:
        values = [run.settings[key] for run in runs if key in run.settings]
        if values and key not in differ:
            same[key] = values[0]
    return {key: value for key, value in same.items() if _applies(key, same)}


#: Settings whose 0 means "off": shown only when on.
OFF_AT_ZERO = ("early_stopping",) + DISTORTION_SETTINGS


def _applies(key: str, settings: dict) -> bool:
    """Whether a setting changes anything given the others (display only: Adam's betas mean nothing to SGD)."""
    optimizer = settings.get("optimizer")
    if key in OFF_AT_ZERO:
        return settings[key] != 0
    if key in ("beta1", "beta2", "eps"):
        return optimizer != "sgd"
    if key in ("momentum", "nesterov"):
        return optimizer != "adam" and (key == "momentum" or settings.get("momentum", 1) != 0)
    if key in ("step_size", "gamma"):
        return settings.get("schedule") in (None, "step")
    if key == "min_lr":
        return settings.get("schedule") in (None, "cosine")
    if key == "elastic_sigma":
        return settings.get("elastic_alpha", 1) != 0
    return True


def _comparable(value):
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits: compared as it is
            return value
    return value


def option_label(key: str) -> str:
    """How a setting is named to the user: its option's spelling without the dashes (batch-size)."""
    option = OPTIONS_BY_NAME.get(key)
    return option.cli_name[2:] if option is not None else key


def show_value(key: str, value) -> str:
    if value is None:
        return "?"
    if key == "sizes" and isinstance(value, tuple):
        return "-".join(str(n) for n in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if float(f"{value:g}") == value else repr(value)
    return str(value)


def describe(run: Run, keys) -> str:
    """lr=0.25, activation=relu: a run named by the settings that set it apart."""
    parts = [f"{option_label(key)}={show_value(key, run.settings.get(key))}" for key in keys]
    return ", ".join(parts) if parts else run.label


# --------------------------------------------------------------------- the table
STATUS_WORDS = {"finished": "finished", "stopped": "stopped", "diverged": "diverged", "failed": "failed",
                "not started": "not started", "no epochs": "no epochs run"}


def status_text(run: Run) -> str:
    if run.status == "finished" and run.skipped:
        return "finished before"
    if run.status == "diverged" and run.message:
        match = re.search(r"diverged in epoch (\d+)", run.message)
        return f"diverged in epoch {match.group(1)}" if match else "diverged"
    if run.status == "stopped":
        return "stopped (best so far saved)" if run.model is not None else "stopped (nothing saved)"
    return STATUS_WORDS.get(run.status, run.status)


def start_letters(runs: list[Run]) -> dict[str, str] | None:
    """{digest: "A", ...} when the runs did not all start from the same weights; None when they did."""
    digests = []
    for run in runs:
        if run.initial_sha256 and run.initial_sha256 not in digests:
            digests.append(run.initial_sha256)
    if len(digests) <= 1:
        return None
    return {digest: _letter(i) for i, digest in enumerate(digests)}


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"#{i + 1}"


def format_table(runs: list[Run], keys, *, label: bool = True) -> str:
    """The runs as a table: the given settings, then best validation accuracy and its epoch, final train
    loss, seconds, status (and which runs share their starting weights, when not all do)."""
    letters = start_letters(runs)
    headers = (["run"] if label else []) + [option_label(key) for key in keys] + \
        ["best val acc", "at epoch", "final train loss", "seconds"] + (["start"] if letters else []) + ["status"]
    right = [False] * int(label) + [True] * len(keys) + [True] * 4 + [False] * (1 + bool(letters))
    rows = []
    for run in runs:
        row = [run.label] if label else []
        row += [show_value(key, run.settings.get(key)) for key in keys]
        row.append(f"{100 * run.best_val_accuracy:.2f}%" if run.best_val_accuracy is not None else "-")
        row.append(f"{run.best_epoch}/{run.epochs_run}" if run.best_epoch and run.epochs_run else "-")
        row.append(f"{run.final_train_loss:.4f}" if run.final_train_loss is not None else "-")
        row.append(("-" if run.seconds is None else f"{run.seconds:.2f}" if run.seconds < 10 else f"{run.seconds:.1f}"))
        if letters:
            row.append(letters.get(run.initial_sha256, "-"))
        row.append(status_text(run))
        rows.append(row)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = []
    for row in [headers] + rows:
        cells = [cell.rjust(width) if align else cell.ljust(width) for cell, width, align in zip(row, widths, right)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def start_note(runs: list[Run]) -> str | None:
    """One line on the starting weights, read from the runs' recorded digests."""
    recorded = [run for run in runs if run.initial_sha256]
    if len(recorded) < 2:
        return None
    letters = start_letters(recorded)
    silent = sum(1 for run in runs if not run.initial_sha256 and (run.model or run.history))
    unknown = f" ({silent} other run(s), written by an older bptrain, do not say)" if silent else ""
    if letters is None:
        return f"all {len(recorded)} runs started from identical weights (same SHA-256 of the initial parameters)" \
            + unknown
    return (f"start: runs with the same letter started from identical weights; {len(letters)} different "
            f"starting points" + unknown)


def failure_lines(runs: list[Run]) -> list[str]:
    return [f"{run.label}: {run.message}" for run in runs if run.message and run.status in ("diverged", "failed")]


def same_line(runs: list[Run], width: int = 100, data_name_only: bool = False) -> str | None:
    """"same in all: sizes 784-30-10, loss mse, ..." wrapped at ``width``; ``data_name_only``: the data
    file's name without its folders (for pictures that leave the machine)."""
    same = same_settings(runs)
    if not same:
        return None
    if data_name_only and isinstance(same.get("data"), str):
        same["data"] = Path(same["data"]).name
    silent = [run.label for run in runs if not run.records_settings]
    head = "same in all: " if not silent else (f"same in all that record settings ({', '.join(silent)} record"
                                                  f"{'s' if len(silent) == 1 else ''} none): ")
    items = [f"{option_label(k)} {show_value(k, v)}" for k, v in same.items()]
    return "\n".join(_wrap_items(head, items, width))


def _wrap_items(head: str, items: list[str], width: int) -> list[str]:
    """``head`` and the items joined by ", " in lines of at most ``width`` (an item longer than a line has
    one to itself): a setting is never parted from its value ("lr" on one line, "0.1" on the next)."""
    lines, line = [], head.rstrip()
    for n, item in enumerate(items):
        piece = item + ("," if n < len(items) - 1 else "")
        if line and len(line) + 1 + len(piece) > width and line.strip() != head.strip():
            lines.append(line)
            line = "  " + piece
        else:
            line = f"{line} {piece}" if line else piece
    lines.append(line)
    return lines


# --------------------------------------------------------------------- compare
# --------------------------------------------------------------------- overlaid curves
#: The overlay pictures: file name part -> (history column, or "speed").
OVERLAYS = {"train-loss": "train_loss", "val-loss": "val_loss", "val-accuracy": "val_accuracy", "speed": "speed"}
OVERLAY_PREFIX = "compare"


def plot_runs(sources, out_dir: Path | None, note) -> list[Path]:
    """``bptrain plot RUN RUN ...``: one PNG per quantity with every run's curve on shared axes.

    ``note(text)``: how to tell the user of a run that has nothing to draw."""
    plot.require_matplotlib()
    runs = collect_runs(sources)
    drawn = [run for run in runs if run.document is not None and run.document["epochs"]]
    for run in runs:
        if run not in drawn:
            note(f"note: {run.label} ({status_text(run)}) has no epochs in a history; not drawn")
    if not drawn:
        raise BptrainError("none of these runs has a history with epochs to draw")
    differ = differing_settings(runs)
    labelled = [(describe(run, differ), run.document) for run in drawn]
    if out_dir is None:
        parents = {Path(p).resolve() if Path(p).is_dir() else Path(p).resolve().parent for p in sources}
        out_dir = Path(sources[0]) if Path(sources[0]).is_dir() else Path(sources[0]).parent
        if len(parents) > 1:
            out_dir = Path(".")
    if not out_dir.is_dir():
        raise SettingError(f"output directory {out_dir} does not exist", field="out_dir")
    with_speed = any(plot.has_speed(document) for _, document in labelled)
    kinds = [kind for kind, column in OVERLAYS.items() if column != "speed" or with_speed]
    pictures = OutputDir(out_dir, tuple(f"{OVERLAY_PREFIX}.{kind}.png" for kind in kinds))
    inputs = [p for run in runs for p in (run.model, run.history) if p is not None]
    check_no_clash({"RUN": inputs}, {"--out-dir": [pictures]})
    for path in pictures.files():
        check_replaceable("--out-dir", path, is_png_file, "a PNG picture", f"{path}, which --out-dir {out_dir} would write,")
    subtitle = same_line(runs, width=110, data_name_only=True) or ""
    subtitle = subtitle.removeprefix("same in all: ")
    written = []
    for kind, path in zip(kinds, pictures.files()):
        if OVERLAYS[kind] == "speed":
            written.append(plot.plot_overlay_speed([(label, d) for label, d in labelled if plot.has_speed(d)], path,
                                                   subtitle=subtitle))
        else:
            written.append(plot.plot_overlay(labelled, OVERLAYS[kind], path, subtitle=subtitle))
    return written
