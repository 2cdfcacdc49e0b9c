"""What a study found: the best trial as a ``bptrain train`` command and a config, the best few side by
side, each setting's importance (Optuna's evaluator), the plots, and the folder's summary.json."""

from __future__ import annotations

import io
import json
import math
import shlex
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ... import __version__
from ...core.errors import BptrainError
from ...data.model_io import atomic_write
from ..compare import SUMMARY_FORMAT, SUMMARY_NAME, Run, format_table, is_summary_file
from ..options import CONFIG_OPTIONS
from ..paths import is_png_file
from ..plot import require_matplotlib
from ..sweep.folder import write_summary
from .space import settings_of
from .study import REASON_KEY

#: How many of the best trials the table shows.
TOP = 5
CONFIG_HEADER = "# bptrain tune: the best trial's settings"
PLOTS = ("history", "importance", "slice", "parallel")


def trial_run(trial) -> Run:
    """A trial as a run of compare's table (its numbers as recorded in the study)."""
    attrs = trial.user_attrs
    status = {TrialState.COMPLETE: "finished", TrialState.PRUNED: "pruned", TrialState.RUNNING: "running",
              TrialState.WAITING: "waiting"}.get(trial.state, attrs.get("status", "failed"))
    if trial.state == TrialState.FAIL and attrs.get("status") not in ("diverged",):
        status = "failed"
    value = trial.value if trial.state == TrialState.COMPLETE else None
    return Run(attrs.get("run", f"trial {trial.number}"), settings=settings_of(trial.params), status=status,
               best_val_accuracy=value, best_epoch=attrs.get("best_epoch"), epochs_run=attrs.get("epochs_run"),
               seconds=attrs.get("seconds"), final_train_loss=attrs.get("final_train_loss"), message=attrs.get(REASON_KEY) or attrs.get("message"))


def counts_line(study) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    parts = [f"{counts[state]} {word}" for state, word in ((TrialState.COMPLETE, "finished"),
                                                          (TrialState.PRUNED, "pruned"), (TrialState.FAIL, "failed"),
                                                          (TrialState.RUNNING, "running")) if counts[state]]
    return f"study {study.study_name}: {len(trials)} trial{'s' if len(trials) != 1 else ''}" + \
        (f" ({', '.join(parts)})" if parts else "")


def best_trials(study, top: int = TOP) -> list:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return sorted(done, key=lambda t: (-t.value, t.number))[:top]


