"""Nothing a checkpoint says is believed unchecked: every field of its metadata, changed (and the file's
checksums written again, as a forger would), is one line and nothing trained; changed without, the
checksum refuses it."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from bptrain.data.checkpoint_io import load_checkpoint, save_checkpoint
from conftest import assert_clean_error, invoke
from test_checkpoints import _stop_after

BIG = 10**18


def _set(path, value):
    def change(meta, arrays):
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _drop_history_record(meta, arrays):
    meta["history"].pop()


def _renumber_history(meta, arrays):
    meta["history"][0]["epoch"] = 7


def _array(index, make):
    def change(meta, arrays):
        arrays[index] = make(arrays[index])
    return change


# the network 20-48-3 (two layers): arrays 0-1 weights, 2-3 biases, 4-7 best, 8-11 SGD's velocities
CHANGES = {
    "engine unknown": _set(("run", "engine"), "warp"),
    "dtype float16": _set(("run", "dtype"), "float16"),
    "dtype not a string": _set(("run", "dtype"), ["float32"]),
    "negative lr": _set(("run", "settings", "lr"), -0.1),
    "lr not a number": _set(("run", "settings", "lr"), "fast"),
    "zero epochs": _set(("run", "settings", "epochs"), 0),
    "unknown setting": _set(("run", "settings", "warp"), 1),
    "momentum of 5": _set(("run", "settings", "momentum"), 5.0),
    "batch size 0": _set(("run", "settings", "batch_size"), 0),
    "loss unknown": _set(("run", "loss"), "hinge"),
    "activation unknown": _set(("run", "activation"), "softplus"),
    "sizes of another network": _set(("run", "sizes"), [20, 40, 3]),
    "sizes with a zero": _set(("run", "sizes"), [20, 0, 3]),
    "first epoch 0": _set(("run", "first_epoch"), 0),
    "first epoch huge": _set(("run", "first_epoch"), BIG),
    "out empty": _set(("run", "out"), ""),
    "out a folder's name": _set(("run", "out"), ".."),
    "history not a string": _set(("run", "history"), 3),
    "data options not a table": _set(("run", "data_options"), ["label_column"]),
    "data option unknown": _set(("run", "data_options"), {"warp": 1}),
    "label column not text": _set(("run", "data_options"), {"label_column": 16}),
    "resize of one side": _set(("run", "data_options"), {"resize": [28]}),
    "resize too large": _set(("run", "data_options"), {"resize": [28, BIG]}),
    "transposed not a bool": _set(("run", "data_options"), {"transposed": "yes"}),
    "negative epoch": _set(("epoch",), -4),
    "epoch huge": _set(("epoch",), BIG),
    "epoch past the plan": _set(("epoch",), 9),
    "best epoch huge": _set(("best_epoch",), BIG),
    "best epoch negative": _set(("best_epoch",), -1),
    "accuracy above 1": _set(("best_val_accuracy",), 7.0),
    "accuracy not a number": _set(("best_val_accuracy",), "high"),
    "count negative": _set(("epochs_without_improvement",), -1),
    "count huge": _set(("epochs_without_improvement",), BIG),
    "history one short": _drop_history_record,
    "history renumbered": _renumber_history,
    "history not a list": _set(("history",), {"a": 1}),
    "initial speed not a dict": _set(("initial_speed",), "fast"),
    "rng garbage": _set(("rng",), {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}}),
    "rng another generator": _set(("rng",), {"bit_generator": "MT19937", "state": {}}),
    "rng missing": _set(("rng",), None),
    "rng not a dict": _set(("rng",), [1, 2]),
    "optimizer momentum 5": _set(("optimizer", "momentum"), 5.0),
    "optimizer momentum missing": lambda meta, arrays: meta["optimizer"].pop("momentum"),
    "optimizer arrays counted wrong": _set(("optimizer_arrays",), 3),
    "velocity of the wrong shape": _array(8, lambda a: np.zeros((a.shape[1], a.shape[0]), a.dtype)),
    "velocity of another dtype": _array(8, lambda a: a.astype(np.float64)),
    "velocity float16": _array(9, lambda a: a.astype(np.float16)),
    "weights float16": _array(0, lambda a: a.astype(np.float16)),
    "weights of the wrong shape": _array(1, lambda a: np.zeros((3, 48), a.dtype)),
    "best weights of the wrong shape": _array(4, lambda a: a[:5]),
    "weights not finite": _array(0, lambda a: np.full_like(a, np.nan)),
}


@pytest.fixture
def stopped(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    _stop_after(runner, tmp_path, synthetic_data, out, epochs=6, k=2)
    return tmp_path, load_checkpoint(tmp_path / "m.checkpoint.npz")


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_forged_field_is_one_line_and_nothing_trains(runner, stopped, name):
    folder, (meta, arrays) = stopped
    meta, arrays = copy.deepcopy(meta), list(arrays)
    for key in ("format", "format_version", "n_arrays", "sha256", "meta_sha256"):
        meta.pop(key, None)
    CHANGES[name](meta, arrays)
    forged = folder / "forged.checkpoint.npz"
    save_checkpoint(forged, meta, arrays)  # its checksums written again over the changed content
    before = (folder / "m.npy").read_bytes()
    result = invoke(runner, "train", "--resume", forged, "--out", folder / "forged.npy")
    line = assert_clean_error(result, exit_code=1)
    assert "forged.checkpoint.npz" in line, line
    assert not (folder / "forged.npy").exists() and (folder / "m.npy").read_bytes() == before


def test_changed_metadata_without_new_checksums_is_refused_by_the_checksum(runner, stopped):
    folder, (meta, arrays) = stopped
    meta = {**meta, "epoch": 1, "history": meta["history"][:1]}  # consistent, but not what was written
    tampered = folder / "t.checkpoint.npz"
    np.savez(tampered, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
             **{f"a{i}": a for i, a in enumerate(arrays)})
    line = assert_clean_error(invoke(runner, "train", "--resume", tampered, "--out", folder / "t.npy"), exit_code=1)
    assert "checksum" in line, line


def test_an_untouched_checkpoint_still_continues(runner, stopped):
    folder, _ = stopped
    assert invoke(runner, "train", "--resume", folder / "m.checkpoint.npz", "-q").exit_code == 0
