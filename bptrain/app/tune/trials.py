"""A study's trials: each one a real ``bptrain train`` run, watched epoch by epoch and pruned when behind.

The trials run as a sweep's runs do (:class:`bptrain.app.sweep.runner.Sweep`, whose processes, output
lines, cluster tasks and account of each run's end are reused): here the next trial is asked of Optuna
when a place frees, each epoch line's validation accuracy is reported to it, and a trial it prunes gets
SIGTERM, on which ``train`` keeps its best model so far and its history. Every access to the study is
made from this process's main thread.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ...core.errors import BptrainError
from ..compare import read_run
from ..paths import is_history_file, is_model_file
from ..stopping import StopSignals
from ..sweep.cluster import CHILD_CODE
from ..sweep.grid import SWEEP_OPTIONS, Job, option_args
from ..sweep.runner import EPOCH_LINE, Display, Sweep
from .space import suggest
from .study import HEARTBEAT_SECONDS, OWNER_KEY, REASON_KEY, make_sampler, owner, quiet_optuna

#: A trial's runs are named by its number: trial-0007.npy, trial-0007.history.json.
RUN_PREFIX = "trial-"


def run_name(number: int) -> str:
    return f"{RUN_PREFIX}{number:04d}"


@dataclass
class TrialJob(Job):
    """A sweep's job that is also an Optuna trial."""

    trial: Any = None
    pruned_after: int | None = None


def train_args(settings: dict, config: Path | None, model: Path, history: Path) -> list[str]:
    """``train``'s arguments for ``settings`` (as a sweep's run is given them)."""
    args = ["train"] + (["--config", str(config)] if config is not None else [])
    for option in SWEEP_OPTIONS:
        if option.name in settings:
            args += option_args(option, settings[option.name])
    return args + ["--out", str(model), "--history", str(history)]


def finished_value(out_dir: Path):
    """For study.fail_abandoned: a trial's best validation accuracy if its files in ``out_dir`` say its run
    finished (its process died between the run's end and recording it), else None."""

    def value(trial) -> float | None:
        name = trial.user_attrs.get("run")
        if not isinstance(name, str) or not name.startswith(RUN_PREFIX):
            return None
        model, history = out_dir / f"{name}.npy", out_dir / f"{name}.history.json"
        if not (model.is_file() and history.is_file() and is_model_file(model) and is_history_file(history)):
            return None
        try:
            run = read_run(name, model, history)
        except BptrainError:
            return None
        return run.best_val_accuracy if run.status == "finished" else None

    return value


