"""The command line end to end: CliRunner for most, real subprocesses for `python -m`, Ctrl-C and stderr.

Every user error must be: a non-zero exit, exactly one "Error: ..." line on stderr (click may put its
usage line and a hint above it for usage errors), the exit raised by click rather than an escaped
exception, and no traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bptrain import __version__
from bptrain.app.commands import cli
from bptrain.data.model_io import load_model, save_model
from bptrain.core.network import MLP

from conftest import assert_clean_error, invoke, make_blobs, write_gz, write_py2_pickle

SIZES = "20,16,3"
FAST = ["--sizes", SIZES, "--epochs", "3", "--lr", "0.5", "--batch-size", "16"]




def run(*args, cwd=None, timeout=60, env=None):
    """``python -m bptrain ARGS`` in a real subprocess."""
    return subprocess.run([sys.executable, "-m", "bptrain", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def eval_json(runner, model, data, *extra) -> dict:
    result = invoke(runner, "eval", model, "--data", data, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ====================================================================== one trained model for many checks
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train 20-16-3 on the synthetic set once through the CLI (not quiet, to see its lines)."""
    from click.testing import CliRunner

    directory = tmp_path_factory.mktemp("trained")
    data = write_py2_pickle(directory / "synthetic.pkl.gz", make_blobs())
    out = directory / "model.npy"
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(out), *FAST, "--seed", "3"])
    assert result.exit_code == 0, result.output
    return data, out, result


def test_train_prints_a_header_and_one_line_per_epoch(trained):
    data, out, result = trained
    lines = result.stdout.splitlines()
    assert lines[0].startswith("training 20-16-3 (sigmoid hidden, ce, float32) on 600 images")
    assert "sgd, lr 0.5" in lines[0]
    epoch_lines = [line for line in lines if re.match(r"epoch +\d+/3 ", line)]
    assert len(epoch_lines) == 3
    assert all("train loss" in line and "val acc" in line for line in epoch_lines)
    assert lines[-1].startswith(f"saved {out}")
    assert "Traceback" not in result.output


def test_eval_text_report(runner, trained):
    data, out, _ = trained
    result = invoke(runner, "eval", out, "--data", data)
    assert result.exit_code == 0, result.output
    accuracy = float(re.search(r"accuracy\s+(\d+\.\d+)%", result.stdout).group(1))
    assert accuracy > 90, result.stdout  # chance is 33%
    assert "test split" in result.stdout and "150 images" in result.stdout
    assert "confusion matrix" in result.stdout
    table = result.stdout[result.stdout.index("true\\pred"):].splitlines()
    assert len(table) == 1 + 3
    counts = np.array([[int(v) for v in row.split()[1:]] for row in table[1:]])
    assert counts.sum() == 150 and np.trace(counts) / 150 == pytest.approx(accuracy / 100, abs=1e-4)


def test_eval_json_report(runner, trained):
    data, out, _ = trained
    report = eval_json(runner, out, data)
    assert report["split"] == "test" and report["samples"] == 150
    assert report["accuracy"] > 0.9
    assert np.isfinite(report["loss"]) and report["loss_kind"] == "ce"
    confusion = np.array(report["confusion_matrix"])
    assert confusion.shape == (3, 3) and confusion.sum() == 150
    assert np.trace(confusion) / 150 == pytest.approx(report["accuracy"])
    assert len(report["per_class_accuracy"]) == 3 and min(report["per_class_accuracy"]) > 0.8


@pytest.mark.parametrize("split, samples", [("train", 600), ("validation", 150)])
def test_eval_other_splits(runner, trained, split, samples):
    data, out, _ = trained
    report = eval_json(runner, out, data, "--split", split)
    assert report["split"] == split and report["samples"] == samples and report["accuracy"] > 0.9


def test_saved_model_opens_without_pickle_and_describes_itself(trained):
    _, out, _ = trained
    record = np.load(out, allow_pickle=False)
    meta = json.loads(bytes(record["meta"]).decode())
    assert meta["sizes"] == [20, 16, 3] and meta["loss"] == "ce" and meta["format_version"] >= 1
    model, _ = load_model(out)
    assert model.sizes == (20, 16, 3)


