"""`bptrain train --workbook`: the learner's forward, backward and sgd_step train a normal model, equal to the
reference engine's with plain SGD, and settings the workbook cannot do are refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bptrain.app.commands import train as train_module
from bptrain.core.network import MLP
from bptrain.data.model_io import load_model
from conftest import assert_clean_error, invoke
from test_checkpoints import StopAfter

SOLVED = (Path(__file__).parent / "workbook_solved.py").read_text()
#: The solved workbook without its optional momentum_step: it trains with plain SGD.
PLAIN = SOLVED[:SOLVED.index("def momentum_step")] + SOLVED[SOLVED.index("def rel_error"):]
SMALL = ("--sizes", "20,8,6,3", "--epochs", "2", "--batch-size", "16", "--seed", "3", "--dtype", "float64", "-q")


@pytest.fixture
def solved(tmp_path) -> Path:
    folder = tmp_path / "wb"
    folder.mkdir()
    path = folder / "backprop.py"
    path.write_text(PLAIN)
    return path


def test_a_solved_workbook_ends_with_the_reference_engines_weights(runner, tmp_path, synthetic_data, solved):
    mine, theirs = tmp_path / "mine.npy", tmp_path / "ref.npy"
    result = invoke(runner, "train", "--workbook", solved, "--data", synthetic_data, *SMALL, "--out", mine)
    assert result.exit_code == 0, result.output
    result = invoke(runner, "train", "--engine", "reference", "--momentum", "0", "--weight-decay", "0",
                    "--data", synthetic_data, *SMALL, "--out", theirs)
    assert result.exit_code == 0, result.output
    (model, meta), (reference, _) = load_model(mine), load_model(theirs)
    assert meta["settings"]["momentum"] == 0 and meta["settings"]["weight_decay"] == 0
    start = MLP((20, 8, 6, 3), dtype=np.float64, seed=3)
    for a, b, a0 in zip(model.weights + model.biases, reference.weights + reference.biases,
                        start.weights + start.biases):
        assert np.max(np.abs(a - b)) <= 1e-9 * np.max(np.abs(b))
        assert np.max(np.abs(a - a0)) > 1e-3  # it trained
    evaluated = invoke(runner, "eval", mine, "--data", synthetic_data)
    assert evaluated.exit_code == 0, evaluated.output


def test_the_first_line_says_it_trains_with_the_workbook(runner, tmp_path, synthetic_data, solved):
    result = invoke(runner, "train", "--workbook", solved, "--data", synthetic_data, "--sizes", "20,8,3",
                    "--epochs", "1", "--out", tmp_path / "m.npy")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith(f"training with your workbook {solved}")


@pytest.mark.parametrize("args, phrase", [
    (("--momentum", "0.9"), "--momentum 0.9 is more than --workbook can do"),
    (("--optimizer", "adam"), "--optimizer adam is more than --workbook can do"),
    (("--loss", "mse"), "--loss mse is more than --workbook can do"),
    (("--activation", "relu"), "--activation relu"),
    (("--weight-decay", "0.001"), "--weight-decay"),
    (("--nesterov",), "--nesterov is more than"),
    (("--engine", "fast"), "drop --engine"),
])
def test_settings_the_workbook_cannot_do_are_refused_in_one_line(runner, tmp_path, synthetic_data, solved, args,
                                                                 phrase):
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--workbook", solved, "--data", synthetic_data, "--sizes", "20,8,3", *args,
                    "--out", out)
    assert_clean_error(result, phrase)
    assert not out.exists()


def test_a_failing_workbook_is_refused_naming_its_first_failing_exercise(runner, tmp_path, synthetic_data, solved):
    solved.write_text(PLAIN.replace("return (A_L - Y) / len(Y)", "return A_L - Y"))
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--workbook", solved, "--data", synthetic_data, "--sizes", "20,8,3",
                    "--out", out)
    line = assert_clean_error(result, "output_delta failed (no-batch-average)")
    assert "does not pass its check" in line and not out.exists()


def test_a_fresh_workbook_is_refused(runner, tmp_path, synthetic_data):
    assert invoke(runner, "exercises", "start", tmp_path / "wb").exit_code == 0
    result = invoke(runner, "train", "--workbook", tmp_path / "wb" / "backprop.py", "--data", synthetic_data,
                    "--out", tmp_path / "m.npy")
    assert_clean_error(result, "sigmoid not done yet")


def test_the_workbook_is_an_input_never_an_output(runner, tmp_path, synthetic_data, solved):
    result = invoke(runner, "train", "--workbook", solved, "--data", synthetic_data, "--sizes", "20,8,3",
                    "--out", solved)
    assert_clean_error(result)
    assert solved.read_text() == PLAIN


def test_a_stopped_workbook_run_continues_exactly_with_the_reference_engine(runner, tmp_path, synthetic_data, solved,
                                                                          monkeypatch):
    whole, stopped = tmp_path / "whole.npy", tmp_path / "stopped.npy"
    args = ("--data", synthetic_data, "--sizes", "20,8,3", "--epochs", "3", "--dtype", "float64", "-q")
    assert invoke(runner, "train", "--workbook", solved, *args, "--out", whole).exit_code == 0
    real = train_module.train
    monkeypatch.setattr(train_module, "train", lambda *a, callbacks=(), **k: real(*a, callbacks=[*callbacks,
                                                                                                   StopAfter(1)], **k))
    result = invoke(runner, "train", "--workbook", solved, *args, "--out", stopped)
    assert result.exit_code == 130, result.output
    monkeypatch.setattr(train_module, "train", real)
    resumed = invoke(runner, "train", "--resume", tmp_path / "stopped.checkpoint.npz", "-q")
    assert resumed.exit_code == 0, resumed.output
    a, b = load_model(whole)[0], load_model(stopped)[0]
    for x, y in zip(a.weights + a.biases, b.weights + b.biases):
        assert np.max(np.abs(x - y)) <= 1e-9 * np.max(np.abs(y))


@pytest.mark.parametrize("momentum", [None, "0.5"])
def test_a_workbook_with_momentum_step_trains_with_momentum_as_the_reference_does(runner, tmp_path, synthetic_data,
                                                                                 solved, momentum):
    solved.write_text(SOLVED)
    mine, theirs = tmp_path / "mine.npy", tmp_path / "ref.npy"
    given = ("--momentum", momentum) if momentum else ()
    result = invoke(runner, "train", "--workbook", solved, "--data", synthetic_data, *SMALL, *given, "--out", mine)
    assert result.exit_code == 0, result.output
    result = invoke(runner, "train", "--engine", "reference", "--momentum", momentum or "0.9", "--weight-decay", "0",
                    "--data", synthetic_data, *SMALL, "--out", theirs)
    assert result.exit_code == 0, result.output
    (model, meta), (reference, _) = load_model(mine), load_model(theirs)
    assert meta["settings"]["momentum"] == float(momentum or 0.9) and meta["settings"]["weight_decay"] == 0
    for a, b in zip(model.weights + model.biases, reference.weights + reference.biases):
        assert np.max(np.abs(a - b)) <= 1e-9 * np.max(np.abs(b))


def test_a_failing_momentum_step_leaves_plain_sgd_and_refuses_momentum(runner, tmp_path, synthetic_data, solved):
    solved.write_text(SOLVED.replace("return [W - v for W, v in zip(Ws, vWs)]", "return [W + v for W, v in zip(Ws, vWs)]"))
    out = tmp_path / "m.npy"
    args = ("--data", synthetic_data, "--sizes", "20,8,3", "--epochs", "1", "--out", out)
    refused = invoke(runner, "train", "--workbook", solved, *args, "--momentum", "0.9")
    assert_clean_error(refused, "its momentum_step, once it passes, would add momentum")
    result = invoke(runner, "train", "--workbook", solved, *args)
    assert result.exit_code == 0, result.output
    assert "sgd_step (plain SGD)" in result.stdout.splitlines()[0]
    assert load_model(out)[1]["settings"]["momentum"] == 0
