"""Per-layer learning speed (Nielsen ch. 5): recorded norms against MLP.gradients, the history
JSON, `bptrain info`, and the speed plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bptrain.core.errors import BptrainError
from bptrain.data.loader import validate_splits
from bptrain.core.network import MLP, one_hot
from bptrain import TrainSettings, train
from bptrain.app.history import format_speed_table, speed_columns
from bptrain.core.learning_speed import INITIAL_BATCH, SAMPLES_PER_EPOCH, batch_speed
from bptrain.core.epoch_steps import EpochSteps
from bptrain.fast.engine import FastEngine

from conftest import assert_clean_error, invoke, make_blobs, run_fast_epoch, write_py2_pickle


def norms(model, x, y):
    grad_w, grad_b = model.gradients(x, y)
    return [np.linalg.norm(g) for g in grad_b], [np.linalg.norm(g) for g in grad_w]


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("lr", [1.0, 0.03])
def test_recorded_norms_are_the_unscaled_gradient_norms(activation, lr):
    """The fast engine's deltas carry η; it divides it out: ‖∂C/∂b_l‖ as MLP.gradients computes it."""
    rng = np.random.default_rng(0)
    model = MLP((10, 8, 6, 3), "ce", dtype=np.float64, seed=1, activation=activation)
    engine = FastEngine(model, TrainSettings(momentum=0.0, weight_decay=0.0), 5)
    steps = EpochSteps(model, 1, 12, 5, lr)
    expected_b, expected_w = np.zeros(3), np.zeros(3)
    for batch in (5, 5, 2):
        x, y = rng.random((batch, 10)), rng.integers(0, 3, batch)
        b, w = norms(model, x, y)
        expected_b += np.array(b) / 3
        expected_w += np.array(w) / 3
        work = engine.network.workspace(batch)
        activations = engine.network.forward(x, work)
        deltas = engine.network.backward(activations, one_hot(y, 3, np.float64), work, lr)
        engine._record_speed(steps, activations, deltas, work, lr)
    grad_b, grad_w = steps.speed_means()
    np.testing.assert_allclose(grad_b, expected_b, rtol=1e-12)
    np.testing.assert_allclose(grad_w, expected_w, rtol=1e-12)
    assert EpochSteps(model, 2, 12, 5, lr).speed_means() == (None, None)  # a new epoch starts empty


def test_training_history_holds_the_initial_and_per_epoch_speeds():
    """Full-batch training: epoch 1's only step is at the initial parameters on the whole (shuffled) set,
    so its norms equal the initial ones, which are MLP.gradients on the first 1,000 (here all 600) images."""
    data = validate_splits(make_blobs(), "blobs")
    model = MLP((20, 12, 8, 3), dtype=np.float64, seed=0)
    expected_b, expected_w = norms(model, data.train.x[:INITIAL_BATCH].astype(np.float64),
                                   data.train.y[:INITIAL_BATCH])
    result = train(model, data, TrainSettings(lr=0.5, epochs=3, batch_size=600, schedule="constant"),
                   progress=False)
    assert result.initial_speed["batch"] == 600
    np.testing.assert_allclose(result.initial_speed["grad_b_norm"], expected_b, rtol=1e-12)
    np.testing.assert_allclose(result.initial_speed["grad_w_norm"], expected_w, rtol=1e-12)
    first = result.history[0]
    np.testing.assert_allclose(first.grad_b_norm, expected_b, rtol=1e-10)
    np.testing.assert_allclose(first.grad_w_norm, expected_w, rtol=1e-10)
    assert all(len(r.grad_b_norm) == len(r.grad_w_norm) == 3 for r in result.history)
    assert result.history[1].grad_b_norm != first.grad_b_norm  # later epochs: later parameters
    # after epoch k, on the fixed batch (here the whole set) = epoch k+1's only step, at the same parameters
    for before, after in zip(result.history, result.history[1:]):
        np.testing.assert_allclose(before.fixed_grad_b_norm, after.grad_b_norm, rtol=1e-10)
        np.testing.assert_allclose(before.fixed_grad_w_norm, after.grad_w_norm, rtol=1e-10)


def test_sampling_is_bounded_per_epoch():
    """Many small batches: at most samples_per_epoch steps are recorded per epoch, and at least half that."""
    data = validate_splits(make_blobs(n_train=3000), "blobs")
    model = MLP((20, 8, 3), seed=0)
    counts = []
    x, y = data.train.x, one_hot(data.train.y, 3)
    for batch_size in (1, 7, 3000):
        counts.append(run_fast_epoch(model, x, y, batch_size)[1].samples)
    assert counts[0] <= SAMPLES_PER_EPOCH and counts[1] <= SAMPLES_PER_EPOCH
    assert counts[0] >= SAMPLES_PER_EPOCH // 2 and counts[2] == 1


def test_initial_speed_of_a_deep_sigmoid_network_falls_towards_the_input():
    """Nielsen's observation on a small scale: each hidden layer learns more slowly than the next."""
    rng = np.random.default_rng(0)
    x, y = rng.random((500, 40)), rng.integers(0, 5, 500)
    speed = batch_speed(MLP((40, 20, 20, 20, 20, 5), dtype=np.float64, seed=0), x, y)["grad_b_norm"]
    hidden = speed[:-1]
    assert all(a < b for a, b in zip(hidden, hidden[1:]))
    assert hidden[-1] / hidden[0] > 10