def test_history_json_next_to_the_model(trained):
    _, out, _ = trained
    history = json.loads((out.parent / "model.history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    assert all(0 <= e["val_accuracy"] <= 1 and e["train_loss"] > 0 for e in history["epochs"])
    assert history["settings"]["lr"] == 0.5 and history["settings"]["batch_size"] == 16


def test_same_seed_gives_identical_bytes_other_seed_does_not(runner, tmp_path, synthetic_data):
    paths = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        paths.append(tmp_path / f"{name}.npy")
        result = invoke(runner, "train", "--data", synthetic_data, "--out", paths[-1], *FAST, "--seed", seed, "-q")
        assert result.exit_code == 0, result.output
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_quiet_prints_nothing(runner, tmp_path, synthetic_data):
    result = invoke(runner, "train", "--data", synthetic_data, "--out", tmp_path / "m.npy", *FAST, "--quiet")
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""
    assert (tmp_path / "m.npy").exists() and (tmp_path / "m.history.json").exists()


def test_mse_and_float64_train_and_eval(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "--loss", "mse",
                    "--dtype", "float64", "--lr", "2", "--epochs", "5", "--batch-size", "8", "--momentum", "0.5", "-q")
    assert result.exit_code == 0, result.output
    model, meta = load_model(out)
    assert model.loss == "mse" and model.dtype == np.float64
    assert eval_json(runner, out, synthetic_data)["accuracy"] > 0.9


def test_info(runner, trained):
    _, out, _ = trained
    result = invoke(runner, "info", out)
    assert result.exit_code == 0 and "20 -> 16 -> 3" in result.stdout


def test_resume_continues_numbering_and_keeps_the_architecture(runner, tmp_path, synthetic_data):
    first, second = tmp_path / "first.npy", tmp_path / "second.npy"
    assert invoke(runner, "train", "--data", synthetic_data, "--out", first, *FAST, "-q").exit_code == 0
    _, meta = load_model(first)
    result = invoke(runner, "train", "--data", synthetic_data, "--resume", first, "--out", second, "--epochs", "2",
                    "--lr", "0.5", "-q")
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "second.history.json").read_text())
    done = meta["epochs_trained"]
    assert [e["epoch"] for e in history["epochs"]] == [done + 1, done + 2]
    assert load_model(second)[0].sizes == (20, 16, 3)
    conflict = invoke(runner, "train", "--data", synthetic_data, "--resume", first, "--sizes", "20,8,3",
                      "--out", tmp_path / "third.npy")
    assert_clean_error(conflict, "conflicts with the resumed model")
    assert_clean_error(invoke(runner, "train", "--data", synthetic_data, "--resume", tmp_path / "nope.npy",
                              "--out", tmp_path / "third.npy"), "no model file")


def test_resume_is_a_new_run_from_the_saved_weights(runner, tmp_path, synthetic_data):
    """What docs/published.md says --resume restarts: the schedule (from --lr over the new --epochs), the
    momentum (from zero) and the random streams (from --seed). So a resumed run trains exactly as a fresh
    run of the same settings started from the saved weights does."""
    from bptrain import TrainSettings, load_dataset, train

    first, resumed = tmp_path / "first.npy", tmp_path / "resumed.npy"
    assert invoke(runner, "train", "--data", synthetic_data, "--out", first, *FAST, "-q").exit_code == 0
    result = invoke(runner, "train", "--data", synthetic_data, "--resume", first, "--out", resumed,
                    "--epochs", "3", "--lr", "0.4", "--schedule", "cosine", "--seed", "5", "-q")
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "resumed.history.json").read_text())
    settings = TrainSettings(**history["settings"])
    assert history["epochs"][0]["lr"] == pytest.approx(0.4)  # the cosine starts again at --lr

    model, _ = load_model(first)
    fresh = train(model, load_dataset(synthetic_data), settings, progress=False)
    assert [r.lr for r in fresh.history] == pytest.approx([e["lr"] for e in history["epochs"]])
    assert [r.train_loss for r in fresh.history] == pytest.approx([e["train_loss"] for e in history["epochs"]],
                                                                  rel=1e-6)


# ====================================================================== help, version, python -m
def test_version_and_help(runner):
    result = invoke(runner, "--version")
    assert result.exit_code == 0 and __version__ in result.stdout
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    for command in ("train", "eval"):
        assert command in result.stdout
    result = invoke(runner, "train", "--help")
    assert result.exit_code == 0 and "--sizes" in result.stdout and "--batch-size" in result.stdout


def test_python_dash_m_help_and_version(tmp_path):
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0 and "train" in result.stdout and "eval" in result.stdout
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0 and __version__ in result.stdout


