"""Odd but possible inputs at the edges: nested JSON, unusual runs, huge seeds, long names, full disks."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from bptrain.core.network import MLP
from bptrain.data.model_io import model_record, save_model
from conftest import assert_clean_error, invoke

NESTED = "[" * 100_000 + "]" * 100_000
SIZES = ["--sizes", "20,8,3", "--epochs", "1", "--batch-size", "16", "--augment", "0"]


def a_history(path, **changes):
    document = {"epochs": [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 0.5}], "best_epoch": 1,
                "settings": {"lr": 0.1}, "sizes": [20, 8, 3], **changes}
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("where", ["compare", "plot", "train --history", "model metadata"])
def test_deeply_nested_json_is_one_line_everywhere(runner, tmp_path, synthetic_data, where):
    nested = tmp_path / "deep.history.json"
    nested.write_text('{"epochs": ' + NESTED + ', "best_epoch": 1}')
    if where == "compare":
        result = invoke(runner, "compare", nested, a_history(tmp_path / "b.history.json"))
    elif where == "plot":
        pytest.importorskip("matplotlib")
        result = invoke(runner, "plot", nested)
    elif where == "train --history":
        result = invoke(runner, "train", "--data", synthetic_data, *SIZES, "--out", tmp_path / "m.npy",
                        "--history", nested)
    else:
        path = tmp_path / "deep.npy"
        meta = ('{"format": "bptrain-model", "deep": ' + NESTED + "}").encode()
        record = model_record(MLP((20, 8, 3)), {})
        fields = [(name, record.dtype.fields[name][0]) for name in record.dtype.names if name != "meta"]
        deep = np.zeros((), dtype=np.dtype(fields + [("meta", f"S{len(meta)}")]))
        for name, _ in fields:
            deep[name] = record[name]
        deep["meta"] = meta
        np.save(path, deep, allow_pickle=False)
        result = invoke(runner, "info", path)
    line = assert_clean_error(result)
    assert "JSON" in line or "not a bptrain" in line or "corrupt" in line, line
    assert nested.read_text().startswith('{"epochs": [[[')  # left as it was


@pytest.mark.parametrize("changes", [{"sizes": 784}, {"settings": {"lr": {"nested": [1, 2]}}},
                                     {"settings": {"seed": int("9" * 300)}}, {"settings": [1, 2]},
                                     {"sizes": [[1], "x"]}])
def test_compare_reads_unusual_but_legal_runs(runner, tmp_path, changes):
    odd = a_history(tmp_path / "odd.history.json", **changes)
    plain = a_history(tmp_path / "plain.history.json")
    result = invoke(runner, "compare", odd, plain)
    assert result.exit_code == 0 or "Traceback" not in result.output, result.output
    assert isinstance(result.exception, (SystemExit, type(None))), repr(result.exception)


def test_a_seed_too_large_to_record_is_refused_up_front(runner, tmp_path, synthetic_data):
    line = assert_clean_error(invoke(runner, "train", "--data", synthetic_data, *SIZES, "--out", tmp_path / "m.npy",
                                     "--seed", "9" * 300), exit_code=2)
    assert "--seed" in line and not (tmp_path / "m.npy").exists()


def test_a_file_name_longer_than_the_file_system_allows_is_refused_up_front(runner, tmp_path, synthetic_data):
    long = tmp_path / ("m" * 300 + ".npy")
    line = assert_clean_error(invoke(runner, "train", "--data", synthetic_data, *SIZES, "--out", long), exit_code=2)
    assert "name" in line and "bytes" in line


def test_a_full_disk_at_the_save_keeps_what_the_user_had_and_the_trained_model(runner, tmp_path, synthetic_data,
                                                                            monkeypatch):
    from bptrain.app.commands import train as train_module

    out = tmp_path / "m.npy"
    save_model(MLP((20, 8, 3), seed=9), out)
    previous = out.read_bytes()
    real = train_module.save_model

    def full(model, path, metadata=None):
        if str(path) == str(out):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(model, path, metadata)

    monkeypatch.setattr(train_module, "save_model", full)
    result = invoke(runner, "train", "--data", synthetic_data, *SIZES, "--out", out)
    line = assert_clean_error(result, exit_code=1)
    assert "No space left on device" in line and "the trained model was written to" in line
    kept = line.split("the trained model was written to ")[1].split(" ")[0].rstrip(";,")
    assert np.load(kept, allow_pickle=False).dtype.names  # a real model file, elsewhere
    assert out.read_bytes() == previous  # the user's file as it was


def test_a_full_disk_for_the_checkpoint_stops_the_run_the_same_way(runner, tmp_path, synthetic_data, monkeypatch):
    from bptrain.app import checkpoints

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "m.checkpoint.npz"))

    monkeypatch.setattr(checkpoints, "save_checkpoint", full)
    result = invoke(runner, "train", "--data", synthetic_data, *SIZES, "--epochs", "3", "--out", tmp_path / "m.npy")
    line = assert_clean_error(result, exit_code=1)
    assert "cannot write" in line and "No space left on device" in line


def test_too_little_free_space_is_refused_before_training(runner, tmp_path, synthetic_data, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    line = assert_clean_error(invoke(runner, "train", "--data", synthetic_data, *SIZES, "--out", tmp_path / "m.npy"),
                              exit_code=1)
    assert "free" in line and "disk" in line


def test_a_model_file_too_short_for_its_header_is_corrupt_not_a_memory_problem(runner, tmp_path, synthetic_data,
                                                                              monkeypatch):
    """1 KB whose header claims a 20-600000-3 network (48 MB of weights) on a machine with 40 MB available:
    truncated or corrupt, as docs/files.md says, not a network too big for the memory."""
    from bptrain.app import memory

    monkeypatch.setattr(memory, "available_bytes", lambda root="/": 40 * 10**6)
    record = model_record(MLP((20, 8, 3)), {})
    fields = [("W1", "<f4", (20, 600_000)), ("b1", "<f4", (600_000,)), ("W2", "<f4", (600_000, 3)),
              ("b2", "<f4", (3,)), ("meta", record.dtype.fields["meta"][0].str)]
    lying = tmp_path / "lying.npy"
    with open(lying, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": fields, "fortran_order": False, "shape": ()})
        handle.write(bytes(1000))
    line = assert_clean_error(invoke(runner, "train", "--data", synthetic_data, *SIZES, "--resume", lying,
                                     "--out", tmp_path / "m.npy"), exit_code=1)
    assert "truncated or corrupt" in line and "needs about" not in line and "memory" not in line, line
