"""Stopping `bptrain train` from outside, in real subprocesses: Ctrl-C, SIGTERM and SIGHUP after an epoch, in the
first one, and while a finished run is being saved; every one saves and exits with 128 + the signal's number."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from bptrain.data.model_io import load_model, save_model
from bptrain.core.network import MLP

from conftest import ended_at_exit, make_blobs, write_py2_pickle


SIZES = "20,16,3"


# ====================================================================== Ctrl-C
def start_training(tmp_path, data, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bptrain", "train", "--data", str(data), "--out", "m.npy",
                             "--sizes", SIZES, *extra], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(60, proc.kill)  # never hang the suite
    watchdog.start()
    return proc, watchdog


def wait_for_line(proc, prefix: str) -> list[str]:
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            return seen
    raise AssertionError(f"no line starting with {prefix!r}; stdout: {''.join(seen)}; stderr: {proc.stderr.read()}")


def interrupt(proc, watchdog, signum=signal.SIGINT):
    with ended_at_exit(proc, watchdog):
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=30)
    return stdout, stderr


def test_ctrl_c_after_an_epoch_saves_and_exits_130(tmp_path):
    data = write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())
    proc, watchdog = start_training(tmp_path, data, "--epochs", "100000", "--batch-size", "8")
    wait_for_line(proc, "epoch ")
    _, stderr = interrupt(proc, watchdog)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr and "saved" in stderr and "m.npy" in stderr
    model, meta = load_model(tmp_path / "m.npy")
    assert model.sizes == (20, 16, 3) and meta["best_epoch"] >= 1
    np.load(tmp_path / "m.npy", allow_pickle=False)
    history = json.loads((tmp_path / "m.history.json").read_text())
    assert history["interrupted"] is True and len(history["epochs"]) >= 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_in_the_first_epoch_saves_and_exits_130(tmp_path):
    data = write_py2_pickle(tmp_path / "big.pkl.gz", make_blobs(n_train=40000, n_validation=100, n_test=100))
    proc, watchdog = start_training(tmp_path, data, "--epochs", "1000", "--batch-size", "1")
    wait_for_line(proc, "training ")
    time.sleep(0.3)  # let it get into the first epoch (40,000 single-sample steps: seconds)
    _, stderr = interrupt(proc, watchdog)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "saved the model reached so far" in stderr
    load_model(tmp_path / "m.npy")


# ====================================================================== SIGTERM, SIGHUP: like Ctrl-C
POSIX_SIGNALS = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")


@POSIX_SIGNALS
@pytest.mark.parametrize("name, status", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_kill_after_an_epoch_saves_like_ctrl_c(tmp_path, name, status):
    """`kill`, `timeout`, a scheduler's time limit (SIGTERM) or a closed terminal (SIGHUP) keep the model."""
    data = write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())
    proc, watchdog = start_training(tmp_path, data, "--epochs", "100000", "--batch-size", "8")
    wait_for_line(proc, "epoch ")
    _, stderr = interrupt(proc, watchdog, getattr(signal, name))
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    assert f"terminated by {name}: saved the model reached so far (the best so far, epoch" in stderr
    model, meta = load_model(tmp_path / "m.npy")
    assert model.sizes == (20, 16, 3) and meta["best_epoch"] >= 1
    history = json.loads((tmp_path / "m.history.json").read_text())
    assert history["interrupted"] is True and len(history["epochs"]) >= 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


#: Runs `bptrain` with every atomic write sending this process SIGTERM and SIGINT half-way through
#: writing the temporary file: a second (and third) signal arriving during the save.
SIGNAL_DURING_SAVE = """
import os, signal, sys
import bptrain.app.cli, bptrain.app.history, bptrain.data.model_io

real_atomic_write = bptrain.data.model_io.atomic_write

def atomic_write(path, write):
    def write_then_signal(handle):
        handle.write(b"half")
        handle.flush()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        handle.seek(0)
        handle.truncate()
        write(handle)
    real_atomic_write(path, write_then_signal)

bptrain.data.model_io.atomic_write = bptrain.app.history.atomic_write = atomic_write
sys.argv[0] = "bptrain"
bptrain.app.cli.main()
"""


def run_with_signals_during_save(tmp_path, *args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", SIGNAL_DURING_SAVE, "train", "--out", "m.npy", "--sizes", SIZES,
                             *map(str, args)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


@POSIX_SIGNALS
def test_signals_during_the_save_of_a_finished_run_wait_for_it(tmp_path):
    data = write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())
    old = save_model(MLP((20, 16, 3)), tmp_path / "m.npy", {"note": "old"})
    proc = run_with_signals_during_save(tmp_path, "--data", data, "--epochs", "2", "--batch-size", "16", "-q")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.strip() == "terminated by SIGTERM while saving; m.npy and m.history.json were saved completely"
    model, meta = load_model(old)
    assert "note" not in meta and meta["epochs_run"] == 2  # the complete new file, not the old one
    assert json.loads((tmp_path / "m.history.json").read_text())["interrupted"] is False
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@POSIX_SIGNALS
def test_second_signal_during_the_save_after_a_sigterm_does_not_cut_it_short(tmp_path):
    data = write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())
    proc = run_with_signals_during_save(tmp_path, "--data", data, "--epochs", "100000", "--batch-size", "8")
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    wait_for_line(proc, "epoch ")
    _, stderr = interrupt(proc, watchdog, signal.SIGTERM)
    assert proc.returncode == 143, stderr
    assert "terminated by SIGTERM: saved the model reached so far" in stderr and "Traceback" not in stderr
    load_model(tmp_path / "m.npy")
    assert json.loads((tmp_path / "m.history.json").read_text())["interrupted"] is True
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
