"""The runs of a sweep: the grid of the values given to some of ``train``'s options, and each run's command.

A sweep's options are ``train``'s, read from the options table (:data:`bptrain.app.options.TRAIN_OPTIONS`):
each takes a comma list of values or is given several times (``--sizes``, whose values hold commas, only
the latter). A run is named by its settings (``lr=0.1_activation=relu``) and is the very ``bptrain train``
command that ``--print-commands`` prints for a scheduler.
"""

from __future__ import annotations

import itertools
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import click

from ..compare import Run, option_label, show_value
from ..options import PATH, TRAIN_OPTIONS, Option, parse_sizes


# --------------------------------------------------------------------- the options, from train's table
#: Options of ``train`` the sweep sets itself (the runs' files) or has its own of (``-q``).
OWN = frozenset({"out", "history", "quiet"})


SWEEP_OPTIONS: tuple[Option, ...] = tuple(option for option in TRAIN_OPTIONS if option.name not in OWN)


def is_sweepable(option: Option) -> bool:
    """Paths (--data, --resume) and plain flags (--no-download) take one value for every run."""
    return option.kind is not PATH and (option.flag is None or "/" in option.flag)


def on_off(option: Option) -> tuple[str, str]:
    on, off = option.flag.split("/")
    return on, off


def off_name(option: Option) -> str:
    return "no_" + option.name


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
            on, off = on_off(option)
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


def make_jobs(swept: dict, fixed: dict, config: Path | None, out_dir: Path, data_args=()) -> list[Job]:
    """The grid of ``swept`` ({option name: [values]}) with ``fixed`` ({option name: value}) in every run;
    ``data_args``: how to read the data, train's arguments for every run."""
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
        args += [*data_args, "--out", str(model), "--history", str(history)]
        jobs.append(Job(name, values, args, model, history))
    return jobs


def run_settings(job: Job, config_values: dict, fixed: dict) -> dict:
    """The settings ``bptrain train`` will run ``job`` with: defaults, then the config, then the sweep's."""
    defaults = {option.name: option.default_value() for option in TRAIN_OPTIONS}
    settings = {**defaults, **config_values, **fixed, **job.values}
    if isinstance(settings["sizes"], str):
        settings["sizes"] = parse_sizes(settings["sizes"])
    return settings
