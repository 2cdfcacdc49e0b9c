"""``bptrain sweep``: one training run per setting, everything else the same.

A sweep is the grid of the values given to some of ``train``'s options:
``--lr 0.1,1 --activation sigmoid,relu`` is four runs. Each run is a real
``bptrain train`` process writing ``DIR/NAME.npy`` and ``DIR/NAME.history.json``,
NAME saying its setting (``lr=0.1_activation=relu``): the very command that
``--print-commands`` prints for a scheduler. So a run in a sweep is saved,
stopped by a signal, checked for divergence and kept from replacing files that
are not bptrain's exactly as ``train`` does it; this module only decides the
runs, starts ``--jobs`` of them at a time, shows one line per run, passes
Ctrl-C and SIGTERM on to them and writes ``summary.json``.

The sweep's options are ``train``'s, read from the options table
(:data:`bptrain.options.TRAIN_OPTIONS`): each takes a comma list of values or is
given several times (``--sizes``, whose values hold commas, only the latter).
Every run gets the same seed, so runs whose settings leave the shapes and the
initialisation alone start from identical weights; each run records the SHA-256
of its starting parameters (:func:`bptrain.app.compare.parameters_sha256`), and the table says which
runs share them.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from .. import __version__
from .compare import (SUMMARY_FORMAT, SUMMARY_NAME, Run, failure_lines, format_table, is_summary_file, option_label,
                      read_run, show_value, start_note)
from . import memory
from .config import load_config
from ..core.errors import BptrainError, PathClash
from ..core.network import AUTO_INIT, default_init
from .options import PATH, TRAIN_OPTIONS, GroupedHelpCommand, Option, parse_sizes
from .paths import check_no_clash, check_replaceable, data_files, is_history_file, is_model_file
from .stopping import STOP_SIGNALS, StopSignals, exit_status, signal_name


# --------------------------------------------------------------------- the options, from train's table
#: Options of ``train`` the sweep sets itself (the runs' files) or has its own of (``-q``).
OWN = frozenset({"out", "history", "quiet"})
SWEEP_OPTIONS: tuple[Option, ...] = tuple(option for option in TRAIN_OPTIONS if option.name not in OWN)


def is_sweepable(option: Option) -> bool:
    """Paths (--data, --resume) and plain flags (--no-download) take one value for every run."""
    return option.kind is not PATH and (option.flag is None or "/" in option.flag)


def _on_off(option: Option) -> tuple[str, str]:
    on, off = option.flag.split("/")
    return on, off


def _off_name(option: Option) -> str:
    return "no_" + option.name


def _help(option: Option) -> str:
    text = option.help
    default = option.default_value()
    if option.show_default and default is not None:
        shown = show_value(option.name, default) if not isinstance(default, str) else default
        text += f" [train's default: {shown}]"
    return text


def sweep_options(func):
    """Add every option of ``train`` except its outputs to a click command, as lists of values."""
    for option in reversed(SWEEP_OPTIONS):
        if not is_sweepable(option):
            if option.flag is not None:  # --no-download
                func = click.option(*option.flag.split(","), option.name, is_flag=True, help=option.help)(func)
            else:
                func = click.option(option.cli_name, option.name, type=click.Path(path_type=Path), default=None,
                                    help=_help(option) + " The same for every run.")(func)
        elif option.flag is not None:  # --nesterov [true,false] / --no-nesterov
            on, off = _on_off(option)
            func = click.option(off, _off_name(option), is_flag=True, help=f"Every run with {off}.")(func)
            func = click.option(on, option.name, multiple=True, is_flag=False, flag_value="true",
                                metavar="[true,false]", help=_help(option) + f" Alone: every run with {on}; "
                                "true,false: runs with and without.")(func)
        else:
            click_type = option.kind.click_type()
            metavar = "|".join(click_type.choices) if isinstance(click_type, click.Choice) else \
                option.metavar or option.kind.metavar or click_type.name.upper()
            func = click.option(option.cli_name, option.name, multiple=True, metavar=metavar,
                                help=_help(option))(func)
    return func


class SweepHelp(GroupedHelpCommand):
    """``--help`` with the sweep's own options first, then train's in their groups."""

    own_group = "The sweep"

    def group_of(self, ctx, param) -> str:
        if param is self.get_help_option(ctx):
            return "Other"
        by_name = {option.name: option for option in SWEEP_OPTIONS}
        by_name.update({_off_name(o): o for o in SWEEP_OPTIONS if o.flag is not None and "/" in o.flag})
        option = by_name.get(param.name)
        return option.group if option is not None else ("Files" if param.name == "config" else self.own_group)


# --------------------------------------------------------------------- the grid
@dataclass
class Job:
    """One run of the sweep: its settings, its command, its files and, once it ran, its result."""

    name: str
    values: dict  # the swept options' values of this run: {option name: value}
    args: list  # train's arguments, after "bptrain"
    model: Path
    history: Path
    state: str = "waiting"  # waiting, running, done
    result: Run | None = None
    process: subprocess.Popen | None = None
    epoch: int = 0
    epochs: int | None = None
    last: str = ""
    started: float | None = None
    ended: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    stderr: list = field(default_factory=list)
    open_streams: int = 0
    before: dict = field(default_factory=dict)  # the run's files as they were before it started

    @property
    def command(self) -> str:
        return "bptrain " + " ".join(shlex.quote(arg) for arg in self.args)


def parse_values(option: Option, given, ctx) -> list:
    """The values given to ``option`` (comma lists and repetitions), each checked by the option's own type."""
    param = next((p for p in ctx.command.params if p.name == option.name), None)
    texts = list(given) if option.name == "sizes" else [part.strip() for text in given for part in text.split(",")]
    if any(text == "" for text in texts):
        raise click.BadParameter(f"{', '.join(given)!r} has an empty value; write values like 0.1,1", ctx, param)
    click_type = click.BOOL if option.flag is not None else option.kind.click_type()
    values = []
    for text in texts:
        value = click_type.convert(text, param, ctx)
        if value in values:
            raise click.BadParameter(f"{text} is given twice", ctx, param)
        values.append(value)
    return values