def test_train_and_eval_in_subprocesses(tmp_path):
    data = write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())
    result = run("train", "--data", data, "--out", "m.npy", *FAST, "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    np.load(tmp_path / "m.npy", allow_pickle=False)
    result = run("eval", "m.npy", "--data", data, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accuracy"] > 0.9


def test_bad_input_in_a_subprocess_is_one_line_on_stderr(tmp_path):
    result = run("eval", tmp_path / "missing.npy", "--data", tmp_path / "x.pkl.gz", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr


# ====================================================================== bad command lines
@pytest.mark.parametrize("option, value, phrase", [
    ("--sizes", "784,,10", "empty entry"),
    ("--sizes", "abc", "not a comma-separated list of integers"),
    ("--sizes", "784", "at least two widths"),
    ("--sizes", "0,10", "at least 1"),
    ("--sizes", "-5,10", "at least 1"),
    ("--sizes", "20,16.5,3", "not a comma-separated list of integers"),
    ("--lr", "0", "--lr"),
    ("--lr", "-1", "--lr"),
    ("--lr", "nan", "not a finite number"),
    ("--lr", "inf", "not a finite number"),
    ("--lr", "fast", "--lr"),
    ("--epochs", "0", "--epochs"),
    ("--epochs", "-3", "--epochs"),
    ("--batch-size", "0", "--batch-size"),
    ("--momentum", "1", "--momentum"),
    ("--weight-decay", "nan", "not a finite number"),
    ("--loss", "hinge", "--loss"),
], ids=lambda v: str(v))
def test_bad_option_values(runner, tmp_path, synthetic_data, option, value, phrase):
    out = tmp_path / "m.npy"
    args = ["train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "-q", option, value]
    assert_clean_error(invoke(runner, *args), phrase, exit_code=2)
    assert not out.exists()


def test_missing_data_file(runner, tmp_path):
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", tmp_path / "nope.pkl.gz", "--no-download", "--out", out,
                    "--sizes", SIZES)
    line = assert_clean_error(result, "no data at")
    assert "nope.pkl.gz" in line and "bptrain download" in line
    assert not out.exists()


def test_missing_default_data_with_no_download(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "train", "--no-download", "--sizes", SIZES, "--out", "m.npy")
    line = assert_clean_error(result, "no data at")
    assert "data/mnist.pkl.gz" in line and "bptrain download" in line
    assert not (tmp_path / "data" / "mnist.pkl.gz").exists() and not (tmp_path / "m.npy").exists()


def test_missing_data_from_env_var(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("BPTRAIN_DATA", str(tmp_path / "env.pkl.gz"))
    assert_clean_error(invoke(runner, "train", "--no-download", "--sizes", SIZES, "--out", tmp_path / "m.npy"),
                       "env.pkl.gz")


def test_data_from_env_var_is_used(runner, tmp_path, monkeypatch, synthetic_data):
    monkeypatch.setenv("BPTRAIN_DATA", str(synthetic_data))
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--out", out, *FAST, "-q")
    assert result.exit_code == 0, result.output
    assert eval_json(runner, out, synthetic_data)["data"] == str(synthetic_data)


@pytest.mark.parametrize("content, phrase", [
    (b"", "is empty"),
    (b"definitely not gzip", "not a gzip file"),
    ("truncated", "truncated or corrupt"),
    ("random", "not a readable pickle"),
    ("two-splits", "expected 3 splits"),
    ("x-1d", "must be 2-D"),
    ("nan", "NaN or infinite"),
    ("float-labels", "labels must be integers"),
    ("evil", "refusing to load"),
])
def test_bad_data_files(runner, tmp_path, synthetic_data, content, phrase):
    path = tmp_path / "bad.pkl.gz"
    import pickle

    blobs = [list(s) for s in make_blobs(60, 15, 15)]
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "truncated":
        raw = synthetic_data.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif content == "random":
        write_gz(path, b"\xfe" + np.random.default_rng(0).bytes(3000))
    elif content == "two-splits":
        write_py2_pickle(path, make_blobs()[:2])
    elif content == "evil":
        command = f"touch '{tmp_path / 'pwned'}'".encode()
        write_gz(path, b"\x80\x02cos\nsystem\nX" + len(command).to_bytes(4, "little") + command + b"\x85R.")
    else:
        if content == "x-1d":
            blobs[0][0] = blobs[0][0][:, 0]
        elif content == "nan":
            blobs[1][0][0, 0] = np.nan
        elif content == "float-labels":
            blobs[2][1] = blobs[2][1].astype(np.float64)
        write_gz(path, pickle.dumps([tuple(s) for s in blobs], protocol=4))
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", path, "--no-download", "--out", out, "--sizes", SIZES)
    assert_clean_error(result, phrase)
    assert not out.exists()
    assert not (tmp_path / "pwned").exists()
    # eval reads data the same way
    model = save_model(MLP((20, 16, 3)), tmp_path / "ok.npy")
    assert_clean_error(invoke(runner, "eval", model, "--data", path, "--no-download"), phrase)


def test_eval_missing_model(runner, tmp_path, synthetic_data):
    assert_clean_error(invoke(runner, "eval", tmp_path / "nope.npy", "--data", synthetic_data), "no model file")


@pytest.mark.parametrize("kind, phrase", [
    ("text", "not a .npy file"),
    ("empty", "is empty"),
    ("truncated", "model file"),
    ("floats", "not a bptrain model"),
    ("object", "needs pickle"),
])
def test_eval_broken_model(runner, tmp_path, synthetic_data, trained, kind, phrase):
    path = tmp_path / "broken.npy"
    if kind == "text":
        path.write_text("not a model\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        raw = trained[1].read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "floats":
        np.save(path, np.zeros(5))
    else:
        np.save(path, np.array([None, {}], dtype=object), allow_pickle=True)
    assert_clean_error(invoke(runner, "eval", path, "--data", synthetic_data), phrase)


@pytest.mark.parametrize("sizes, phrase", [("19,16,3", "input width 19"), ("20,16,4", "4 output classes")])
def test_sizes_not_matching_the_data(runner, tmp_path, synthetic_data, sizes, phrase):
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", sizes)
    line = assert_clean_error(result, phrase)
    assert "20 features" in line or "3 classes" in line
    assert not out.exists()


def test_eval_model_not_matching_the_data(runner, tmp_path, synthetic_data):
    wide = save_model(MLP((21, 4, 3)), tmp_path / "wide.npy")
    assert_clean_error(invoke(runner, "eval", wide, "--data", synthetic_data), "input width 21")
    few = save_model(MLP((20, 4, 2)), tmp_path / "few.npy")
    assert_clean_error(invoke(runner, "eval", few, "--data", synthetic_data),
                       "has label 2, outside the model's classes 0..1")


def test_eval_data_without_some_of_the_models_classes_is_scored(runner, tmp_path, synthetic_data):
    many = save_model(MLP((20, 4, 5)), tmp_path / "many.npy")  # the data has classes 0..2 of its 5
    result = invoke(runner, "eval", many, "--data", synthetic_data, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["per_class_accuracy"][3:] == [None, None] and report["class_names"] == list("01234")


def test_out_in_a_missing_directory_fails_before_training(runner, tmp_path, synthetic_data):
    out = tmp_path / "no" / "such" / "dir" / "m.npy"
    started = time.perf_counter()
    result = invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "--epochs", "200",
                    "--batch-size", "1")
    elapsed = time.perf_counter() - started
    assert_clean_error(result, "does not exist")
    assert "training" not in result.stdout and "epoch" not in result.stdout  # never started
    assert elapsed < 5.0
    assert not out.parent.exists()


def test_history_in_a_missing_directory_fails_before_training(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", synthetic_data, "--out", out, "--history", tmp_path / "no" / "h.json",
                    "--sizes", SIZES)
    assert_clean_error(result, "does not exist")
    assert "training" not in result.stdout and not out.exists()


def test_out_is_a_directory(runner, tmp_path, synthetic_data):
    assert_clean_error(invoke(runner, "train", "--data", synthetic_data, "--out", tmp_path, "--sizes", SIZES),
                       "is a directory")


def unwritable_directory(tmp_path) -> Path:
    """A directory this process cannot create files in (root ignores chmod: try /sys then)."""
    import tempfile

    if hasattr(os, "geteuid") and os.geteuid() == 0:
        candidate = Path("/sys")
    else:
        candidate = tmp_path / "locked"
        candidate.mkdir()
        candidate.chmod(0o500)
    try:
        with tempfile.TemporaryFile(dir=candidate):
            pass
    except OSError:
        return candidate
    pytest.skip(f"no unwritable directory available ({candidate} is writable)")


def test_out_in_a_read_only_directory(runner, tmp_path, synthetic_data):
    locked = unwritable_directory(tmp_path)
    try:
        result = invoke(runner, "train", "--data", synthetic_data, "--out", locked / "m.npy", "--sizes", SIZES)
        assert_clean_error(result, "not writable")
        assert "training" not in result.stdout
        assert not (locked / "m.npy").exists()
    finally:
        if locked.is_relative_to(tmp_path):
            locked.chmod(0o700)


def test_batch_size_larger_than_training_set_is_clamped_with_a_notice(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "--epochs", "30",
                    "--lr", "2", "--batch-size", "100000", "-q")
    assert result.exit_code == 0, result.output
    assert "100000" in result.stderr and "600" in result.stderr  # the notice, even with --quiet
    history = json.loads((tmp_path / "m.history.json").read_text())
    assert history["settings"]["batch_size"] == 600
    assert eval_json(runner, out, synthetic_data)["accuracy"] > 0.6  # it trained (full-batch: slower)


# ====================================================================== divergence
def existing_model(path: Path) -> bytes:
    save_model(MLP((20, 16, 3), seed=42), path)
    return path.read_bytes()


def test_nan_divergence_stops_and_keeps_the_existing_model(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    before = existing_model(out)
    result = invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "--lr", "1e30",
                    "--epochs", "3", "-q")
    line = assert_clean_error(result, "diverged")
    assert "learning rate" in line and "epoch 1" in line
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, synthetic_data.name])


def test_lr_1e6_is_reported_as_divergence_and_keeps_the_existing_model(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    before = existing_model(out)
    result = invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "--lr", "1e6",
                    "--epochs", "3", "-q")
    line = assert_clean_error(result)
    assert "learning rate" in line
    assert out.read_bytes() == before


def test_divergence_in_a_subprocess_is_one_line_on_stderr(tmp_path):
    data = write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())
    result = run("train", "--data", data, "--out", "m.npy", "--sizes", SIZES, "--lr", "1e30", "-q", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: "), result.stderr


# ====================================================================== corrupt headers, out of memory
def write_lying_npy(path: Path) -> Path:
    """1 KB whose .npy header claims a (100000, 1000000) float32 array: 400 GB."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (100000, 1000000)})
        handle.write(bytes(1000))
    return path


def test_eval_and_predict_call_a_lying_header_a_corrupt_file_not_out_of_memory(runner, tmp_path, trained):
    data, model, _ = trained
    lying = write_lying_npy(tmp_path / "big.npy")
    for args in (("eval", lying, "--data", data), ("predict", lying, lying), ("predict", model, lying),
                 ("info", lying)):
        line = assert_clean_error(invoke(runner, *args), exit_code=1)
        assert f"{lying} is truncated or corrupt: its header claims 400.0 GB" in line
        assert "memory" not in line and "--batch-size" not in line


def test_out_of_memory_advice_only_where_training_runs_out(runner, tmp_path, synthetic_data, trained, monkeypatch):
    import bptrain.app.commands.common as common
    import bptrain.app.commands.train as train_module
    import bptrain.app.runs as runs

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 3.00 GiB for an array with shape (50000, 16000) and data type float32")

    monkeypatch.setattr(train_module, "train", out_of_memory)
    assert_clean_error(invoke(runner, "train", "--data", synthetic_data, "--out", tmp_path / "m.npy", *FAST, "-q"),
                       "out of memory while training; try a smaller --batch-size or network")
    monkeypatch.setattr(runs, "MLP", out_of_memory)
    assert_clean_error(invoke(runner, "train", "--data", synthetic_data, "--out", tmp_path / "m.npy", *FAST, "-q"),
                       "out of memory creating a 20-16-3 network; try a smaller network")
    monkeypatch.setattr(common, "load_dataset", out_of_memory)
    line = assert_clean_error(invoke(runner, "eval", trained[1], "--data", synthetic_data))
    assert line == ("Error: out of memory (Unable to allocate 3.00 GiB for an array with shape (50000, 16000) "
                    "and data type float32)")
    assert not (tmp_path / "m.npy").exists()


def test_nesterov_without_momentum_is_one_usage_line(runner, synthetic_data, tmp_path):
    result = invoke(runner, "train", "--data", synthetic_data, "--sizes", "20,8,3", "--epochs", 1, "--nesterov",
                    "--momentum", 0, "--out", tmp_path / "m.npy")
    assert_clean_error(result, "Nesterov momentum needs a momentum above 0", exit_code=2)
    assert not (tmp_path / "m.npy").exists()