# ====================================================================== reading the history
def history_with_speed():
    return {"epochs": [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 0.5,
                        "grad_b_norm": [0.01, 0.1, 0.5], "grad_w_norm": [0.02, 0.2, 0.6],
                        "fixed_grad_b_norm": [0.004, 0.06, 0.3], "fixed_grad_w_norm": [0.01, 0.1, 0.5]},
                       {"epoch": 2, "train_loss": 0.9, "val_loss": 0.9, "val_accuracy": 0.6,
                        "grad_b_norm": [0.02, 0.1, 0.4], "grad_w_norm": [0.03, 0.2, 0.5],
                        "fixed_grad_b_norm": [0.005, 0.05, 0.2], "fixed_grad_w_norm": [0.02, 0.1, 0.4]}],
            "initial": {"batch": 1000, "grad_b_norm": [0.001, 0.05, 0.3], "grad_w_norm": [0.004, 0.1, 0.4]}}


def test_speed_table_text():
    table = format_speed_table(history_with_speed())
    lines = table.splitlines()
    assert "layer 1" in lines[0] and "layer 3 (out)" in lines[0]
    assert lines[1].split() == ["initial", "1000", "images", "1.000e-03", "5.000e-02", "3.000e-01"]
    assert lines[2].split() == ["1", "1000", "images", "4.000e-03", "6.000e-02", "3.000e-01"]
    assert lines[3].split() == ["1", "mini-batches", "1.000e-02", "1.000e-01", "5.000e-01"]
    assert [line.split()[0] for line in lines[4:6]] == ["2", "2"]
    assert "50x as fast as the first" in lines[-1] and "1000 images" in lines[-1]


def test_histories_without_speed_have_no_table():
    history = history_with_speed()
    for record in history["epochs"]:
        del record["grad_b_norm"], record["grad_w_norm"], record["fixed_grad_b_norm"], record["fixed_grad_w_norm"]
    del history["initial"]
    assert speed_columns(history) is None and format_speed_table(history) is None


@pytest.mark.parametrize("change", [
    lambda h: h["epochs"][0].update(grad_b_norm="fast"),
    lambda h: h["epochs"][1].update(grad_b_norm=[0.1, 0.2]),
    lambda h: h["initial"].update(grad_w_norm=[True, 1, 2]),
])
def test_bad_speed_entries_are_clear_errors(change):
    history = history_with_speed()
    change(history)
    with pytest.raises(BptrainError, match="history"):
        speed_columns(history, source="the history")


def test_plot_speed(tmp_path):
    pytest.importorskip("matplotlib")
    from bptrain.app.plot import plot_speed

    out = plot_speed(history_with_speed(), tmp_path / "speed.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ====================================================================== CLI
def test_info_prints_the_speeds_when_the_history_is_next_to_the_model(runner, tmp_path):
    data = write_py2_pickle(tmp_path / "d.pkl.gz", make_blobs())
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", data, "--out", out, "--sizes", "20,8,8,3", "--epochs", 2,
                    "--batch-size", 16, "-q")
    assert result.exit_code == 0, result.output
    history = json.loads(out.with_name("m.history.json").read_text())
    assert len(history["initial"]["grad_b_norm"]) == 3 and history["initial"]["batch"] == 600
    assert all(len(e["grad_b_norm"]) == len(e["fixed_grad_b_norm"]) == 3 for e in history["epochs"])

    info = invoke(runner, "info", out)
    assert info.exit_code == 0, info.output
    assert "(sigmoid hidden, softmax output)" in info.stdout
    assert "learning speed per layer" in info.stdout
    row = next(line for line in info.stdout.splitlines() if line.split()[:1] == ["initial"])
    assert [float(v) for v in row.split()[3:]] == pytest.approx(history["initial"]["grad_b_norm"], rel=1e-3)

    out.with_name("m.history.json").unlink()
    info = invoke(runner, "info", out)
    assert info.exit_code == 0 and "learning speed" not in info.stdout


def test_info_with_a_broken_history_is_one_clean_error(runner, tmp_path):
    data = write_py2_pickle(tmp_path / "d.pkl.gz", make_blobs())
    out = tmp_path / "m.npy"
    assert invoke(runner, "train", "--data", data, "--out", out, "--sizes", "20,8,3", "--epochs", 1, "-q").exit_code == 0
    history = out.with_name("m.history.json")
    document = json.loads(history.read_text())
    document["initial"]["grad_b_norm"] = "slow"
    history.write_text(json.dumps(document))
    assert_clean_error(invoke(runner, "info", out), "grad_b_norm")


# ============================================================ docs/learning-speed.md's claim, on the real MNIST
def test_deep_sigmoid_first_layer_learns_far_more_slowly_and_relu_closes_the_gap(real_mnist_path):
    """docs/learning-speed.md: on the first 1,000 real training images, the first
    hidden layer of 784-30-30-30-30-10 learns at least 10x more slowly than the last with sigmoid units
    (default init), and within 2x with relu (He init). Skipped without the real data."""
    from bptrain.data.loader import load_dataset

    train = load_dataset(real_mnist_path).train
    x, y = train.x[:INITIAL_BATCH], train.y[:INITIAL_BATCH]
    ratios = {}
    for activation in ("sigmoid", "relu"):
        speed = batch_speed(MLP((784, 30, 30, 30, 30, 10), activation=activation, seed=0), x, y)["grad_b_norm"]
        ratios[activation] = speed[-2] / speed[0]  # last hidden / first hidden
    assert ratios["sigmoid"] > 10
    assert 0.5 < ratios["relu"] < 2
