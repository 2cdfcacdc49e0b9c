"""`bptrain sweep`: the grid, identical starting weights, parallel runs, divergence, stop signals, resume,
and --print-commands whose lines run as printed. Real `bptrain train` processes on small synthetic data."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bptrain.app.commands import sweep as sweep_command_module
from bptrain.app.sweep import runner as sweep_runner
from bptrain.core.errors import BptrainError
from bptrain.app.compare import DIGEST_KEY
from bptrain.app.run_identity import parameters_sha256
from bptrain.data.model_io import load_model
from bptrain.core.network import MLP
from bptrain.app.options import DATA_FORMAT_OPTIONS, TRAIN_OPTIONS
from bptrain.app.commands.sweep import sweep_command
from bptrain.app.sweep.cores import plan_cores
from bptrain.app.sweep.grid import Job
from bptrain.app.sweep.runner import Display
from conftest import assert_clean_error, ended_at_exit, invoke, make_blobs, write_py2_pickle

SMALL = ("--sizes", "20,16,3", "--epochs", "2", "--batch-size", "16")


@pytest.fixture
def data(tmp_path) -> Path:
    return write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())


def sweep(runner, *args):
    return invoke(runner, "sweep", *args)


def ok(result):
    assert result.exit_code == 0, result.output + result.stderr
    return result


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def statuses(folder: Path) -> dict:
    return {run["name"]: run["status"] for run in summary(folder)["runs"]}


# ====================================================================== options and grid
def test_every_train_option_but_the_outputs_is_a_sweep_option():
    """The sweep's options are read from the options table, not written out again."""
    params = {param.name for param in sweep_command.params}
    own = {"out_dir", "jobs", "scheduler", "print_commands", "force", "yes", "quiet", "config",
           *DATA_FORMAT_OPTIONS}  # how to read the data, handed to every run
    switches = {"no_" + o.name for o in TRAIN_OPTIONS if o.flag is not None and "/" in o.flag}
    expected = {o.name for o in TRAIN_OPTIONS if o.name not in ("out", "history", "quiet")}
    assert params == expected | own | switches
    for option in TRAIN_OPTIONS:
        if option.name in expected:
            param = next(p for p in sweep_command.params if p.name == option.name)
            spelling = option.cli_name if option.flag is None else option.flag.split("/")[0].split(",")[-1]
            assert spelling in param.opts


def test_the_grid_of_two_swept_options_is_four_runs(runner, tmp_path, data):
    out = tmp_path / "grid"
    result = ok(sweep(runner, "--lr", "0.1,1", "--activation", "sigmoid,relu", "--data", data, *SMALL,
                      "--out-dir", out, "--print-commands"))
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    names = [shlex.split(line)[shlex.split(line).index("--out") + 1] for line in lines]
    assert [Path(n).name for n in names] == ["activation=sigmoid_lr=0.1.npy", "activation=sigmoid_lr=1.npy",
                                             "activation=relu_lr=0.1.npy", "activation=relu_lr=1.npy"]
    for line in lines:
        words = shlex.split(line)
        assert words[:2] == ["bptrain", "train"]
        assert words[words.index("--sizes") + 1] == "20,16,3" and "--history" in words
    assert out.is_dir() and list(out.iterdir()) == []  # nothing but the folder


def test_values_as_comma_lists_or_repeated_and_sizes_only_repeated(runner, tmp_path):
    result = ok(sweep(runner, "--lr", "0.1", "--lr", "1,2.5", "--sizes", "784,30,10", "--sizes", "784,100,10",
                      "--out-dir", tmp_path, "--print-commands"))
    names = [Path(shlex.split(line)[-3]).name for line in result.stdout.splitlines()]
    assert names == [f"sizes={s}_lr={lr}.npy" for s in ("784-30-10", "784-100-10") for lr in ("0.1", "1", "2.5")]


def test_an_on_off_switch_is_swept_as_true_false(runner, tmp_path):
    result = ok(sweep(runner, "--nesterov", "true,false", "--momentum", "0.9", "--out-dir", tmp_path,
                      "--print-commands"))
    lines = result.stdout.splitlines()
    assert "--nesterov " in lines[0] and "nesterov=true" in lines[0]
    assert "--no-nesterov " in lines[1] and "nesterov=false" in lines[1]


