"""What a sweep's folder holds already, what it may write there, and its summary.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ... import __version__
from ...core.errors import BptrainError, SettingError
from ...core.network import AUTO_INIT, default_init
from ...data.checkpoint_io import is_checkpoint_file
from ...data.download import ensure_data
from ...data.loader import resolve_data_path
from ...data.model_io import atomic_write
from .. import checkpoints, runs
from ..checkpoints import checkpoint_path
from ..compare import SUMMARY_FORMAT, Run, is_summary_file, option_label, read_run, show_value
from ..paths import data_files, is_history_file, is_model_file
from .grid import SWEEP_OPTIONS, Job, value_text


# --------------------------------------------------------------------- what the folder holds already
def finished_run(job: Job) -> Run | None:
    """The run in the folder under this job's name if its history says it finished (and its model is there)."""
    if not (job.model.is_file() and job.history.is_file()):
        return None
    if not (is_model_file(job.model) and is_history_file(job.history)):
        return None
    try:
        run = read_run(job.name, job.model, job.history)
    except BptrainError:
        return None
    return run if run.status == "finished" else None


def conflicts(wanted: dict, run: Run) -> list[str]:
    """The settings a finished run was trained with that differ from what the sweep asks of it."""
    found = []
    for key, value in wanted.items():
        if key not in run.settings or key in ("data", "resume", "no_download"):
            continue
        recorded = run.settings[key]
        if key == "init" and value == AUTO_INIT:
            value = default_init(wanted.get("activation", run.settings.get("activation", "sigmoid")))
        if key == "sizes":
            value, recorded = tuple(value), tuple(recorded)
        if key == "batch_size" and recorded < value and _clamped(recorded, run):
            continue  # train clamps a batch larger than the training set, with a notice
        if recorded != value:
            found.append(f"{option_label(key)} {show_value(key, recorded)} (this sweep: {show_value(key, value)})")
    return found


def _clamped(recorded: int, run: Run) -> bool:
    """Whether a recorded batch size may be train's clamp to the training set: the history's fixed batch
    (the first min(1,000, N) training images) says N when below 1,000."""
    initial = (run.document or {}).get("initial") or {}
    batch = initial.get("batch")
    return isinstance(batch, int) and (recorded == batch if batch < 1000 else recorded >= 1000)


# --------------------------------------------------------------------- summary
def summary_document(jobs: list[Job], swept: dict, info: dict) -> dict:
    options = {option.name: option for option in SWEEP_OPTIONS}
    runs = []
    for job in jobs:
        entry = {"name": job.name, "command": job.command,
                 "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in job.values.items()},
                 "model": job.model.name, "history": job.history.name}
        if job.result is not None:
            result = job.result.to_dict()
            for key in ("label", "model", "history", "settings"):
                result.pop(key)
            entry.update(result)
            entry["skipped"] = job.result.skipped
        else:
            entry["status"] = "not started"
        if job.started_at is not None:
            entry["started_at"], entry["ended_at"] = job.started_at, job.ended_at
        runs.append(entry)
    return {"format": SUMMARY_FORMAT, "bptrain_version": __version__,
            "swept": {name: [value_text(options[name], v) for v in values] for name, values in swept.items()},
            **info, "runs": runs}


def write_summary(path: Path, document: dict) -> None:
    text = json.dumps(document, indent=2)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def obtain_data(data: Path | None, no_download: bool) -> None:
    """Fetch the default data set once here if it is missing, rather than in every run at the same time;
    a missing file the user named is one error here rather than one per run."""
    path = resolve_data_path(data)
    if not path.exists():
        ensure_data(path, allow_download=not no_download, progress=sys.stderr.isatty())


def check_outputs(jobs: list[Job], summary: Path, fixed: dict, config: Path | None, out_dir: Path) -> None:
    """Before any run: no output is an input or another output, and no file that is not bptrain's is in the way."""
    data = fixed.get("data")

    inputs = {"--data": data_files(resolve_data_path(data)), "--config": [config], "--resume": [fixed.get("resume")]}
    outputs = {"--out-dir": [path for job in jobs for path in (job.model, job.history, checkpoint_path(job.model))]
               + [summary]}
    replaceable = [replaced for job in jobs for replaced in (
        ("--out-dir", job.model, is_model_file, "a bptrain model", f"{job.model}, which run {job.name} would write,"),
        ("--out-dir", job.history, is_history_file, "a bptrain history JSON",
         f"{job.history}, which run {job.name} would write,"),
        ("--out-dir", checkpoint_path(job.model), is_checkpoint_file, "a bptrain checkpoint",
         f"{checkpoint_path(job.model)}, which run {job.name} would write,"))]
    replaceable.append(("--out-dir", summary, is_summary_file, "a bptrain sweep summary",
                        f"{summary}, which the sweep would write,"))
    # every file of every run, before any run: what a run would find only when it started (a name the file
    # system cannot hold, a folder where its file goes) fails here, not after the other runs have trained
    for job in jobs:
        for path, what in ((job.model, "model file"), (job.history, "history file"),
                           (checkpoint_path(job.model), "checkpoint")):
            runs.check_name_length(path, f"run {job.name}'s {what}", "out_dir")
            if path.is_dir():
                raise SettingError(f"{path}, which run {job.name} would write as its {what}, is a folder; move it "
                                   "away, or give another --out-dir", field="out_dir")
    runs.check_files(inputs, outputs, replaceable=replaceable)


def continue_from_checkpoint(job: Job) -> int | None:
    """A run stopped before it finished left its checkpoint beside its model: the run goes on from it, exactly,
    rather than from the start. Returns the epoch it goes on after, or None when it starts afresh."""
    path = checkpoint_path(job.model)
    if not path.is_file():
        return None
    try:
        checkpoint = checkpoints.read(path)
    except BptrainError:
        return None  # train refuses it in one line if it is given; here the run just starts again
    if checkpoint.out != job.model:  # another run's, under a name this one would write
        return None
    args, i = [], 0
    while i < len(job.args):  # a --resume of the sweep's own is what the checkpoint's run started from
        if job.args[i] == "--resume":
            i += 2
            continue
        args.append(job.args[i])
        i += 1
    job.args = args + ["--resume", str(path)]
    return checkpoint.state.epoch