class Tuner(Sweep):
    """Asks the study for ``n_trials`` trials (fewer if ``timeout`` seconds pass), ``parallel`` at a time."""

    def __init__(self, study, storage, space: dict, fixed: dict, config: Path | None, out_dir: Path, *,
                 n_trials: int, timeout: float | None, parallel: int, variables: dict, display: Display,
                 sampler_seed: int, pruner, on_told=None, launch=None):
        super().__init__([], parallel, variables, display, self.tell, launch)
        self.study, self.storage, self.space, self.fixed, self.config = study, storage, space, fixed, config
        self.out_dir, self.n_trials, self.timeout = out_dir, n_trials, timeout
        self.sampler_seed, self.pruner = sampler_seed, pruner
        self.on_told = on_told or (lambda job: None)
        self.asked = 0
        self.told: list[TrialJob] = []
        self.owner = owner()

    # ----------------------------------------------------------------- the loop
    def run(self) -> int | None:
        """Run the trials; return the stop signal's number if one came, else None."""
        running: list[TrialJob] = []
        began = time.monotonic()
        beat = 0.0
        with StopSignals() as stop:
            stop.defer()  # a signal is recorded here and passed on below, never raised mid-bookkeeping
            while True:
                timed_out = self.timeout is not None and time.monotonic() - began >= self.timeout
                while (stop.signum is None and not timed_out and self.asked < self.n_trials
                       and len(running) < self.parallel):
                    job = self.new_trial()
                    self.start(job)
                    running.append(job)
                if not running:
                    break
                self.read_events(timeout=0.2)
                if time.monotonic() - beat >= HEARTBEAT_SECONDS / 2:
                    beat = time.monotonic()
                    for job in running:
                        self.storage.record_heartbeat(job.trial._trial_id)
                if stop.signum is not None and self.signum is None:
                    self.stop_running(running, stop.signum,
                                      "trial(s); each saves its best model so far and is recorded as failed")
                self.reap(running)
                self.display.draw()
        return self.signum

    def new_trial(self) -> TrialJob:
        self.asked += 1
        with quiet_optuna():
            trial = self.study.ask()
        # the trial's draws come from a sampler seeded by its own number (see study.make_sampler)
        seeded = optuna.load_study(study_name=self.study.study_name, storage=self.storage,
                                   sampler=make_sampler(self.sampler_seed, trial.number), pruner=self.pruner)
        trial = optuna.trial.Trial(seeded, trial._trial_id)
        values = suggest(trial, self.space)
        name = run_name(trial.number)
        model, history = self.out_dir / f"{name}.npy", self.out_dir / f"{name}.history.json"
        job = TrialJob(name, values, train_args({**self.fixed, **values}, self.config, model, history), model,
                       history, trial=trial)
        trial.set_user_attr(OWNER_KEY, self.owner)
        trial.set_user_attr("run", name)
        trial.set_user_attr("command", job.command)
        self.storage.record_heartbeat(trial._trial_id)
        self.jobs.append(job)
        return job

    def command(self, job) -> list[str]:
        """As a sweep's, but the run dies with this process: a killed study leaves no trial training."""
        return [sys.executable, "-c", CHILD_CODE, str(os.getpid()), *job.args]

    # ----------------------------------------------------------------- each epoch
    def handle(self, job: TrialJob, kind: str, line: str) -> None:
        super().handle(job, kind, line)
        if kind != "out" or job.pruned_after is not None or self.signum is not None:
            return
        match = EPOCH_LINE.match(line)
        if not match:
            return
        epoch, epochs, accuracy = int(match.group(1)), int(match.group(2)), float(match.group(5)) / 100
        job.trial.report(accuracy, epoch)
        if epoch < epochs and job.trial.should_prune():
            job.pruned_after = epoch
            if job.process.poll() is None:
                job.process.send_signal(signal.SIGTERM)
            self.display.say(f"{job.name}: pruned after epoch {epoch}/{epochs} (val acc {100 * accuracy:.2f}%, "
                             "behind the others there); it keeps its best model so far")

    # ----------------------------------------------------------------- the end of a trial
    def tell(self, job: TrialJob) -> None:
        """Record what became of the trial (Sweep.finish has read it from the run's files and exit status)."""
        try:
            self._tell(job)
        except optuna.exceptions.UpdateFinishedTrialError:  # another command failed it as stale meanwhile
            self.display.say(f"{job.name}: already recorded as failed by another command on the study "
                             "(its heartbeat was late); its files are kept")
        self.told.append(job)
        self.on_told(job)

    def _tell(self, job: TrialJob) -> None:
        run = job.result
        trial = job.trial
        for key, value in (("status", run.status), ("message", run.message), ("epochs_run", run.epochs_run),
                           ("best_epoch", run.best_epoch), ("seconds", run.seconds),
                           ("final_train_loss", run.final_train_loss),
                           ("pruned_after_epoch", job.pruned_after)):
            if value is not None:
                trial.set_user_attr(key, value)
        if job.pruned_after is not None:
            self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        elif run.status == "finished" and run.best_val_accuracy is not None:
            self.study.tell(trial, run.best_val_accuracy, skip_if_finished=True)
        else:
            reason = run.message or run.status
            if run.status == "stopped" and self.signum is not None:
                reason = f"{self.stopped_by()} before it finished"
            trial.set_user_attr(REASON_KEY, reason)
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