@pytest.mark.parametrize("args, phrase", [
    (("--lr", "0.1"), "nothing to sweep"),
    (("--lr", "0.1,,1"), "has an empty value"),
    (("--lr", "0.1,0.10"), "0.10 is given twice"),
    (("--lr", "0.1,-1"), "--lr"),
    (("--activation", "sigmoid,softplus"), "--activation"),
    (("--sizes", "784,10", "--sizes", "784,,10"), "empty entry"),
    (("--nesterov", "true,false", "--no-nesterov"), "--no-nesterov alone"),
])
def test_bad_values_are_one_line_usage_errors(runner, tmp_path, args, phrase):
    assert_clean_error(sweep(runner, *args, "--out-dir", tmp_path / "x"), phrase, exit_code=2)
    assert not (tmp_path / "x").exists()


def test_a_config_goes_to_every_run_and_flags_win(runner, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('sizes = [20, 16, 3]\nepochs = 2\nlr = 5.0\n')
    result = ok(sweep(runner, "--config", config, "--lr", "0.1,1", "--out-dir", tmp_path / "o", "--print-commands"))
    for line in result.stdout.splitlines():
        words = shlex.split(line)
        assert words[2:4] == ["--config", str(config)] and words[words.index("--lr") + 1] in ("0.1", "1")
    config.write_text("epochs = -1\n")
    assert_clean_error(sweep(runner, "--config", config, "--lr", "0.1,1", "--out-dir", tmp_path / "o"), "epochs",
                       exit_code=2)


# ====================================================================== cores
def test_the_default_jobs_fill_the_cores_counting_blas_threads():
    assert plan_cores(3, None, 2, {"OPENBLAS_NUM_THREADS": "2"}) == (1, 2, {})
    assert plan_cores(3, None, 4, {"OMP_NUM_THREADS": "2"})[:2] == (2, 2)
    jobs, threads, variables = plan_cores(3, None, 2, {})
    assert (jobs, threads) == (2, 1)
    assert variables["BPTRAIN_BLAS_THREADS"] == "1" and variables["BPTRAIN_EPOCH_THREAD"] == "0"
    assert "OPENBLAS_NUM_THREADS" not in variables and "OMP_NUM_THREADS" not in variables  # the run may still adapt
    assert plan_cores(1, None, 2, {})[:2] == (1, 2)  # one run alone gets every core
    assert plan_cores(5, 3, 8, {})[:2] == (3, 2)
    assert plan_cores(2, 2, 8, {})[2]["BPTRAIN_EPOCH_THREAD"] == "0"  # 4 BLAS threads each fill the cores
    assert plan_cores(2, 2, 8, {"OPENBLAS_NUM_THREADS": "2"})[2] == {}  # two cores each: one for the epoch thread


def test_memory_check_runs_before_any_run_starts(runner, tmp_path, data, monkeypatch):
    seen = []

    def refuse(commands, jobs):
        seen.append((len(commands), jobs))
        raise BptrainError("these runs do not fit in memory together")

    monkeypatch.setattr(sweep_command_module, "check_runs_fit", refuse)
    assert_clean_error(sweep(runner, "--lr", "0.1,1", "--data", data, *SMALL, "--out-dir", tmp_path / "o",
                             "--jobs", "2"), "do not fit", exit_code=1)
    assert seen == [(2, 2)] and list((tmp_path / "o").iterdir()) == []


# ====================================================================== running
def test_runs_in_parallel_from_identical_weights_where_the_setting_allows(runner, tmp_path, data):
    """Learning rate, loss, optimizer and batch size leave the starting weights alone: the 16 runs share
    one SHA-256 of their initial parameters, that of the library's own MLP with those settings."""
    out = tmp_path / "runs"
    result = ok(sweep(runner, "--lr", "0.1,0.5", "--loss", "ce,mse", "--optimizer", "sgd,adam", "--batch-size", "8,16",
                      "--sizes", "20,16,3", "--epochs", "1", "--data", data, "--out-dir", out, "--jobs", "2"))
    runs = summary(out)["runs"]
    assert len(runs) == 16 and all(run["status"] == "finished" for run in runs)
    for run in runs:
        _, meta = load_model(out / run["model"])
        history = json.loads((out / run["history"]).read_text())
        assert meta[DIGEST_KEY] == history[DIGEST_KEY] == run[DIGEST_KEY]
    (digest,) = {run[DIGEST_KEY] for run in runs}
    for loss in ("ce", "mse"):
        fresh = MLP((20, 16, 3), loss, init="xavier", seed=0)
        assert parameters_sha256(fresh.weights, fresh.biases) == digest
    a, b = MLP((20, 16, 3), "ce", seed=0), MLP((20, 16, 3), "mse", seed=0)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.weights + a.biases, b.weights + b.biases))
    # two at a time: the second run started before the first ended
    assert runs[1]["started_at"] < runs[0]["ended_at"] and summary(out)["jobs"] == 2
    assert "all 16 runs started from identical weights" in result.stdout and "16 runs trained" in result.stdout


