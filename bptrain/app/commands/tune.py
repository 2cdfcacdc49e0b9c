"""``bptrain tune``: search train's settings with Optuna, pruning runs that fall behind (:mod:`bptrain.app.tune`).

Optuna is the ``tune`` extra: the study's modules are imported when the command runs, never when
``bptrain`` starts, so the other commands work without it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from ...core.errors import BptrainError
from ...environment import BLAS_THREAD_VARIABLES, usable_cores
from ..config import load_config
from ..options import MAX_SEED, OPTIONS_BY_NAME, GroupedHelpCommand, table_option
from ..stopping import exit_status
from ..sweep.cores import check_runs_fit, plan_cores
from ..sweep.folder import obtain_data
from ..sweep.grid import SWEEP_OPTIONS
from ..sweep.runner import EPOCH_LINE, Display
from ..tune.space import read_space, refuse_searched_and_given, space_record

MISSING_OPTUNA = "bptrain tune needs Optuna: pip install 'bptrain[tune]'"
#: train's options a study passes on to every trial (its own: the runs' files, -q).
PASSED_ON = SWEEP_OPTIONS


def tune_modules():
    """The study's modules, which import Optuna (the ``tune`` extra), imported only when the command runs."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise click.ClickException(MISSING_OPTUNA) from None
    from ..tune import show, study, trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return show, study, trials


def train_options(func):
    """train's options, one value each (the same in every trial); unset ones are train's defaults."""
    for option in reversed(PASSED_ON):
        func = table_option(option.name, default=None, show_default=False)(func)
    return func


class TuneHelp(GroupedHelpCommand):
    own_group = "The study"


@click.command("tune", cls=TuneHelp)
@click.option("--study", "study_name", required=True, metavar="NAME",
              help="The study's name: the same name (and storage) again resumes it.")
@click.option("--storage", metavar="URL", default=None,
              help="Where the study is kept: any SQLAlchemy URL (postgresql://... for several machines) "
                   "[default: sqlite:///OUT_DIR/NAME.db].")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the trials' models and histories (trial-0007.npy ...), summary.json, the best "
                   "config and the plots [default: studies/NAME].")
@click.option("--space", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML file of the settings searched: lr = {low = 0.001, high = 1, log = true}, "
                   "sizes = [\"784,30,10\", \"784,100,10\"] ... (see docs/tune.md).")
@click.option("--trials", "n_trials", type=click.IntRange(min=1, max=100_000), default=None,
              help="Trials to add to the study (Optuna's n_trials).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Start no trial after this many seconds (the running ones finish).")
@click.option("--pruner", type=click.Choice(("median", "halving", "hyperband", "none")), default="median",
              show_default=True, help="Stops trials that are behind the others at the same epoch.")
@click.option("--sampler-seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the TPE sampler (each trial's draw: this seed and the trial's number).")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Trials trained at once [default: the cores // the BLAS threads of each; on a cluster, "
                   "its workers].")
@click.option("--scheduler", metavar="tcp://HOST:8786|local", default=None,
              help="Train the trials on a Dask cluster, as `sweep --scheduler` does (needs 'bptrain[cluster]').")
