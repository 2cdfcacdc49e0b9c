"""``bptrain sweep``: one training run per setting, everything else the same (:mod:`bptrain.app.sweep`).

Every run gets the same seed, so runs whose settings leave the shapes and the initialisation alone start
from identical weights; each run records the SHA-256 of its starting parameters
(:func:`bptrain.app.run_identity.parameters_sha256`), and the table says which runs share them.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from ...core.errors import BptrainError
from ...environment import BLAS_THREAD_VARIABLES, usable_cores
from ..compare import SUMMARY_NAME, failure_lines, format_table, option_label, show_value, start_note
from ..config import load_config
from ..options import GroupedHelpCommand, Option
from ..stopping import exit_status
from .common import data_format_args, data_format_options
from ..sweep.cores import check_runs_fit, plan_cores
from ..sweep.folder import (check_outputs, conflicts, continue_from_checkpoint, finished_run, obtain_data,
                            summary_document, write_summary)
from ..sweep.grid import SWEEP_OPTIONS, is_sweepable, make_jobs, off_name, on_off, parse_values, run_settings
from ..sweep.lock import folder_lock
from ..sweep.runner import EPOCH_LINE, Display, Sweep, done_text
from ..sweep.scale import CONFIRM_ABOVE, size_line, sweep_seconds


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
            on, off = on_off(option)
            func = click.option(off, off_name(option), is_flag=True, help=f"Every run with {off}.")(func)
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
        by_name.update({off_name(o): o for o in SWEEP_OPTIONS if o.flag is not None and "/" in o.flag})
        option = by_name.get(param.name)
        return option.group if option is not None else ("Files" if param.name == "config" else self.own_group)


# --------------------------------------------------------------------- the command
@click.command("sweep", cls=SweepHelp)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the runs' models and histories (NAME.npy, NAME.history.json, NAME saying the "
                   "setting, e.g. lr=0.25) and summary.json; created if missing.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Runs trained at once [default: the cores // the BLAS threads of each run].")
@click.option("--scheduler", metavar="tcp://HOST:8786|local", default=None,
              help="Train the runs on a Dask cluster: the address of its scheduler, or `local` for one of "
                   "this machine's own; the files come back here (needs: pip install 'bptrain[cluster]'; "
                   "see docs/scaling.md).")
@click.option("--print-commands", is_flag=True,
              help="Print the `bptrain train` command of each run still to do, one a line, instead of running "
                   "them (for a SLURM job array, GNU parallel, a CI matrix); `bptrain compare` reads the results.")
@click.option("--force", is_flag=True, help="Train every run again, finished ones too (only bptrain's own files "
                                            "are replaced).")
@click.option("--yes", "yes", is_flag=True, help=f"Start a sweep of more than {CONFIRM_ABOVE} runs without asking "
                                                "(it is said, with a rough time, and asked about otherwise).")
@click.option("-q", "--quiet", "quiet", is_flag=True, help="No progress lines; only the table.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML file of settings for every run; flags override it.")
@sweep_options
@data_format_options
def sweep_command(out_dir, jobs, scheduler, print_commands, force, yes, quiet, config, **given):
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
    one trained again (from its checkpoint, exactly, where it left one). Ctrl-C or SIGTERM stops every run,
    each keeping its best model so far and its checkpoint.
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
            if given.get(off_name(option)):
                if values:
                    on, off = on_off(option)
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
    all_jobs = make_jobs(swept, fixed, config, out_dir, data_format_args())
    summary = out_dir / SUMMARY_NAME
    check_outputs(all_jobs, summary, fixed, config, out_dir)
    locked = out_dir.is_dir()
    if locked:  # one sweep owns a folder: what it holds is read, and written, by one process at a time
        ctx.with_resource(folder_lock(out_dir))

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
    if not print_commands and len(to_do) > CONFIRM_ABOVE and not yes:
        _confirm_size(ctx, to_do, config_values, fixed)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not locked:
        ctx.with_resource(folder_lock(out_dir))
    continued = {job.name: epoch for job in to_do if (epoch := continue_from_checkpoint(job)) is not None}

    if print_commands:
        for job in to_do:
            click.echo(job.command)
        if done_before:
            click.echo(f"note: {len(done_before)} run(s) already finished in {out_dir} left out "
                       f"({', '.join(done_before)}); --force prints them too", err=True)
        return

    if to_do:
        obtain_data(fixed.get("data"), bool(fixed.get("no_download")))

    mode = "quiet" if quiet else ("live" if sys.stderr.isatty() else "lines")
    cluster = None
    if scheduler is not None and to_do:
        from ..sweep.cluster import Cluster, sweep_inputs  # only here: Dask is needed by --scheduler alone

        local = plan_cores(len(to_do), jobs, usable_cores(), os.environ)[:2]  # for --scheduler local
        cluster = Cluster.start(scheduler, sweep_inputs(config, fixed), local, EPOCH_LINE, BLAS_THREAD_VARIABLES,
                                say=lambda text: mode != "quiet" and click.echo(text, err=True))
        parallel, threads, variables = min(jobs or len(to_do), len(to_do)), None, {}
    else:
        parallel, threads, variables = plan_cores(max(1, len(to_do)), jobs, usable_cores(), os.environ)
        check_runs_fit([run_settings(job, config_values, fixed) for job in to_do], parallel)
    display = Display(all_jobs, mode)
    for job in all_jobs:
        if job.name in done_before:
            job.state, job.result = "done", done_before[job.name]
            job.result.skipped = True
    names = ", ".join(option_label(name) for name in swept)
    display.say(f"sweep of {names}: {len(all_jobs)} runs in {out_dir}"
                + (f", {len(done_before)} finished before (skipped)" if done_before else "")
                + (f"; {parallel} at a time, {threads} BLAS thread{'s' if threads > 1 else ''} each"
                   if to_do and cluster is None else "")
                + (f", {cluster.description()}" if cluster is not None else ""))
    for job in all_jobs:
        if job.name in done_before:
            display.event(job, done_text(job))
        elif job.name in continued:
            display.event(job, f"continues from its checkpoint, after epoch {continued[job.name]}")
    info = {"jobs": parallel, "blas_threads_per_run": threads, "config": str(config) if config else None,
            **(cluster.info(parallel) if cluster is not None else {})}
    began = time.monotonic()

    def on_done(job):
        if job.result is not None and job.result.status == "not started":
            return  # a stop marks every waiting run so: the summary after the runs says them all, once
        write_summary(summary, summary_document(all_jobs, swept, info))

    runner = Sweep(all_jobs, parallel, variables, display, on_done, cluster and cluster.launch)
    try:
        signum = runner.run() if to_do else None
    finally:
        if cluster is not None:
            cluster.close()
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


def _confirm_size(ctx, to_do, config_values: dict, fixed: dict) -> None:
    """A grid of more than CONFIRM_ABOVE runs is said, with a rough time, and goes on only when confirmed:
    at a terminal by answering y, elsewhere by --yes."""
    cores = usable_cores()
    text = size_line(len(to_do), sweep_seconds([run_settings(job, config_values, fixed) for job in to_do], cores),
                     cores)
    if sys.stdin.isatty() and sys.stderr.isatty():
        if not click.confirm(f"this sweep is {text}; start it?", default=False, err=True):
            ctx.exit(1)
        return
    raise click.UsageError(f"this sweep is {text}; give --yes to start it, or sweep fewer values")