def test_sizes_seed_init_and_activation_with_auto_init_change_the_starting_weights(runner, tmp_path, data):
    out = tmp_path / "sizes"
    result = ok(sweep(runner, "--sizes", "20,16,3", "--sizes", "20,8,3", "--seed", "0,1", "--epochs", "1",
                      "--data", data, "--out-dir", out, "-q"))
    assert len({run[DIGEST_KEY] for run in summary(out)["runs"]}) == 4
    assert "4 different starting points" in result.stdout and " D " in result.stdout
    assert result.stderr == ""  # -q: no progress lines, no notes
    out = tmp_path / "units"
    ok(sweep(runner, "--activation", "sigmoid,tanh,relu", "--init", "auto,normal", "--sizes", "20,16,3",
             "--epochs", "1", "--data", data, "--out-dir", out, "-q"))
    digests = {run["name"]: run[DIGEST_KEY] for run in summary(out)["runs"]}
    # auto: xavier for sigmoid and tanh, he for relu; an explicit init is the same whatever the units
    assert digests["activation=sigmoid_init=auto"] == digests["activation=tanh_init=auto"]
    assert digests["activation=relu_init=auto"] != digests["activation=sigmoid_init=auto"]
    assert len({digests[f"activation={a}_init=normal"] for a in ("sigmoid", "tanh", "relu")}) == 1


def test_a_diverging_run_is_reported_and_the_others_finish(runner, tmp_path, data):
    out = tmp_path / "runs"
    result = ok(sweep(runner, "--lr", "0.1,1e6", "--data", data, *SMALL, "--out-dir", out))
    assert statuses(out) == {"lr=0.1": "finished", "lr=1e+06": "diverged"}
    diverged = summary(out)["runs"][1]
    assert "training diverged in epoch 1" in diverged["message"]
    assert not (out / "lr=1e+06.npy").exists() and load_model(out / "lr=0.1.npy")
    assert "diverged in epoch 1" in result.stdout
    assert "lr=1e+06: diverged" in result.stderr  # its progress line says so too


def test_a_failing_run_is_reported_with_trains_words_and_exit_1(runner, tmp_path, data):
    out = tmp_path / "runs"
    result = sweep(runner, "--lr", "0.1,1", "--sizes", "784,10", "--data", data, "--epochs", "1", "--out-dir", out)
    assert result.exit_code == 1
    assert set(statuses(out).values()) == {"failed"}
    assert "has input width 784 but the images" in summary(out)["runs"][0]["message"]


def test_resume_skips_finished_runs_and_trains_unfinished_ones(runner, tmp_path, data):
    out = tmp_path / "runs"
    args = ("--lr", "0.1,0.5", "--data", data, "--sizes", "20,16,3", "--batch-size", "16", "--out-dir", out)
    ok(sweep(runner, *args, "--epochs", "2"))
    kept = out / "lr=0.1.npy"
    kept_before = kept.stat()
    unfinished = out / "lr=0.5.history.json"
    document = json.loads(unfinished.read_text())
    document["interrupted"] = True
    unfinished.write_text(json.dumps(document))

    result = ok(sweep(runner, *args, "--epochs", "2"))
    assert "finished before" in result.stdout and "1 run trained" in result.stdout
    assert "lr=0.1: finished" in result.stderr and "skipped" in result.stderr
    assert kept.stat().st_ino == kept_before.st_ino and kept.stat().st_mtime_ns == kept_before.st_mtime_ns
    assert json.loads(unfinished.read_text())["interrupted"] is False
    assert [run["skipped"] for run in summary(out)["runs"]] == [True, False]

    # the same folder asked for other settings: refused before any work, naming the difference
    line = assert_clean_error(sweep(runner, *args, "--epochs", "3"), exit_code=2)
    assert "lr=0.1.npy was trained with epochs 2 (this sweep: 3)" in line and "--force" in line

    # --force trains all again; a file that is not bptrain's stops it before any run
    ok(sweep(runner, *args, "--epochs", "2", "--force"))
    assert kept.stat().st_ino != kept_before.st_ino
    (out / "lr=0.5.npy").write_text("my notes")
    before = kept.stat().st_ino
    refused = sweep(runner, *args, "--epochs", "2", "--force")
    assert_clean_error(refused, "lr=0.5.npy, which run lr=0.5 would write, already exists and is not a bptrain model",
                       exit_code=2)
    assert kept.stat().st_ino == before and (out / "lr=0.5.npy").read_text() == "my notes"


