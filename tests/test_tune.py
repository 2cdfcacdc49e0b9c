"""`bptrain tune`: a real Optuna study whose trials are real `bptrain train` processes on small synthetic
data: pruning that stops the trials behind, the study in SQLite resumed after a SIGKILL, two commands on
one study at once, a Dask LocalCluster as the workers, --show and its plots, and bad input in one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import optuna
import psutil
from optuna.trial import TrialState

from bptrain.app.tune.space import SpaceError, read_space
from bptrain.app.tune.study import default_storage
from conftest import assert_clean_error, ended_at_exit, invoke, make_blobs, write_py2_pickle

#: Epochs long enough (3,000 steps) that a trial pruned after its first is seen to stop well before its last.
SLOW = ("--sizes", "20,16,3", "--batch-size", "2", "--epochs", "8")
TINY = ("--sizes", "20,16,3", "--batch-size", "16", "--epochs", "3")
BAD_AND_GOOD = 'lr = {low = 1e-6, high = 1.0, log = true}\n'


@pytest.fixture
def data(tmp_path) -> Path:
    return write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs(n_train=6000))


def space(tmp_path: Path, text: str = BAD_AND_GOOD, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(folder: Path, name: str):
    return optuna.load_study(study_name=name, storage=default_storage(folder, name))


def reporting(folder: Path, name: str) -> list:
    """The running trials that reported an epoch; none while the command is still making its study."""
    if not (folder / f"{name}.db").is_file():
        return []
    try:
        return [t for t in load(folder, name).get_trials(states=(TrialState.RUNNING,)) if t.intermediate_values]
    except Exception:  # the tables or the study not made yet
        return []


def tune(cwd: Path, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bptrain", "tune", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def by_state(study) -> dict:
    trials = study.get_trials(deepcopy=False)
    return {state: [t for t in trials if t.state == state] for state in TrialState}


# ====================================================================== a study
def test_a_study_prunes_the_trials_behind_and_keeps_their_best_model(tmp_path, data):
    out = tmp_path / "study"
    result = ok(tune(tmp_path, "--study", "prune", "--space", space(tmp_path), "--trials", 8, "--jobs", 1,
                     "--out-dir", out, "--data", data, *SLOW))
    study = load(out, "prune")
    states = by_state(study)
    assert len(study.trials) == 8
    pruned = states[TrialState.PRUNED]
    assert pruned, result.stderr
    for trial in pruned:
        # reported epoch by epoch, stopped by SIGTERM soon after the pruner's word: its history says so
        assert trial.user_attrs["pruned_after_epoch"] == max(trial.intermediate_values) < 8
        history = json.loads((out / f"{trial.user_attrs['run']}.history.json").read_text())
        assert history["interrupted"] is True
        assert len(history["epochs"]) < 8
        assert (out / f"{trial.user_attrs['run']}.npy").is_file()
    complete = states[TrialState.COMPLETE]
    assert complete and all(len(t.intermediate_values) == 8 for t in complete)
    assert max(t.value for t in complete) > 0.9
    # every pruned trial was behind the finished ones at the epoch it was stopped
    assert all(t.intermediate_values[t.user_attrs["pruned_after_epoch"]] < max(t.value for t in complete)
               for t in pruned)
    assert "pruned after epoch" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert {run["state"] for run in summary["runs"]} == {"COMPLETE", "PRUNED"}
    assert "best: trial-" in result.stdout


def test_the_study_records_its_space_settings_and_seed_and_refuses_another(tmp_path, runner, data):
    out = tmp_path / "s"
    args = ("tune", "--study", "one", "--out-dir", out, "--trials", 2, "--data", data, *TINY)
    result = invoke(runner, *args, "--space", space(tmp_path, 'lr = {low = 0.01, high = 1.0, log = true}\n'),
                    "--sampler-seed", 7)
    assert result.exit_code == 0, result.output + result.stderr
    recorded = load(out, "one").user_attrs["bptrain_definition"]
    assert recorded["sampler_seed"] == 7 and json.loads(recorded["space"])["lr"]["low"] == 0.01
    assert json.loads(recorded["settings"])["epochs"] == 3
    other = space(tmp_path, 'lr = {low = 0.001, high = 1.0, log = true}\n', "other.toml")
    line = assert_clean_error(invoke(runner, *args, "--space", other, "--sampler-seed", 7), "another space")
    assert "--study one-2" in line
    assert_clean_error(invoke(runner, "tune", "--study", "one", "--out-dir", out, "--trials", 1, "--data", data,
                              "--sizes", "20,16,3", "--batch-size", "16", "--epochs", "4", "--sampler-seed", 7,
                              "--space", tmp_path / "space.toml"), "epochs")
    assert len(load(out, "one").trials) == 2


def test_the_same_seed_draws_the_same_trials(tmp_path, runner, data):
    drawn = []
    for name in ("a", "b"):
        result = invoke(runner, "tune", "--study", name, "--out-dir", tmp_path / name, "--trials", 3, "--jobs", 1,
                        "--space", space(tmp_path, 'lr = {low = 0.01, high = 1.0, log = true}\nmomentum = [0.0, 0.5]\n'),
                        "--data", data, *TINY, "--pruner", "none")
        assert result.exit_code == 0, result.output + result.stderr
        drawn.append([t.params for t in load(tmp_path / name, name).trials])
    assert drawn[0] == drawn[1]
    assert len({json.dumps(p, sort_keys=True) for p in drawn[0]}) == 3


def test_a_diverging_trial_is_failed_with_its_reason_and_the_study_goes_on(tmp_path, runner, data):
    out = tmp_path / "d"
    result = invoke(runner, "tune", "--study", "d", "--out-dir", out, "--trials", 4, "--jobs", 1, "--pruner", "none",
                    "--space", space(tmp_path, "lr = [0.1, 1000000.0]\n"), "--data", data, *TINY)
    assert result.exit_code == 0, result.output + result.stderr
    trials = load(out, "d").trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all("training diverged" in t.user_attrs["failed_because"] for t in failed)
    assert any(t.state == TrialState.COMPLETE for t in trials)


# ====================================================================== --show
def test_show_gives_the_best_command_a_config_the_table_the_importances_and_pngs(tmp_path, runner, data):
    out = tmp_path / "show"
    result = invoke(runner, "tune", "--study", "sh", "--out-dir", out, "--trials", 6, "--pruner", "none",
                    "--space", space(tmp_path, 'lr = {low = 0.001, high = 1.0, log = true}\n'
                                               'sizes = ["20,16,3", "20,4,3"]\n'),
                    "--data", data, "--sizes", "20,16,3", "--batch-size", "16", "--epochs", "2")
    assert_clean_error(result, "--sizes is given and also searched")
    result = invoke(runner, "tune", "--study", "sh", "--out-dir", out, "--trials", 6, "--pruner", "none",
                    "--space", tmp_path / "space.toml", "--data", data, "--batch-size", "16", "--epochs", "2")
    assert result.exit_code == 0, result.output + result.stderr
    for png in ("history", "importance", "slice", "parallel"):
        (out / f"sh-{png}.png").unlink()
    shown = invoke(runner, "tune", "--study", "sh", "--out-dir", out, "--show")
    assert shown.exit_code == 0, shown.output + shown.stderr
    text = shown.output
    study = load(out, "sh")
    best = study.best_trial
    assert f"validation accuracy {100 * best.value:.2f}%" in text
    assert "importance (Optuna's fANOVA): " in text and "lr " in text and "sizes " in text
    command = next(line.strip() for line in text.splitlines() if line.strip().startswith("bptrain train "))
    assert f"--sizes {best.params['sizes']}" in command and "--out best.npy" in command
    for png in ("history", "importance", "slice", "parallel"):
        assert (out / f"sh-{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the config trains the best trial again, to the same accuracy
    config = out / "sh-best.toml"
    trained = invoke(runner, "train", "--config", config, "--out", tmp_path / "again.npy", "-q")
    assert trained.exit_code == 0, trained.output + trained.stderr
    again = json.loads((tmp_path / "again.history.json").read_text())
    assert max(epoch["val_accuracy"] for epoch in again["epochs"]) == pytest.approx(best.value)
    # compare reads the study's folder as a sweep's
    compared = invoke(runner, "compare", out)
    assert compared.exit_code == 0 and "6 runs" in compared.output


def test_show_of_a_study_that_is_not_there_is_one_line_and_makes_no_database(tmp_path, runner):
    assert_clean_error(invoke(runner, "tune", "--study", "none", "--out-dir", tmp_path / "x", "--show"),
                       "no study 'none'")
    assert not (tmp_path / "x").exists()


# ====================================================================== processes
def test_a_study_killed_mid_trial_resumes_with_the_trial_marked_failed(tmp_path, data):
    out = tmp_path / "k"
    args = ("--study", "k", "--out-dir", out, "--jobs", 1, "--data", data,
            "--space", space(tmp_path, 'lr = {low = 0.01, high = 0.1, log = true}\n'),
            "--sizes", "20,16,3", "--batch-size", "1", "--epochs", "12", "--pruner", "none")
    process = subprocess.Popen([sys.executable, "-m", "bptrain", "tune", *map(str, args), "--trials", "3"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with ended_at_exit(process):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            running = reporting(out, "k")
            if running:
                break
            time.sleep(0.5)
        else:
            pytest.fail("no trial reported an epoch")
        children = psutil.Process(process.pid).children(recursive=True)
        assert children
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive  # the trial's train died with the study's process
    killed = running[0].number
    result = ok(tune(tmp_path, *args, "--trials", 1))
    trials = load(out, "k").trials
    assert trials[killed].state == TrialState.FAIL
    assert "tune process ended" in trials[killed].user_attrs["failed_because"]
    assert f"trial {killed} of study k" in result.stderr and "recorded as failed" in result.stderr
    assert [t.state for t in trials[killed + 1:]] == [TrialState.COMPLETE]


def test_two_commands_on_one_study_at_once_lose_no_trial_and_run_none_twice(tmp_path, data):
    out = tmp_path / "two"
    out.mkdir()
    args = ("--study", "two", "--out-dir", out, "--jobs", 1, "--space", space(tmp_path), "--data", data, *TINY,
            "--pruner", "none")
    processes = [subprocess.Popen([sys.executable, "-m", "bptrain", "tune", *map(str, args), "--trials", str(n)],
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n in (3, 4)]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    trials = load(out, "two").trials
    assert len(trials) == 7
    assert all(t.state == TrialState.COMPLETE for t in trials)
    owners = {}
    for trial in trials:
        owners.setdefault(trial.user_attrs["bptrain_owner"]["pid"], []).append(trial.number)
    assert sorted(len(numbers) for numbers in owners.values()) == [3, 4]
    runs = [t.user_attrs["run"] for t in trials]
    assert len(set(runs)) == 7 and all((out / f"{run}.history.json").is_file() for run in runs)
    assert len({t.params["lr"] for t in trials}) == 7  # the two never drew the same trial


# ====================================================================== a Dask cluster
def test_trials_on_a_dask_local_cluster(tmp_path, data):
    out = tmp_path / "dask"
    result = ok(tune(tmp_path, "--study", "dk", "--out-dir", out, "--scheduler", "local", "--trials", 3,
                     "--space", space(tmp_path, 'lr = {low = 0.01, high = 1.0, log = true}\n'), "--data", data, *TINY,
                     "--pruner", "none"))
    assert "on the Dask cluster" in result.stderr
    trials = load(out, "dk").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for trial in trials:
        assert len(trial.intermediate_values) >= 1  # the last epoch's line always comes back
        assert (out / f"{trial.user_attrs['run']}.npy").is_file()


# ====================================================================== bad input
@pytest.mark.parametrize("text, phrase", [
    ("nope = [1, 2]\n", "unknown setting 'nope'"),
    ("lr = {low = 1.0, high = 0.1}\n", "low 1 above high 0.1"),
    ("batch_size = {low = 1.5, high = 8}\n", "must be an integer"),
    ("lr = {low = 0.0, high = 1.0, log = true}\n", "lr must be a finite number above 0"),
    ("momentum = {low = 0.0, high = 1.0}\n", "momentum must be in [0, 1)"),
    ("lr = 0.1\n", "a range like"),
    ("lr = []\n", "empty list"),
    ("activation = {low = 1, high = 2}\n", "takes no range"),
    ("batch_size = [8]\nbatch-size = [16]\n", "are the same setting"),
    ("lr = {low = 0.1, high = 1.0, lg = true}\n", "unknown key 'lg'"),
    ("sizes = [\"20,x,3\"]\n", "sizes"),
    ("lr = [0.1, 0.1]\n", "twice"),
    ("", "nothing to search"),
    ("lr = {\n", "not valid TOML"),
])
def test_a_bad_space_is_one_line(tmp_path, runner, data, text, phrase):
    result = invoke(runner, "tune", "--study", "bad", "--out-dir", tmp_path / "b", "--trials", 1,
                    "--space", space(tmp_path, text), "--data", data, "--epochs", 1)
    assert_clean_error(result, phrase)
    assert not list((tmp_path).glob("b/*.db"))


def test_a_space_that_is_a_fifo_or_missing_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(SpaceError, match="not a regular file"):
        read_space(tmp_path / "fifo")
    with pytest.raises(SpaceError, match="cannot read"):
        read_space(tmp_path / "missing.toml")


@pytest.mark.parametrize("args, phrase", [
    (("--storage", "nosuchdb://x/y"), "cannot open the storage nosuchdb://x/y"),
    (("--storage", "sqlite:////nonexistent-folder/x/y.db"), "cannot open the storage"),
    (("--study", "a/b"), "study name 'a/b'"),
    (("--study", "a\nb"), "study name"),
])
def test_bad_storage_or_name_is_one_line(tmp_path, runner, data, args, phrase):
    base = {"--study": "s", "--out-dir": str(tmp_path / "o"), "--trials": "1", "--space": str(space(tmp_path)),
            "--data": str(data)}
    given = dict(zip(args[::2], args[1::2]))
    argv = [part for key, value in {**base, **given}.items() for part in (key, value)]
    assert_clean_error(invoke(runner, "tune", *argv, "--epochs", 1), phrase)


def test_a_new_study_refuses_a_folder_of_another_studys_trials(tmp_path, runner, data):
    out = tmp_path / "o"
    out.mkdir()
    (out / "trial-0000.npy").write_bytes(b"x")
    assert_clean_error(invoke(runner, "tune", "--study", "n", "--out-dir", out, "--trials", 1, "--space",
                              space(tmp_path), "--data", data, "--epochs", 1), "holds runs of another study")


def test_bptrain_and_its_other_commands_never_import_optuna():
    code = ("import sys; from bptrain.app.commands import cli; import bptrain.app.commands.tune; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('optuna', 'sqlalchemy')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_the_example_space_beside_the_configs_is_valid():
    searched = read_space(Path(__file__).resolve().parent.parent / "configs" / "spaces" / "mnist.toml")
    assert searched["lr"].log and searched["sizes"].choices


def test_ctrl_c_stops_the_running_trial_which_keeps_its_best_model_and_is_failed(tmp_path, data):
    out = tmp_path / "c"
    args = ("--study", "c", "--out-dir", out, "--jobs", 1, "--data", data, "--trials", 3, "--pruner", "none",
            "--space", space(tmp_path, 'lr = {low = 0.01, high = 0.1, log = true}\n'),
            "--sizes", "20,16,3", "--batch-size", "1", "--epochs", "12")
    process = subprocess.Popen([sys.executable, "-m", "bptrain", "tune", *map(str, args)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with ended_at_exit(process):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            running = reporting(out, "c")
            if running:
                break
            time.sleep(0.5)
        else:
            pytest.fail("no trial reported an epoch")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    trial = load(out, "c").trials[running[0].number]
    assert trial.state == TrialState.FAIL and "interrupted before it finished" in trial.user_attrs["failed_because"]
    history = json.loads((out / f"{trial.user_attrs['run']}.history.json").read_text())
    assert history["interrupted"] is True and (out / f"{trial.user_attrs['run']}.npy").is_file()
    assert not load(out, "c").get_trials(states=(TrialState.RUNNING,))
    assert "the same command adds the trials still missing" in stderr


def test_a_sweeps_folder_or_another_studys_is_refused(tmp_path, runner, data):
    out = tmp_path / "f"
    ok_result = invoke(runner, "sweep", "--lr", "0.1,0.2", "--out-dir", out, "--data", data, *TINY, "-q")
    assert ok_result.exit_code == 0, ok_result.output + ok_result.stderr
    assert_clean_error(invoke(runner, "tune", "--study", "f", "--out-dir", out, "--trials", 1, "--data", data,
                              "--space", space(tmp_path, "momentum = [0.0, 0.5]\n"), *TINY), "a sweep's summary")


def test_show_without_the_studys_folder_writes_nothing_and_says_so(tmp_path, runner, data):
    out = tmp_path / "m"
    result = invoke(runner, "tune", "--study", "m", "--out-dir", out, "--trials", 2, "--data", data, *TINY,
                    "--space", space(tmp_path, 'lr = {low = 0.01, high = 1.0, log = true}\n'))
    assert result.exit_code == 0, result.output + result.stderr
    moved = tmp_path / "moved"
    out.rename(moved)
    shown = invoke(runner, "tune", "--study", "m", "--storage", f"sqlite:///{moved / 'm.db'}", "--show")
    assert shown.exit_code == 0, shown.output + shown.stderr
    assert "best: trial-" in shown.output and "give --out-dir" in shown.stderr
    assert not list(tmp_path.glob("*.png")) and not list(Path.cwd().glob("m-*.png"))


@pytest.mark.parametrize("pruner", ["halving", "hyperband"])
def test_the_other_pruners_run_a_study(tmp_path, runner, data, pruner):
    out = tmp_path / pruner
    result = invoke(runner, "tune", "--study", pruner, "--out-dir", out, "--trials", 4, "--pruner", pruner,
                    "--space", space(tmp_path), "--data", data, *TINY)
    assert result.exit_code == 0, result.output + result.stderr
    study = load(out, pruner)
    assert study.user_attrs["bptrain_definition"]["pruner"] == pruner
    assert len(study.trials) == 4 and not study.get_trials(states=(TrialState.RUNNING, TrialState.FAIL))


def test_no_trial_starts_after_the_timeout(tmp_path, runner, data):
    out = tmp_path / "t"
    result = invoke(runner, "tune", "--study", "t", "--out-dir", out, "--trials", 5, "--jobs", 1, "--timeout", 1e-9,
                    "--space", space(tmp_path), "--data", data, *TINY)
    assert result.exit_code == 0, result.output + result.stderr
    assert len(load(out, "t").trials) <= 1


def test_a_trial_whose_run_finished_before_its_process_died_is_recorded_complete(tmp_path, runner, data):
    out = tmp_path / "r"
    args = ("tune", "--study", "r", "--out-dir", out, "--trials", 1, "--data", data, *TINY,
            "--space", space(tmp_path, 'lr = {low = 0.01, high = 1.0, log = true}\n'))
    assert invoke(runner, *args).exit_code == 0
    study = load(out, "r")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = study.ask()  # as a killed command leaves it: running, its run's files written
    orphan.suggest_float("lr", 0.01, 1.0, log=True)
    orphan.set_user_attr("bptrain_owner", {"host": socket.gethostname(), "pid": int(dead.stdout), "start": None})
    orphan.set_user_attr("run", "trial-0001")
    for suffix in (".npy", ".history.json"):
        (out / f"trial-0001{suffix}").write_bytes((out / f"trial-0000{suffix}").read_bytes())
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output + result.stderr
    assert "trial 1 of study r was left running" in result.stderr and "had finished" in result.stderr
    trials = load(out, "r").trials
    assert trials[1].state == TrialState.COMPLETE and trials[1].value == trials[0].value
    assert len(trials) == 3