@click.option("--show", is_flag=True, help="Train nothing: show the study's best trials, importances and plots.")
@click.option("-q", "--quiet", "quiet", is_flag=True, help="No progress lines; only the results.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML file of settings for every trial; flags override it.")
@train_options
def tune_command(study_name, storage, out_dir, space, n_trials, timeout, pruner, sampler_seed, jobs, scheduler,
                 show, quiet, config, **given):
    """Search train's settings: sample them from a space, stop the trials that fall behind, keep the study
    in a database and resume it by running the same command again.

    \b
    bptrain tune --study lr-width --space configs/spaces/mnist.toml --trials 30 --epochs 3
    bptrain tune --study lr-width --show
    optuna-dashboard sqlite:///studies/lr-width/lr-width.db    (watch it live)

    Each trial is a `bptrain train` run in the study's folder, maximising its best validation accuracy
    (never the test set's); it reports every epoch's, and the pruner stops it (SIGTERM: it keeps its best
    model and history) when it is behind. Every train option not searched is passed to every trial.
    """
    show_mod, study_mod, trials_mod = tune_modules()
    study_mod.check_study_name(study_name)
    out_given = out_dir is not None
    out_dir = Path(out_dir) if out_given else Path("studies") / study_name
    url = storage or study_mod.default_storage(out_dir, study_name)
    if show:
        return _show(show_mod, study_mod, study_name, url, out_dir if out_given else None)
    if space is None or n_trials is None:
        raise click.UsageError("give the space to search (--space FILE) and how many trials to add (--trials N); "
                               "or --show")
    searched = read_space(space)
    config_values = load_config(config) if config is not None else {}
    fixed = {name: value for name, value in given.items() if value is not None}
    if not fixed.get("no_download"):
        fixed.pop("no_download", None)
    refuse_searched_and_given(searched, {**config_values, **fixed})
    settings = {**config_values, **{k: v for k, v in fixed.items() if k != "no_download"}}
    if out_dir.exists() and not out_dir.is_dir():
        raise BptrainError(f"--out-dir {out_dir} is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    show_mod.check_summary(out_dir, study_name)

    opened = study_mod.open_storage(url)
    epochs = settings.get("epochs") or OPTIONS_BY_NAME["epochs"].default_value()
    definition = study_mod.definition(space_record(searched), _json_settings(settings), pruner, sampler_seed, out_dir)
    study = study_mod.open_study(opened, study_name, definition)
    say = (lambda text: None) if quiet else (lambda text: click.echo(text, err=True))
    failed, completed = study_mod.fail_abandoned(study, opened, trials_mod.finished_value(out_dir))
    for numbers, what in ((failed, "recorded as failed"), (completed, "their runs had finished: recorded as such")):
        if numbers:
            say(f"trial{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))} of study {study_name} "
                f"{'were' if len(numbers) > 1 else 'was'} left running by a process that is gone; {what}")
    _refuse_foreign_runs(study, out_dir, trials_mod.RUN_PREFIX)
    obtain_data(fixed.get("data"), bool(fixed.get("no_download")))

    pruner_obj = study_mod.make_pruner(pruner, epochs)
    cluster = None
    if scheduler is not None:
        from ..sweep.cluster import Cluster, sweep_inputs  # only here: Dask is needed by --scheduler alone

        local = plan_cores(n_trials, jobs, usable_cores(), os.environ)[:2]
        cluster = Cluster.start(scheduler, sweep_inputs(config, fixed), local, EPOCH_LINE, BLAS_THREAD_VARIABLES,
                                say=say)
        parallel, threads, variables = min(jobs or len(cluster.workers), n_trials), None, {}
    else:
        parallel, threads, variables = plan_cores(n_trials, jobs, usable_cores(), os.environ)
        check_runs_fit(_largest_runs(searched, config_values, fixed), parallel)
    mode = "quiet" if quiet else ("live" if sys.stderr.isatty() else "lines")
    display = Display([], mode)
    display.width = len(trials_mod.run_name(0))
    shown = study_mod.shown_url(url)
    say(f"study {study_name} in {shown}: {n_trials} trial{'s' if n_trials != 1 else ''} to add to "
        f"{len(study.trials)}, searching {', '.join(searched)}; runs in {out_dir}; "
        + (cluster.description() if cluster is not None else
           f"{parallel} at a time, {threads} BLAS thread{'s' if threads > 1 else ''} each")
        + f"; pruner {pruner}")

    def on_told(job):  # the folder's summary.json follows the study (every command on it rewrites it whole)
        show_mod.save_summary(study, out_dir, shown)

    tuner = trials_mod.Tuner(study, opened, searched, fixed, config, out_dir, n_trials=n_trials, timeout=timeout,
                             parallel=parallel, variables=variables, display=display, sampler_seed=sampler_seed,
                             pruner=pruner_obj, on_told=on_told, launch=cluster and cluster.launch)
    began = time.monotonic()
    try:
        signum = tuner.run()
    finally:
        if cluster is not None:
            cluster.close()
    display.close()
    show_mod.save_summary(study, out_dir, shown)
    for line in show_mod.report(study, out_dir):
        click.echo(line)
    click.echo(f"{len(tuner.told)} trial{'s' if len(tuner.told) != 1 else ''} run in "
               f"{time.monotonic() - began:.1f} s; runs side by side: bptrain compare {out_dir}")
    if signum is not None:
        click.echo(f"{tuner.stopped_by()}: the same command adds the trials still missing to the study", err=True)
        click.get_current_context().exit(exit_status(signum))


def _show(show_mod, study_mod, name: str, url: str, out_dir: Path | None) -> None:
    """--show: what the study found, from its storage alone (an SQLite file that is not there is not made)."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise BptrainError(f"no study {name!r}: {url[len('sqlite:///'):]} does not exist (give --storage, or "
                           "--out-dir of the study)")
    study = study_mod.load_study(study_mod.open_storage(url), name, url)
    note = None
    if out_dir is None:
        recorded = study.user_attrs.get(study_mod.DEFINITION_KEY, {}).get("out_dir")
        out_dir = Path(recorded) if recorded and Path(recorded).is_dir() else None
        if out_dir is None:
            note = f"the study's folder {recorded} is not here: give --out-dir for its config and plots"
    elif out_dir.exists() and not out_dir.is_dir():
        raise BptrainError(f"--out-dir {out_dir} is not a folder")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
    for line in show_mod.report(study, out_dir):
        click.echo(line)
    if note:
        click.echo(f"note: {note}", err=True)


def _json_settings(settings: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value
            for key, value in settings.items()}


def _largest_runs(searched: dict, config_values: dict, fixed: dict) -> list[dict]:
    """The runs a study may start, for the memory check: each searched width, the largest batch."""
    defaults = {option.name: option.default_value() for option in OPTIONS_BY_NAME.values()}
    base = {**defaults, **config_values, **fixed}
    if "batch_size" in searched:
        param = searched["batch_size"]
        base["batch_size"] = param.high if param.kind != "choice" else max(param.choices)
    sizes = [tuple(int(n) for n in s.split(",")) for s in searched["sizes"].choices] if "sizes" in searched \
        else [base["sizes"]]
    runs = []
    for size in sizes:
        run = {**base, "sizes": size}
        if isinstance(run["sizes"], str):
            run["sizes"] = tuple(int(n) for n in run["sizes"].split(","))
        runs.append(run)
    return runs


def _refuse_foreign_runs(study, out_dir: Path, prefix: str) -> None:
    """A new study in a folder that holds another study's trials would replace them: refuse."""
    if study.trials:
        return
    found = sorted(path.name for path in out_dir.glob(prefix + "*") if path.suffix in (".npy", ".json", ".npz"))
    if found:
        raise BptrainError(f"{out_dir} holds runs of another study ({found[0]}, ...); give the new study another "
                           "--out-dir")