def test_outputs_never_replace_inputs(runner, tmp_path, data):
    config = tmp_path / "summary.json"
    config.write_text("epochs = 1\n")
    assert_clean_error(sweep(runner, "--lr", "0.1,1", "--config", config, "--data", data, "--out-dir", tmp_path),
                       "is the same file as --config", exit_code=2)
    assert config.read_text() == "epochs = 1\n"


def test_a_run_name_too_long_for_the_file_system_is_refused_before_any_run(runner, tmp_path, data):
    """Run names come from the values: one of 250 characters fails up front, not after the others trained."""
    config = tmp_path / "long.toml"
    config.write_text("epochs = 1\n")
    long_sizes = "20," + "1," * 120 + "3"
    result = sweep(runner, "--sizes", "20,8,3", "--sizes", long_sizes, "--data", data, "--out-dir", tmp_path / "runs")
    line = assert_clean_error(result, exit_code=2)
    assert "bytes long" in line and "this file system allows" in line
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_print_commands_run_as_printed_and_compare_reads_their_results(runner, tmp_path, data):
    """What a scheduler would do: run each printed line as it is, then compare the folder."""
    script = Path(sys.executable).with_name("bptrain")
    if not script.exists():
        pytest.skip("the bptrain console script is not installed next to this Python")
    out = tmp_path / "gathered"
    printed = ok(sweep(runner, "--lr", "0.1,0.5", "--data", data, *SMALL, "--out-dir", out, "--print-commands"))
    env = {**os.environ, "PATH": f"{script.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line in printed.stdout.splitlines():
        done = subprocess.run(line, shell=True, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    compared = json.loads(ok(invoke(runner, "compare", out, "--json")).stdout)
    assert [run["label"] for run in compared["runs"]] == ["lr=0.1", "lr=0.5"]
    assert compared["differ"] == ["lr"] and compared["identical_start"] is True
    again = ok(sweep(runner, "--lr", "0.1,0.5", "--data", data, *SMALL, "--out-dir", out, "--print-commands"))
    assert again.stdout == "" and "2 run(s) already finished" in again.stderr


# ====================================================================== stop signals
def start_sweep(tmp_path, data, *args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bptrain", "sweep", "--data", str(data), "--sizes", "20,16,3",
                             "--batch-size", "8", "--out-dir", str(tmp_path / "runs"), *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(90, proc.kill)  # never hang the suite
    watchdog.start()
    return proc, watchdog


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_keeps_finished_runs_and_the_best_so_far_of_the_others(tmp_path, data, signum, status):
    """Sent to the sweep alone (as `kill` or a scheduler does), it reaches every run."""
    proc, watchdog = start_sweep(tmp_path, data, "--epochs", "2,100000", "--jobs", "2")
    with ended_at_exit(proc, watchdog):
        seen, finished, long_running = [], False, False
        for line in proc.stderr:
            seen.append(line)
            finished = finished or line.startswith("epochs=2: finished")
            long_running = long_running or line.startswith("epochs=100000: epoch")
            if finished and long_running:
                break
        assert finished and long_running, "".join(seen)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    out = tmp_path / "runs"
    assert statuses(out) == {"epochs=2": "finished", "epochs=100000": "stopped"}
    assert json.loads((out / "epochs=2.history.json").read_text())["interrupted"] is False
    assert json.loads((out / "epochs=100000.history.json").read_text())["interrupted"] is True
    _, meta = load_model(out / "epochs=100000.npy")
    assert meta["best_epoch"] >= 1
    assert "stopped (best so far saved)" in stdout
    assert "the same command trains what is missing" in stderr
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # running the same sweep again would train only the stopped run
    again = subprocess.run([sys.executable, "-m", "bptrain", "sweep", "--data", str(data), "--sizes", "20,16,3",
                            "--batch-size", "8", "--out-dir", str(out), "--epochs", "2,100000", "--print-commands"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    printed = [shlex.split(line) for line in again.stdout.splitlines()]
    assert [Path(words[words.index("--out") + 1]).name for words in printed] == ["epochs=100000.npy"]
    assert Path(printed[0][printed[0].index("--resume") + 1]).name == "epochs=100000.checkpoint.npz"  # exactly on


# ====================================================================== the progress lines
def test_live_display_redraws_one_line_per_run():
    stream = io.StringIO()
    jobs = [Job(f"lr={lr}", {"lr": lr}, [], Path("m.npy"), Path("h.json")) for lr in (0.1, 1)]
    display = Display(jobs, "live", stream)
    display.draw(force=True)
    jobs[0].state, jobs[0].started, jobs[0].epoch, jobs[0].epochs = "running", 0.0, 3, 10
    display.draw(force=True)
    text = stream.getvalue()
    assert text.count("lr=0.1") == 2 and "3/10" in text and "\x1b[2A" in text  # redrawn in place
    assert re.search(r"lr=1 +waiting", text)


def test_epoch_line_pattern_matches_trains_output(runner, tmp_path, data):
    result = ok(invoke(runner, "train", "--data", data, *SMALL, "--out", tmp_path / "m.npy"))
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert lines and all(sweep_runner.EPOCH_LINE.match(line) for line in lines)
    match = sweep_runner.EPOCH_LINE.match(lines[-1])
    assert match.group(1, 2) == ("2", "2")


def test_parallel_runs_that_would_not_fit_together_are_refused_before_any_run(runner, synthetic_data, tmp_path,
                                                                            monkeypatch):
    """The sweep counts its parallel runs together: here one fits, two do not; nothing is started."""
    from bptrain.app import memory
    from bptrain.app.commands import cli

    one = memory.training_estimate((20, 16, 3), 32, data=memory.DataShape.mnist(20)).total
    monkeypatch.setattr(memory, "available_bytes", lambda root="/": int(1.5 * one))
    started = []
    monkeypatch.setattr(sweep_runner.subprocess, "Popen", lambda *a, **k: started.append(a) or 1 / 0)
    result = runner.invoke(cli, ["sweep", "--data", str(synthetic_data), "--sizes", "20,16,3", "--lr", "0.1,0.2",
                                 "--jobs", "2", "--out-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output
    assert "2 parallel runs of 20-16-3 at batch 32 need about" in result.output
    assert "--jobs" in result.output or "fewer parallel jobs" in result.output
    assert started == [] and not list((tmp_path / "runs").glob("*.npy"))


def test_a_stopped_run_continues_from_its_checkpoint_when_the_sweep_runs_again(runner, tmp_path, data):
    """The unfinished run goes on after its last finished epoch and ends as a run that never stopped."""
    import shlex

    from bptrain.app.commands import train as train_module
    from bptrain.core.training import Callbacks

    class StopInEpoch3(Callbacks):
        def progress(self, epoch, batches_done, running_loss):
            if epoch == 3:
                raise KeyboardInterrupt

    args = ["--lr", "0.1,0.5", "--data", data, "--sizes", "20,16,3", "--batch-size", "16", "--epochs", "5"]
    whole = tmp_path / "whole"
    ok(sweep(runner, *args, "--out-dir", whole))
    out = tmp_path / "stopped"
    commands = ok(sweep(runner, *args, "--out-dir", out, "--print-commands")).stdout.splitlines()
    real = train_module.train
    train_module.train = lambda *a, callbacks=(), **k: real(*a, callbacks=[*callbacks, StopInEpoch3()], **k)
    try:
        stopped = invoke(runner, *shlex.split(commands[0])[1:])
    finally:
        train_module.train = real
    assert stopped.exit_code == 130, stopped.output
    name = Path(shlex.split(commands[0])[shlex.split(commands[0]).index("--out") + 1]).name[:-4]
    assert (out / f"{name}.checkpoint.npz").is_file()
    again = ok(sweep(runner, *args, "--out-dir", out))
    assert "continues from its checkpoint, after epoch 2" in again.stderr + again.stdout
    for model in sorted(whole.glob("*.npy")):
        assert (out / model.name).read_bytes() == model.read_bytes()
    assert not list(out.glob("*.checkpoint.npz"))
