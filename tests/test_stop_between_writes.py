"""A stop signal at any instant of an epoch's end leaves files that continue.

The signal is sent from inside the process at each point between the epoch's validation and the next
epoch's first step (a hook around a function called there), for both engines. Whatever the point, the
model, its history and the checkpoint agree, and the resume command printed ends the run as the run that
never stopped ends it, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from bptrain import engines
from bptrain.app import checkpoints
from bptrain.core import training
from bptrain.data import checkpoint_io
from bptrain.data.model_io import load_model
from conftest import invoke

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
SIZES = ["--sizes", "20,48,3", "--batch-size", "4", "--lr", "0.2", "--epochs", "4"]
STOP_AT = 2  # the epoch at whose end the signal lands


def _fire(signum):
    os.kill(os.getpid(), signum)


def _counting(real, nth, signum, before=True, when=lambda *a, **k: True):
    calls = []

    def hooked(*args, **kwargs):
        if when(*args, **kwargs):
            calls.append(1)
            if before and len(calls) == nth:
                _fire(signum)
        result = real(*args, **kwargs)
        if not before and len(calls) == nth and when(*args, **kwargs):
            calls.append(1)  # fire once
            _fire(signum)
        return result

    return hooked


def _is_checkpoint(*args, **kwargs):
    return str(args[-1]).endswith(checkpoint_io.SUFFIX)


# (name, object, attribute, which call fires, fire before or after it, which calls count)
POINTS = [
    ("validation done, before the epoch's record", training, "batch_speed", STOP_AT + 1, True, None),
    ("after the history append, before the checkpoint", training, "_optimizer_state", STOP_AT, True, None),
    ("while the checkpoint's state is gathered", training, "_rng_state", STOP_AT, True, None),
    ("while the checkpoint is being written", checkpoint_io, "digest", STOP_AT, True, None),
    ("the checkpoint renamed into place, its write not returned", os, "replace", STOP_AT, False, _is_checkpoint),
    ("after the checkpoint, before the epoch's line", engines.EpochHook, "epoch_ended", STOP_AT, True, None),
    ("after the epoch's line, before the next epoch", training, "EpochSteps", STOP_AT + 1, True, None),
    ("after the last epoch, while the loop ends", training, "restore", 1, True, None),
]


@pytest.fixture(scope="module")
def whole_runs(tmp_path_factory):
    """The run that never stopped, per engine: its model bytes and its history without the seconds."""
    from click.testing import CliRunner

    from conftest import make_blobs, write_py2_pickle

    folder = tmp_path_factory.mktemp("whole")
    data = write_py2_pickle(folder / "syn.pkl.gz", make_blobs())
    runs = {}
    for engine in ("reference", "fast"):
        out = folder / f"{engine}.npy"
        result = invoke(CliRunner(), "train", "--data", data, *SIZES, "--engine", engine, "--out", out, "-q")
        assert result.exit_code == 0, result.output
        runs[engine] = (out.read_bytes(), _history(folder / f"{engine}.history.json"))
    return data, runs


def _history(path):
    document = json.loads(path.read_text())
    for record in document["epochs"]:
        record.pop("seconds")
    return document


@pytest.mark.parametrize("engine", ["reference", "fast"])
@pytest.mark.parametrize("point", range(len(POINTS)), ids=[p[0] for p in POINTS])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_at_any_point_of_an_epochs_end_leaves_a_run_that_continues(runner, tmp_path, monkeypatch, whole_runs,
                                                                          engine, point, signum):
    data, whole = whole_runs
    _, owner, name, nth, before, when = POINTS[point]
    monkeypatch.setattr(owner, name, _counting(getattr(owner, name), nth, signum, before, when or (lambda *a, **k: True)))
    out = tmp_path / "m.npy"
    stopped = invoke(runner, "train", "--data", data, *SIZES, "--engine", engine, "--out", out)
    monkeypatch.undo()
    assert stopped.exit_code == 128 + signum, stopped.output + stopped.stderr
    assert "Traceback" not in stopped.stderr
    checkpoint = tmp_path / "m.checkpoint.npz"
    meta = load_model(out)[1]
    epochs_in_history = len(json.loads((tmp_path / "m.history.json").read_text())["epochs"])
    assert meta["epochs_run"] == epochs_in_history
    if checkpoint.exists():  # the three files agree
        assert checkpoints.read(checkpoint).state.epoch == meta["epochs_run"]
    printed = re.search(r"bptrain train --resume (\S+)", stopped.stderr)
    assert printed, stopped.stderr  # a stop at an epoch's end always leaves a run to continue
    resumed = invoke(runner, "train", "--resume", printed.group(1), "-q")
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert out.read_bytes() == whole[engine][0]
    assert _history(tmp_path / "m.history.json") == whole[engine][1]
    assert not checkpoint.exists()
