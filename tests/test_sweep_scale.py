"""Sweeps at scale and side by side: a big grid is said (size and time) and confirmed before it starts,
Ctrl-C ends it without a summary written per run, one sweep owns a folder at a time, and every file a
run would write is checked before anything trains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from bptrain.app.commands import sweep as sweep_command_module
from bptrain.app.sweep import runner as sweep_runner
from conftest import assert_clean_error, invoke, make_blobs, write_py2_pickle

TINY = ("--sizes", "20,8,3", "--epochs", "1", "--batch-size", "32")
SEEDS = ",".join(map(str, range(10_000)))


@pytest.fixture
def data(tmp_path):
    return write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())


def test_a_big_grid_is_refused_up_front_with_its_size_and_time(runner, tmp_path, data):
    out = tmp_path / "big"
    line = assert_clean_error(invoke(runner, "sweep", "--data", data, *TINY, "--seed", SEEDS, "--out-dir", out),
                              exit_code=2)
    assert "10000 runs" in line and "--yes" in line and "about" in line, line
    assert not out.exists() or not list(out.glob("*.npy"))


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_ctrl_c_on_a_big_sweep_writes_the_not_started_runs_once(runner, tmp_path, data, monkeypatch):
    writes = []
    real_write = sweep_command_module.write_summary
    monkeypatch.setattr(sweep_command_module, "write_summary",
                        lambda path, document: (writes.append(len(document["runs"])), real_write(path, document)))
    real_start = sweep_runner.Sweep.start_process

    def start_then_stop(self, job, events):
        process = real_start(self, job, events)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the first run starts
        return process

    monkeypatch.setattr(sweep_runner.Sweep, "start_process", start_then_stop)
    out = tmp_path / "big"
    result = invoke(runner, "sweep", "--data", data, *TINY, "--seed", SEEDS, "--out-dir", out, "--yes", "--jobs", "1",
                    "-q")
    assert result.exit_code == 130, result.output + result.stderr
    assert len(writes) <= 3, f"the summary was written {len(writes)} times"
    document = json.loads((out / "summary.json").read_text())  # written once more, naming every run
    assert len(document["runs"]) == 10_000
    assert sum(run["status"] == "not started" for run in document["runs"]) >= 9_999


def _first_sweep(tmp_path, data, out):
    """A real sweep process whose runs take a while: returns it once its first run has started."""
    process = subprocess.Popen([sys.executable, "-m", "bptrain", "sweep", "--data", str(data), "--sizes", "20,8,3",
                                "--epochs", "2000", "--batch-size", "4", "--lr", "0.1,0.2", "--jobs", "1",
                                "--out-dir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in process.stderr:
        if "started" in line:
            return process
    raise AssertionError(process.communicate())


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_one_sweep_owns_a_folder_and_a_dead_one_holds_nothing(runner, tmp_path, data):
    out = tmp_path / "shared"
    first = _first_sweep(tmp_path, data, out)
    try:
        line = assert_clean_error(invoke(runner, "sweep", "--data", data, *TINY, "--lr", "0.1,0.2", "--out-dir", out))
        assert f"PID {first.pid}" in line and str(out) in line, line
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130
    third = _first_sweep(tmp_path, data, out)
    third.kill()  # killed outright: its lock goes with it
    third.communicate(timeout=60)
    again = invoke(runner, "sweep", "--data", data, *TINY, "--lr", "0.1,0.2", "--out-dir", out, "--force")
    assert again.exit_code == 0, again.output + again.stderr


@pytest.mark.parametrize("name, make", [
    ("lr=0.2.checkpoint.npz", lambda path: path.write_text("my notes")),
    ("lr=0.2.npy", lambda path: path.mkdir()),
    ("lr=0.2.history.json", lambda path: path.mkdir()),
])
def test_every_file_of_every_run_is_checked_before_anything_trains(runner, tmp_path, data, name, make):
    out = tmp_path / "mine"
    out.mkdir()
    make(out / name)
    result = invoke(runner, "sweep", "--data", data, *TINY, "--lr", "0.1,0.2", "--out-dir", out)
    line = assert_clean_error(result)
    assert name in line, line
    assert not (out / "lr=0.1.npy").exists()  # nothing trained


def test_a_users_file_under_the_locks_name_is_left_alone(runner, tmp_path, data):
    out = tmp_path / "mine"
    out.mkdir()
    (out / ".bptrain-sweep.lock").write_text("my notes")
    line = assert_clean_error(invoke(runner, "sweep", "--data", data, *TINY, "--lr", "0.1,0.2", "--out-dir", out))
    assert "not a bptrain sweep's lock file" in line, line
    assert (out / ".bptrain-sweep.lock").read_text() == "my notes"
