"""Checkpoints: a run stopped after k epochs and resumed ends exactly as the run that never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from bptrain import engines
from bptrain.app import checkpoints
from bptrain.core.network import MLP
from bptrain.core.training import Callbacks, TrainSettings
from bptrain.data.checkpoint_io import load_checkpoint
from bptrain.data.loader import validate_splits
from bptrain.data.model_io import load_model, save_model
from conftest import assert_clean_error, invoke, make_blobs, write_py2_pickle

POSIX_SIGNALS = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
SETTINGS_CASES = [
    {},                                                        # train's defaults: momentum, decay, cosine
    {"momentum": 0.0, "weight_decay": 0.0, "schedule": "constant"},
    {"nesterov": True, "schedule": "step", "step_size": 2},
    {"optimizer": "adam", "lr": 0.01, "weight_decay": 1e-3},
    {"augment": 2, "elastic_alpha": 8.0, "elastic_sigma": 3.0, "affine_rotate": 10.0, "affine_scale": 0.1},
    {"early_stopping": 2, "lr": 2.0},
]


class StopAfter(Callbacks):
    """Ctrl-C in the middle of epoch ``k + 1``: the run's checkpoint is the one written after epoch ``k``."""

    def __init__(self, k):
        self.k = k

    def progress(self, epoch, batches_done, running_loss):
        if epoch > self.k:
            raise KeyboardInterrupt


def parameters(model):
    return [a.copy() for a in model.weights + model.biases]


def history_without_seconds(result):
    return [{key: value for key, value in vars(record).items() if key != "seconds"} for record in result.history]


@pytest.fixture(scope="module")
def data():
    return validate_splits(make_blobs(200, 60, 20, n_features=64, n_classes=4), source="blobs")


def train_and_maybe_resume(tmp_path, data, engine, settings, dtype, stop_after=None):
    model = MLP((64, 16, 12, 4), seed=1, dtype=dtype)
    path = tmp_path / f"{engine}-{stop_after}.checkpoint.npz"
    run = {"sizes": [64, 16, 12, 4], "loss": "ce", "activation": "sigmoid", "dtype": np.dtype(dtype).name,
           "init": "xavier", "engine": engine, "settings": settings.to_dict(), "first_epoch": 1}
    callbacks = [checkpoints.CheckpointWriter(path, run, model)] + ([StopAfter(stop_after)] if stop_after else [])
    result = engines.train(model, data, settings, engine=engine, progress=False, callbacks=callbacks)
    if stop_after is None:
        return parameters(model), result
    assert result.interrupted
    checkpoint = checkpoints.read(path)
    assert checkpoint.state.epoch == stop_after
    result = engines.train(checkpoint.model, data, settings, engine=engine, progress=False, resume=checkpoint.state)
    return parameters(checkpoint.model), result


@pytest.mark.parametrize("engine", ["reference", "fast"])
@pytest.mark.parametrize("case, dtype", [(case, dtype) for case in range(len(SETTINGS_CASES))
                                         for dtype in (np.float32, np.float64)
                                         if dtype == np.float32 or "elastic_alpha" not in SETTINGS_CASES[case]])
def test_a_run_stopped_and_resumed_ends_as_one_that_never_stopped(tmp_path, data, engine, case, dtype):
    """Every optimizer, schedule, distortion and dtype (distortions work on float32 images only)."""
    kwargs = SETTINGS_CASES[case]
    settings = TrainSettings(epochs=5, batch_size=16, seed=3, **{"lr": 0.3, **kwargs})
    whole, whole_result = train_and_maybe_resume(tmp_path, data, engine, settings, dtype)
    resumed, resumed_result = train_and_maybe_resume(tmp_path, data, engine, settings, dtype, stop_after=2)
    assert all(np.array_equal(a, b) for a, b in zip(whole, resumed))
    assert history_without_seconds(whole_result) == history_without_seconds(resumed_result)
    assert (whole_result.best_epoch, whole_result.stopped_early) == (resumed_result.best_epoch,
                                                                      resumed_result.stopped_early)