def value_text(option: Option, value, *, in_name: bool = False) -> str:
    """A value as a command-line argument (sizes 784,30,10) or as part of a run's name (784-30-10)."""
    if option.name == "sizes":
        return ("-" if in_name else ",").join(str(n) for n in value)
    return show_value(option.name, value)


def option_args(option: Option, value) -> list[str]:
    """``train``'s arguments setting ``option`` to ``value``."""
    if option.flag is not None:
        if "/" in option.flag:
            on, off = _on_off(option)
            return [on if value else off]
        return [option.flag.split(",")[-1]] if value else []
    if isinstance(value, Path):
        return [option.cli_name, str(value)]
    return [option.cli_name, value_text(option, value)]


def run_name(values: dict) -> str:
    """lr=0.25_activation=relu: the swept settings of a run, in the options table's order."""
    options = {option.name: option for option in SWEEP_OPTIONS}
    return "_".join(f"{option_label(name)}={value_text(options[name], value, in_name=True)}"
                    for name, value in values.items())


def make_jobs(swept: dict, fixed: dict, config: Path | None, out_dir: Path) -> list[Job]:
    """The grid of ``swept`` ({option name: [values]}) with ``fixed`` ({option name: value}) in every run."""
    jobs = []
    names = list(swept)
    for combination in itertools.product(*(swept[name] for name in names)):
        values = dict(zip(names, combination))
        settings = {**fixed, **values}
        name = run_name(values)
        model, history = out_dir / f"{name}.npy", out_dir / f"{name}.history.json"
        args = ["train"] + (["--config", str(config)] if config is not None else [])
        for option in SWEEP_OPTIONS:
            if option.name in settings:
                args += option_args(option, settings[option.name])
        args += ["--out", str(model), "--history", str(history)]
        jobs.append(Job(name, values, args, model, history))
    return jobs


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