def best_command(trial, out: str) -> str:
    """The trial's own ``bptrain train`` command, saving to ``out`` (and its history beside it)."""
    args = shlex.split(trial.user_attrs["command"])
    kept, i = [], 0
    while i < len(args):
        if args[i] in ("--out", "--history"):
            i += 2
            continue
        kept.append(args[i])
        i += 1
    return " ".join(shlex.quote(arg) for arg in kept + ["--out", out])


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def best_config(study, trial) -> str:
    """A config TOML of the best trial: the study's fixed settings and the trial's, as train reads them."""
    definition = study.user_attrs.get("bptrain_definition", {})
    settings = json.loads(definition.get("settings", "{}"))
    settings.update(trial.params)
    lines = [CONFIG_HEADER, f"# trial {trial.number} of study {study.study_name}: best validation accuracy "
                            f"{100 * trial.value:.2f}%; bptrain train --config THIS_FILE"]
    for name, value in settings.items():
        if name in CONFIG_OPTIONS and value is not None:
            lines.append(f"{name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def write_config(path: Path, text: str) -> None:
    if path.exists() and not _is_our_config(path):
        raise BptrainError(f"{path} exists and is not a config bptrain tune wrote; move it away")
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _is_our_config(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return path.is_file() and handle.read(len(CONFIG_HEADER)) == CONFIG_HEADER.encode()
    except OSError:
        return False


def importances(study) -> dict | None:
    """{setting: importance} by Optuna's default evaluator, None when too few trials say anything."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if len(complete) < 2:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None


def plot_paths(out_dir: Path, name: str) -> dict:
    return {kind: out_dir / f"{name}-{kind}.png" for kind in PLOTS}


def write_plots(study, out_dir: Path) -> list[Path]:
    """The optimisation history, the importances, the slice and parallel-coordinate plots, as PNGs."""
    plt = require_matplotlib()
    from optuna.visualization import matplotlib as views

    paths = plot_paths(out_dir, study.study_name)
    for path in paths.values():
        if path.exists() and not (path.is_file() and is_png_file(path)):
            raise BptrainError(f"{path} exists and is not a PNG; move it away (the study's plots go there)")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    makers = {"history": views.plot_optimization_history, "slice": views.plot_slice,
              "parallel": views.plot_parallel_coordinate}
    if importances(study):
        makers["importance"] = views.plot_param_importances
    written = []
    for kind, make in makers.items():
        if not complete:
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's plots are "experimental"
            try:
                axes = make(study)
            except (ValueError, RuntimeError):
                continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        atomic_write(paths[kind], lambda handle: handle.write(buffer.getvalue()))
        written.append(paths[kind])
    return written


def report(study, out_dir: Path | None) -> list[str]:
    """The lines the command prints at the end (and for --show); writes the config and the plots into
    ``out_dir`` (None: no files, only the lines)."""
    lines = ["", counts_line(study)]
    best = best_trials(study)
    if not best:
        return lines + ["no trial has finished yet: nothing to show"]
    searched = list(best[0].params)
    lines += ["", format_table([trial_run(t) for t in best], searched)]
    top = best[0]
    lines += ["", f"best: {top.user_attrs.get('run', top.number)}, validation accuracy {100 * top.value:.2f}%",
              f"  {best_command(top, 'best.npy')}"]
    if out_dir is not None:
        config = out_dir / f"{study.study_name}-best.toml"
        write_config(config, best_config(study, top))
        lines.append(f"  its settings as a config: {config}")
    found = importances(study)
    if found:
        lines.append("importance (Optuna's fANOVA): " + ", ".join(f"{name} {value:.2f}" for name, value in
                                                                 found.items() if math.isfinite(value)))
    if out_dir is not None:
        written = write_plots(study, out_dir)
        if written:
            lines.append(f"plots: {', '.join(str(path) for path in written)}")
    return lines


def summary_document(study, storage_text: str) -> dict:
    """summary.json of the study's folder, in a sweep's format, so ``compare`` and ``plot`` read it."""
    entries = []
    for trial in study.get_trials(deepcopy=False):
        run = trial_run(trial)
        name = trial.user_attrs.get("run")
        if name is None:
            continue
        entries.append({"name": name, "trial": trial.number, "state": trial.state.name,
                        "command": trial.user_attrs.get("command"),
                        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in run.settings.items()},
                        "model": f"{name}.npy", "history": f"{name}.history.json",
                        "status": "stopped" if run.status == "pruned" else run.status,
                        "best_val_accuracy": run.best_val_accuracy, "best_epoch": run.best_epoch,
                        "epochs_run": run.epochs_run, "seconds": run.seconds, "message": run.message})
    return {"format": SUMMARY_FORMAT, "bptrain_version": __version__, "study": study.study_name,
            "storage": storage_text, "runs": entries}


def check_summary(out_dir: Path, name: str) -> None:
    """The folder's summary.json may be replaced only if it is this study's (not a sweep's, not another's)."""
    path = out_dir / SUMMARY_NAME
    if not path.exists():
        return
    if not is_summary_file(path):
        raise BptrainError(f"{path} exists and is not a bptrain summary; use another --out-dir")
    study = json.loads(path.read_bytes()).get("study")
    if study != name:
        whose = f"study {study}'s" if isinstance(study, str) else "a sweep's"
        raise BptrainError(f"{path} is {whose} summary; give study {name} another --out-dir")


def save_summary(study, out_dir: Path, storage_text: str) -> None:
    write_summary(out_dir / SUMMARY_NAME, summary_document(study, storage_text))