def test_the_checkpoint_keeps_the_optimizer_state_in_the_form_the_engine_holds_it(tmp_path, data):
    settings = TrainSettings(epochs=3, batch_size=16, optimizer="adam", lr=0.01)
    model = MLP((64, 16, 4), seed=0)
    run = {"sizes": [64, 16, 4], "loss": "ce", "activation": "sigmoid", "dtype": "float32", "init": "xavier",
           "engine": "fast", "settings": settings.to_dict(), "first_epoch": 1}
    writer = checkpoints.CheckpointWriter(tmp_path / "m.checkpoint.npz", run, model)
    engines.train(model, data, settings, engine="fast", progress=False, callbacks=[writer])
    state = checkpoints.read(tmp_path / "m.checkpoint.npz").state
    assert state.optimizer["t"] == 3 * 13 and state.optimizer["lr"] is not None  # the fast Adam's scaled m and v
    assert [a.ndim for a in state.optimizer["arrays"]] == [1, 1]  # its flat buffers, as it keeps them


# ----------------------------------------------------------------------------- the command line
SIZES = ["--sizes", "20,48,3", "--batch-size", "4", "--lr", "0.2"]


def train_process(cwd, data, *args):
    return subprocess.Popen([sys.executable, "-m", "bptrain", "train", "--data", str(data), *SIZES, *map(str, args)],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def train_run(cwd, data, *args):
    return subprocess.run([sys.executable, "-m", "bptrain", "train", "--data", str(data), *SIZES, *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def history_document(path):
    document = json.loads(path.read_text())
    for record in document["epochs"]:
        record.pop("seconds")
    return document


@POSIX_SIGNALS
@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("name", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_a_run_killed_and_resumed_writes_the_same_model_and_history(tmp_path, engine, name):
    data = write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    whole.mkdir(), stopped.mkdir()
    args = ["--epochs", 30, "--engine", engine, "--out", "m.npy"]
    done = train_run(whole, data, *args)
    assert done.returncode == 0, done.stderr
    assert not (whole / "m.checkpoint.npz").exists()  # a completed run leaves no checkpoint
    proc = train_process(stopped, data, *args)
    for line in proc.stdout:
        if line.startswith("epoch   3/"):
            break
    proc.send_signal(getattr(signal, name))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr
    checkpoint = stopped / "m.checkpoint.npz"
    stopped_at = checkpoints.read(checkpoint).state.epoch
    assert 3 <= stopped_at < 30
    resumed = subprocess.run([sys.executable, "-m", "bptrain", "train", "--resume", "m.checkpoint.npz"], cwd=stopped,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"epoch {stopped_at + 1:>3}/30" in resumed.stdout and f"epoch {stopped_at:>3}/30" not in resumed.stdout
    assert (stopped / "m.npy").read_bytes() == (whole / "m.npy").read_bytes()
    assert history_document(stopped / "m.history.json") == history_document(whole / "m.history.json")
    assert not checkpoint.exists()


def test_changing_the_plan_on_resume(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    checkpoint = tmp_path / "m.checkpoint.npz"
    base = ["train", "--data", synthetic_data, *SIZES, "--out", out]
    result = invoke(runner, *base, "--epochs", 3, "--early-stopping", 1, "--lr", 50)  # diverges? no: stops early
    assert result.exit_code in (0, 1)
    _stop_after(runner, tmp_path, synthetic_data, out, epochs=6, k=2)
    line = assert_clean_error(invoke(runner, "train", "--resume", checkpoint, "--lr", "0.9"), exit_code=2)
    assert "--lr 0.9 conflicts with the checkpoint's run (lr 0.2)" in line
    line = assert_clean_error(invoke(runner, "train", "--resume", checkpoint, "--epochs", "2"), exit_code=2)
    assert "--epochs 2 ends at epoch 2, but the run has trained to epoch 2 already" in line
    more = invoke(runner, "train", "--resume", checkpoint, "--epochs", "8")
    assert more.exit_code == 0, more.output
    assert "the run was planned for 6 epochs; it now runs 8" in more.stderr
    assert load_model(out)[1]["epochs_run"] == 8 and not checkpoint.exists()


def _stop_after(runner, tmp_path, data, out, epochs, k):
    """A run of ``epochs`` stopped (as by Ctrl-C) in epoch k + 1, in-process: its checkpoint is epoch k's."""
    from bptrain.app.commands import train as train_module

    real = train_module.train

    def stopping(*args, callbacks=(), **kwargs):
        return real(*args, callbacks=[*callbacks, StopAfter(k)], **kwargs)

    train_module.train = stopping
    try:
        result = invoke(runner, "train", "--data", data, *SIZES, "--out", out, "--epochs", epochs)
    finally:
        train_module.train = real
    assert result.exit_code == 130, result.output
    assert "bptrain train --resume" in result.stderr


def test_bad_checkpoints_are_refused_in_one_line(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    _stop_after(runner, tmp_path, synthetic_data, out, epochs=6, k=2)
    good = (tmp_path / "m.checkpoint.npz").read_bytes()
    cases = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "not a zip": b"\x93NUMPY" + b"x" * 100,
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.checkpoint.npz"
        path.write_bytes(content)
        line = assert_clean_error(invoke(runner, "train", "--resume", path, "--out", tmp_path / f"{name}.npy"),
                                  exit_code=1)
        assert "truncated or corrupt" in line or "not a bptrain checkpoint" in line, line
    # an array changed behind the checksum's back, in a well-formed archive
    meta, arrays = load_checkpoint(tmp_path / "m.checkpoint.npz")
    arrays[0] = arrays[0] + 1
    tampered = tmp_path / "tampered.checkpoint.npz"
    np.savez(tampered, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **{f"a{i}": a for i, a in enumerate(arrays)})
    line = assert_clean_error(invoke(runner, "train", "--resume", tampered, "--out", tmp_path / "t.npy"), exit_code=1)
    assert "do not match the checksum" in line
    foreign = tmp_path / "foreign.checkpoint.npz"
    np.savez(foreign, weights=np.zeros(3))
    line = assert_clean_error(invoke(runner, "train", "--resume", foreign, "--out", tmp_path / "f.npy"), exit_code=1)
    assert "not a bptrain checkpoint" in line
    with zipfile.ZipFile(tmp_path / "m.checkpoint.npz") as archive:
        assert "meta.npy" in archive.namelist()


def test_a_stale_checkpoint_is_refused(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    _stop_after(runner, tmp_path, synthetic_data, out, epochs=8, k=2)
    stale = (tmp_path / "m.checkpoint.npz").read_bytes()
    _stop_after_resumed(runner, tmp_path, k=5)  # the run goes on to epoch 5 and is stopped again
    (tmp_path / "m.checkpoint.npz").write_bytes(stale)  # an older state put back
    line = assert_clean_error(invoke(runner, "train", "--resume", tmp_path / "m.checkpoint.npz"), exit_code=1)
    assert "holds epoch 2 of its run, but" in line and "not the run's last checkpoint" in line


def _stop_after_resumed(runner, tmp_path, k):
    from bptrain.app.commands import train as train_module

    real = train_module.train
    train_module.train = lambda *a, callbacks=(), **kw: real(*a, callbacks=[*callbacks, StopAfter(k)], **kw)
    try:
        result = invoke(runner, "train", "--resume", tmp_path / "m.checkpoint.npz")
    finally:
        train_module.train = real
    assert result.exit_code == 130, result.output
    assert load_model(tmp_path / "m.npy")[1]["epochs_run"] >= k


def test_continuing_a_model_file_says_what_starts_afresh(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    done = invoke(runner, "train", "--data", synthetic_data, *SIZES, "--out", out, "--epochs", 3)
    assert done.exit_code == 0, done.output
    more = invoke(runner, "train", "--data", synthetic_data, "--resume", out, "--out", out, "--epochs", 1)
    assert more.exit_code == 0, more.output
    assert "with a new plan: the schedule starts again at lr 0.1 (it last trained at" in more.stderr
    assert "momentum from zero and the random streams from --seed" in more.stderr


def test_info_says_whether_a_live_checkpoint_is_beside_the_model(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    _stop_after(runner, tmp_path, synthetic_data, out, epochs=6, k=2)
    stopped = invoke(runner, "info", out)
    assert "stopped after epoch 2 of 6; bptrain train --resume" in stopped.output
    assert invoke(runner, "train", "--resume", tmp_path / "m.checkpoint.npz", "-q").exit_code == 0
    assert "checkpoint   none" in invoke(runner, "info", out).output


def test_a_new_run_to_the_same_file_says_it_replaces_a_stopped_runs_checkpoint(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    _stop_after(runner, tmp_path, synthetic_data, out, epochs=6, k=2)
    again = invoke(runner, "train", "--data", synthetic_data, *SIZES, "--out", out, "--epochs", 1)
    assert again.exit_code == 0
    assert "holds a stopped run; this run replaces it" in again.stderr
    assert not (tmp_path / "m.checkpoint.npz").exists()


def test_a_checkpoint_is_never_left_half_written(tmp_path, data):
    model = MLP((64, 8, 4), seed=0)
    path = tmp_path / "m.checkpoint.npz"
    save_model(model, tmp_path / "m.npy")
    state = engines.train(model, data, TrainSettings(epochs=1, batch_size=16), progress=False)
    assert state.history
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert not path.exists()