def check_runs_fit(runs: list[dict], jobs: int) -> None:
    """Refuse, before any run starts, a sweep whose ``jobs`` parallel runs would not fit in memory together.

    ``runs``: each run's settings by option name (the table's defaults, then the config, then the
    sweep's). The largest run is counted ``jobs`` times: each is a process with its own data and
    buffers. The refusal names the ``--jobs`` that would fit.
    """
    if not runs:
        return
    named = ("sizes", "batch_size", "resume", "dtype", "augment", "data")
    # the runs' data is not loaded here: MNIST's shape, with the network's input width
    estimates = [memory.training_estimate(run["sizes"], run["batch_size"], resume=run.get("resume"),
                                          dtype=run["dtype"], augment=run["augment"],
                                          data=memory.DataShape.mnist(run["sizes"][0]),
                                          **{key: value for key, value in run.items() if key not in named})
                 for run in runs]
    largest = max(estimates, key=lambda estimate: estimate.per_job)
    warning = memory.check_fits(memory.sweep_estimate(largest, jobs))
    if warning:
        click.echo(f"warning: {warning}", err=True)


def run_settings(job: Job, config_values: dict, fixed: dict) -> dict:
    """The settings ``bptrain train`` will run ``job`` with: defaults, then the config, then the sweep's."""
    defaults = {option.name: option.default_value() for option in TRAIN_OPTIONS}
    settings = {**defaults, **config_values, **fixed, **job.values}
    if isinstance(settings["sizes"], str):
        settings["sizes"] = parse_sizes(settings["sizes"])
    return settings


# --------------------------------------------------------------------- cores
#: Variables that fix how many threads a BLAS library uses, the first one set wins.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
#: The most BLAS threads a run's steps may use, below which they still adapt to the load
#: (bptrain.fast.threads.MOST_THREADS_VARIABLE; OPENBLAS_NUM_THREADS would fix the count).
RUN_THREADS_VARIABLE = "BPTRAIN_BLAS_THREADS"


def blas_threads_from(environ) -> int | None:
    for name in BLAS_THREAD_VARIABLES:
        try:
            threads = int(environ.get(name, ""))
        except ValueError:
            continue
        if threads > 0:
            return threads
    return None


def plan_cores(n_runs: int, jobs: int | None, cores: int, environ) -> tuple[int, int, dict]:
    """(parallel runs, BLAS threads per run, variables to set in each run's environment).

    The default fills the cores without oversubscribing them: cores // the BLAS threads each run
    uses. When the environment fixes those threads they are kept; otherwise each run gets
    cores // runs at a time of them (OpenBLAS would take every core in every run) as an upper bound,
    below which it still moves to fewer when that is faster. A run whose share of the cores is all
    its BLAS threads does not start bptrain's epoch thread beside them.
    """
    fixed = blas_threads_from(environ)
    if jobs is None:
        jobs = max(1, cores // fixed) if fixed else cores
    jobs = max(1, min(jobs, n_runs))
    threads = fixed or max(1, cores // jobs)
    variables = {} if fixed else {RUN_THREADS_VARIABLE: str(threads), "MKL_NUM_THREADS": str(threads)}
    if jobs > 1 and cores // jobs <= threads and not environ.get("BPTRAIN_EPOCH_THREAD"):
        variables["BPTRAIN_EPOCH_THREAD"] = "0"
    return jobs, threads, variables


# --------------------------------------------------------------------- running
EPOCH_LINE = re.compile(r"^epoch\s+(\d+)/(\d+)\s+train loss\s+(\S+)\s+val loss\s+(\S+)\s+val acc\s+([\d.]+)%")
STOP_STATUSES = {exit_status(s) for s in STOP_SIGNALS}


class Display:
    """One line per run: redrawn in place on a terminal, printed as events otherwise, nothing with -q."""

    def __init__(self, jobs: list[Job], mode: str, stream=None):
        self.jobs = jobs
        self.mode = mode  # "live", "lines" or "quiet"
        self.stream = stream or sys.stderr
        self.drawn = 0
        self.last_draw = 0.0
        self.width = max(len(job.name) for job in jobs) if jobs else 0
        self.notes_seen = set()
        self.printed = {}  # run name -> when its last line was printed (lines mode)

    def say(self, text: str) -> None:
        if self.mode == "quiet":
            return
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        self.draw(force=True)

    def event(self, job: Job, text: str, every: float = 0.0) -> None:
        """Something happened to a run; ``every``: in lines mode, at most one such line per that many seconds."""
        if self.mode == "lines":
            now = time.monotonic()
            if every and now - self.printed.get(job.name, -every) < every:
                return
            self.printed[job.name] = now
            self.stream.write(f"{job.name}: {text}\n")
            self.stream.flush()
        elif self.mode == "live":
            self.draw(force=True)

    def note(self, job: Job, text: str) -> None:
        """A note of a run's (one per distinct text: every run of a sweep says the same ones)."""
        if text not in self.notes_seen:
            self.notes_seen.add(text)
            self.say(f"{job.name}: {text}")

    def line(self, job: Job) -> str:
        if job.state == "waiting":
            status = "waiting"
        elif job.state == "running":
            elapsed = time.monotonic() - job.started
            if job.epochs:
                done = round(12 * job.epoch / job.epochs)
                status = f"{elapsed:4.0f}s [{'#' * done}{'.' * (12 - done)}] {job.epoch}/{job.epochs}  {job.last}"
            else:
                status = f"{elapsed:4.0f}s starting"
        else:
            status = done_text(job)
        return f"{job.name:<{self.width}}  {status}"

    def draw(self, force: bool = False) -> None:
        if self.mode != "live" or (not force and time.monotonic() - self.last_draw < 0.25):
            return
        self.last_draw = time.monotonic()
        size = shutil.get_terminal_size()
        shown = self.jobs
        if len(shown) > size.lines - 2:
            shown = [job for job in self.jobs if job.state == "running"]
            counts = {state: sum(job.state == state for job in self.jobs) for state in ("done", "waiting")}
            extra = [f"{counts['done']} done, {counts['waiting']} waiting"]
        else:
            extra = []
        lines = [self.line(job)[:size.columns - 1] for job in shown] + extra
        out = [f"\x1b[{self.drawn}A\r"] if self.drawn else []
        out += ["\x1b[2K" + line + "\n" for line in lines]
        if len(lines) < self.drawn:
            out.append("\x1b[J")
        self.drawn = len(lines)
        self.stream.write("".join(out))
        self.stream.flush()

    def _clear(self) -> None:
        if self.mode == "live" and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}A\r\x1b[J")
            self.drawn = 0

    def close(self) -> None:
        self.draw(force=True)
        self.drawn = 0


def done_text(job: Job) -> str:
    run = job.result
    if run is None:
        return "not started"
    seconds = f", {run.seconds:.1f} s" if run.seconds is not None else ""
    if run.status == "finished":
        before = " (finished before; skipped)" if run.skipped else ""
        return f"finished: best {100 * run.best_val_accuracy:.2f}% at epoch {run.best_epoch}{seconds}{before}" \
            if run.best_val_accuracy is not None else f"finished{before}"
    if run.status == "stopped":
        if run.best_epoch:
            return f"stopped: best so far ({100 * run.best_val_accuracy:.2f}% at epoch {run.best_epoch}) saved"
        return "stopped: " + ("saved mid-epoch" if run.model else "nothing saved")
    return f"{run.status}: {run.message}" if run.message else run.status


def _signature(path: Path):
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def _read_lines(stream, events: queue.Queue, job: Job, kind: str) -> None:
    for line in stream:
        events.put((job, kind, line.rstrip("\n")))
    events.put((job, "eof", kind))


class Sweep:
    """Runs the jobs, ``jobs`` at a time, and passes a stop signal on to the running ones."""

    def __init__(self, jobs: list[Job], parallel: int, variables: dict, display: Display, on_done):
        self.jobs = jobs
        self.parallel = parallel
        self.env = {**os.environ, **variables, "PYTHONUNBUFFERED": "1"}
        self.display = display
        self.on_done = on_done
        self.events: queue.Queue = queue.Queue()
        self.signum: int | None = None

    def run(self) -> int | None:
        """Run every waiting job; return the stop signal's number if one came, else None."""
        waiting = [job for job in self.jobs if job.state == "waiting"]
        running: list[Job] = []
        with StopSignals() as stop:
            stop.defer()  # a signal is recorded here and passed on below, never raised mid-bookkeeping
            while waiting or running:
                while waiting and len(running) < self.parallel and stop.signum is None:
                    job = waiting.pop(0)
                    self.start(job)
                    running.append(job)
                self.read_events(timeout=0.2)
                if stop.signum is not None and self.signum is None:
                    self.signum = stop.signum
                    self.display.say(f"{self.stopped_by()}: stopping the {len(running)} running run(s); "
                                     "each saves its best model so far")
                    for job in running:
                        if job.process.poll() is None:
                            job.process.send_signal(stop.signum)
                    for job in waiting:
                        job.state = "done"
                        job.result = Run(job.name, status="not started", settings=dict(job.values))
                        self.on_done(job)
                    waiting.clear()
                for job in list(running):
                    if job.process.poll() is not None and job.open_streams == 0:
                        running.remove(job)
                        self.finish(job)
                self.display.draw()
        return self.signum

    def stopped_by(self) -> str:
        return "interrupted" if self.signum == signal.SIGINT else f"terminated by {signal_name(self.signum)}"

    def start(self, job: Job) -> None:
        job.state, job.started, job.started_at = "running", time.monotonic(), time.time()
        job.before = {path: _signature(path) for path in (job.model, job.history)}
        job.process = subprocess.Popen([sys.executable, "-m", "bptrain", *job.args], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=self.env,
                                       bufsize=1, errors="replace")
        job.open_streams = 2
        for stream, kind in ((job.process.stdout, "out"), (job.process.stderr, "err")):
            threading.Thread(target=_read_lines, args=(stream, self.events, job, kind), daemon=True).start()
        self.display.event(job, "started")

    def read_events(self, timeout: float) -> None:
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self.handle(*item)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return

    def handle(self, job: Job, kind: str, line: str) -> None:
        if kind == "eof":
            job.open_streams -= 1
            return
        if kind == "err":
            job.stderr.append(line)
            if line.startswith("note:"):
                self.display.note(job, line)
            return
        match = EPOCH_LINE.match(line)
        if match:
            job.epoch, job.epochs = int(match.group(1)), int(match.group(2))
            job.last = f"val acc {match.group(5)}%  train loss {match.group(3)}"
            last = job.epoch == job.epochs
            self.display.event(job, f"epoch {job.epoch}/{job.epochs}  {job.last}", every=0 if last else 2.0)

    def finish(self, job: Job) -> None:
        """What became of a run: read from its files and exit status (train's own words for errors)."""
        job.process.wait()
        job.ended, job.ended_at = time.monotonic(), time.time()
        job.state = "done"
        code = job.process.returncode
        errors = [line.removeprefix("Error: ") for line in job.stderr if line.startswith("Error:")]
        # files this process wrote (train replaces them atomically: a new inode), not a former attempt's
        files = all(_signature(path) not in (None, job.before[path]) for path in (job.model, job.history))
        try:
            run = read_run(job.name, job.model, job.history) if files else None
        except BptrainError as exc:
            run, errors = None, errors + [str(exc)]
        if run is None:
            run = Run(job.name, settings=dict(job.values), seconds=round(job.ended - job.started, 3))
        if files and (code == 0 or code in STOP_STATUSES):
            pass  # the history says: finished (a signal may have come during its save), or stopped, best so far saved
        elif code == 1 and any("training diverged" in line for line in errors):
            message = next(line for line in errors if "training diverged" in line)
            run.status, run.message = "diverged", message.removesuffix(f"; {job.model} was not written")
        elif code in STOP_STATUSES or code < 0 or self.signum is not None:
            run.status = "stopped"
            if code < 0:
                run.message = f"killed by {signal_name(-code)}"
        else:
            run.status = "failed"
            run.message = errors[-1] if errors else (job.stderr[-1] if job.stderr else f"exit status {code}")
        job.result = run
        self.display.event(job, done_text(job))
        self.on_done(job)


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
    from ..data.model_io import atomic_write

    text = json.dumps(document, indent=2)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


# --------------------------------------------------------------------- the command
@click.command("sweep", cls=SweepHelp)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the runs' models and histories (NAME.npy, NAME.history.json, NAME saying the "
                   "setting, e.g. lr=0.25) and summary.json; created if missing.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Runs trained at once [default: the cores // the BLAS threads of each run].")
@click.option("--print-commands", is_flag=True,
              help="Print the `bptrain train` command of each run still to do, one a line, instead of running "
                   "them (for a SLURM job array, GNU parallel, a CI matrix); `bptrain compare` reads the results.")
@click.option("--force", is_flag=True, help="Train every run again, finished ones too (only bptrain's own files "
                                            "are replaced).")
@click.option("-q", "--quiet", "quiet", is_flag=True, help="No progress lines; only the table.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML file of settings for every run; flags override it.")
@sweep_options
def sweep_command(out_dir, jobs, print_commands, force, quiet, config, **given):
    """Train one run per value of the options given several values (their grid, if several are),
    everything else the same, and show them side by side.

    \b
    bptrain sweep --lr 0.025,0.25,2.5 --sizes 784,30,10 --out-dir runs/lr
    bptrain sweep --lr 0.1,1 --activation sigmoid,relu --out-dir runs/grid   (four runs)
    bptrain sweep --sizes 784,30,10 --sizes 784,100,10 --out-dir runs/sizes

    Every option of `bptrain train` is one here too, taking one value (the same in every run) or
    several, as a comma list or by giving the option again (--sizes, whose values hold commas, only
    so). Every run gets the same seed: runs that differ in the learning rate, momentum, decay, optimizer,
    batch size, loss or schedule start from identical weights (sizes, init, seed, dtype, and the
    activation with --init auto, change them). A finished run in the folder is skipped, an unfinished
    one trained again. Ctrl-C or SIGTERM stops every run, each keeping its best model so far.
    """
    ctx = click.get_current_context()
    config_values = {}
    if config is not None:
        try:
            config_values = load_config(config)
        except BptrainError as exc:
            raise click.BadParameter(str(exc), ctx, next(p for p in ctx.command.params if p.name == "config"))
    swept, fixed = {}, {}
    for option in SWEEP_OPTIONS:
        value = given.get(option.name)
        if not is_sweepable(option):
            if value:
                fixed[option.name] = value
            continue
        texts = tuple(value or ())
        if option.flag is not None:
            values = parse_values(option, texts, ctx) if texts else []
            if given.get(_off_name(option)):
                if values:
                    on, off = _on_off(option)
                    raise click.UsageError(f"{off} with {on}: give {off} alone, or {on} true,false for runs "
                                           "with and without")
                values = [False]
        else:
            values = parse_values(option, texts, ctx) if texts else []
        if len(values) > 1:
            swept[option.name] = values
        elif values:
            fixed[option.name] = values[0]
    if not swept:
        raise click.UsageError("nothing to sweep: give one of train's options several values, e.g. --lr 0.1,1 "
                               "or --sizes 784,30,10 --sizes 784,100,10")
    out_dir = Path(out_dir)
    all_jobs = make_jobs(swept, fixed, config, out_dir)
    summary = out_dir / SUMMARY_NAME
    check_outputs(all_jobs, summary, fixed, config, out_dir)

    done_before = {}
    if not force:
        for job in all_jobs:
            run = finished_run(job)
            if run is not None:
                wanted = {**config_values, **fixed, **job.values}
                found = conflicts(wanted, run)
                if found:
                    raise click.UsageError(f"{job.model} was trained with {'; '.join(found)}; "
                                           f"use another --out-dir, or --force to train it again")
                done_before[job.name] = run
    to_do = [job for job in all_jobs if job.name not in done_before]
    out_dir.mkdir(parents=True, exist_ok=True)

    if print_commands:
        for job in to_do:
            click.echo(job.command)
        if done_before:
            click.echo(f"note: {len(done_before)} run(s) already finished in {out_dir} left out "
                       f"({', '.join(done_before)}); --force prints them too", err=True)
        return

    if to_do:
        obtain_data(fixed.get("data"), bool(fixed.get("no_download")))
    from ..fast.threads import usable_cores  # only here: the command line must not need the fast engine

    parallel, threads, variables = plan_cores(max(1, len(to_do)), jobs, usable_cores(), os.environ)
    check_runs_fit([run_settings(job, config_values, fixed) for job in to_do], parallel)
    mode = "quiet" if quiet else ("live" if sys.stderr.isatty() else "lines")
    display = Display(all_jobs, mode)
    for job in all_jobs:
        if job.name in done_before:
            job.state, job.result = "done", done_before[job.name]
            job.result.skipped = True
    names = ", ".join(option_label(name) for name in swept)
    display.say(f"sweep of {names}: {len(all_jobs)} runs in {out_dir}"
                + (f", {len(done_before)} finished before (skipped)" if done_before else "")
                + (f"; {parallel} at a time, {threads} BLAS thread{'s' if threads > 1 else ''} each" if to_do else ""))
    for job in all_jobs:
        if job.name in done_before:
            display.event(job, done_text(job))
    info = {"jobs": parallel, "blas_threads_per_run": threads, "config": str(config) if config else None}
    began = time.monotonic()

    def on_done(job):
        write_summary(summary, summary_document(all_jobs, swept, info))

    runner = Sweep(all_jobs, parallel, variables, display, on_done)
    signum = runner.run() if to_do else None
    display.close()
    write_summary(summary, summary_document(all_jobs, swept, info))

    runs = [job.result for job in all_jobs]
    click.echo("")
    click.echo(format_table(runs, list(swept), label=False))
    for text in filter(None, [start_note(runs), *failure_lines(runs)]):
        click.echo(text)
    trained = sum(job.started is not None for job in all_jobs)
    click.echo(f"{trained} run{'s' if trained != 1 else ''} trained in {time.monotonic() - began:.1f} s; "
               f"summary in {summary}; curves: bptrain plot {out_dir}")
    if signum is not None:
        click.echo(f"{runner.stopped_by()}: finished runs are kept, stopped ones saved their best model so far; "
                   "the same command trains what is missing", err=True)
        ctx.exit(exit_status(signum))
    if any(run.status == "failed" for run in runs):
        ctx.exit(1)


def obtain_data(data: Path | None, no_download: bool) -> None:
    """Fetch the default data set once here if it is missing, rather than in every run at the same time;
    a missing file the user named is one error here rather than one per run."""
    from ..data.download import ensure_data
    from ..data.loader import resolve_data_path

    path = resolve_data_path(data)
    if not path.exists():
        ensure_data(path, allow_download=not no_download, progress=sys.stderr.isatty())


def check_outputs(jobs: list[Job], summary: Path, fixed: dict, config: Path | None, out_dir: Path) -> None:
    """Before any run: no output is an input or another output, and no file that is not bptrain's is in the way."""
    data = fixed.get("data")
    from ..data.loader import resolve_data_path

    inputs = {"--data": data_files(resolve_data_path(data)), "--config": [config], "--resume": [fixed.get("resume")]}
    outputs = {"--out-dir": [path for job in jobs for path in (job.model, job.history)] + [summary]}
    try:
        check_no_clash(inputs, outputs)
        for job in jobs:
            check_replaceable("--out-dir", job.model, is_model_file, "a bptrain model",
                              f"{job.model}, which run {job.name} would write,")
            check_replaceable("--out-dir", job.history, is_history_file, "a bptrain history JSON",
                              f"{job.history}, which run {job.name} would write,")
        check_replaceable("--out-dir", summary, is_summary_file, "a bptrain sweep summary",
                          f"{summary}, which the sweep would write,")
    except PathClash as exc:
        raise click.UsageError(str(exc)) from None
