"""The two engines: the readable core and the fast engine compute the same training.

- step by step in float64, for every loss, hidden unit and optimizer (and both forms the fast
  momentum takes), the parameters after each step agree to ~1e-12;
- whole float32 runs of the defaults agree to rounding (two epochs of the real MNIST: within 0.15
  points of test accuracy and 1e-2 in every weight; skipped without the data);
- the two are independent: the fast engine's steps never call the core's forward, backward or
  updates, and the reference engine trains in a process where the fast package cannot be imported;
- imports run one way: app -> engines -> fast -> data -> core.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bptrain import MLP, TrainSettings, train
from bptrain.core import optimizers as core_optimizers
from bptrain.core.network import one_hot
from bptrain.core.training import Callbacks
from bptrain.data.loader import validate_splits
from bptrain.fast import threads

from conftest import make_blobs, run_fast_epoch

PACKAGE = Path(__file__).resolve().parent.parent / "bptrain"

OPTIMIZERS = {
    "plain": dict(momentum=0.0, weight_decay=0.0),
    "momentum+decay": dict(momentum=0.9, weight_decay=0.01),
    "nesterov+decay": dict(momentum=0.8, nesterov=True, weight_decay=0.05),
    "adam": dict(optimizer="adam", lr=0.01, weight_decay=0.0),
    "adamw": dict(optimizer="adam", lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.05),
}


class EveryStep(Callbacks):
    """Copies of the parameters after each group of steps (one step per group, see below)."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def progress(self, epoch, batches_done, running_loss):
        self.seen.append([p.copy() for p in self.model.weights + self.model.biases])


def run(engine, sizes, loss, activation, settings, data, dtype=np.float64):
    model = MLP(sizes, loss, dtype=dtype, seed=3, activation=activation, init="normal" if activation == "relu"
                else "auto")
    steps = EveryStep(model)
    result = train(model, data, settings, engine=engine, progress=False, callbacks=[steps])
    return model, steps.seen, result


@pytest.fixture
def small_data():
    return validate_splits(make_blobs(n_train=120, n_validation=40, n_test=40, n_features=12), "blobs")


@pytest.mark.parametrize("threads_form", ["one-thread", "split"])
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_every_step_of_the_fast_engine_matches_the_reference_in_float64(monkeypatch, small_data, loss, activation,
                                                                         opt, threads_form):
    """A batch that does not divide the set (a partial last batch), shifts off, two epochs under a
    schedule; one step per progress group, so each step's parameters are compared."""
    monkeypatch.setattr(importlib.import_module("bptrain.core.epoch_steps"), "UPDATES_PER_EPOCH", 10**6)
    if threads_form == "split":  # momentum's several-thread form (v, gemm + axpy) whatever the step size
        monkeypatch.setattr(threads, "ONE_THREAD_BELOW", {"gemm": 0, "gemm+axpy": 0, "ufuncs": 0})
    settings = TrainSettings(epochs=2, batch_size=16, schedule="step", step_size=1, gamma=0.5, seed=1,
                             **{"lr": 0.3, **OPTIMIZERS[opt]})
    sizes = (12, 9, 7, 3)
    reference, ref_steps, ref_result = run("reference", sizes, loss, activation, settings, small_data)
    fast, fast_steps, fast_result = run("fast", sizes, loss, activation, settings, small_data)
    assert len(ref_steps) == len(fast_steps) == 2 * 8  # 120 rows in batches of 16: 7 full and 1 partial
    for step, (want, got) in enumerate(zip(ref_steps, fast_steps)):
        for k, (w, g) in enumerate(zip(want, got)):
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12, err_msg=f"step {step + 1}, parameter {k}")
    for r, f in zip(ref_result.history, fast_result.history):
        assert f.train_loss == pytest.approx(r.train_loss, rel=1e-11)
        assert f.val_loss == pytest.approx(r.val_loss, rel=1e-11)
        assert f.val_accuracy == r.val_accuracy
        np.testing.assert_allclose(f.grad_b_norm, r.grad_b_norm, rtol=1e-10)
        np.testing.assert_allclose(f.fixed_grad_w_norm, r.fixed_grad_w_norm, rtol=1e-10)
    assert not np.allclose(ref_steps[0][0], ref_steps[-1][0])  # the parameters did move


def test_whole_float32_runs_of_the_defaults_agree_to_rounding(small_data):
    settings = TrainSettings(epochs=3, batch_size=8)
    reference, _, ref_result = run("reference", (12, 16, 8, 3), "ce", "sigmoid", settings, small_data, np.float32)
    fast, _, fast_result = run("fast", (12, 16, 8, 3), "ce", "sigmoid", settings, small_data, np.float32)
    for w_ref, w_fast in zip(reference.weights + reference.biases, fast.weights + fast.biases):
        np.testing.assert_allclose(w_fast, w_ref, rtol=1e-4, atol=1e-5)
    assert [r.val_accuracy for r in fast_result.history] == [r.val_accuracy for r in ref_result.history]


def test_two_float32_epochs_of_the_defaults_on_mnist_agree(real_mnist_path):
    from bptrain.data.loader import load_dataset

    data = load_dataset(real_mnist_path)
    models = {}
    for engine in ("reference", "fast"):
        model = MLP((784, 128, 64, 10), seed=0)
        train(model, data, TrainSettings(epochs=2, augment=1), engine=engine, progress=False)
        models[engine] = model
    accuracy = {name: float(np.mean(m.predict(data.test.x) == data.test.y)) for name, m in models.items()}
    assert abs(accuracy["fast"] - accuracy["reference"]) <= 0.0015
    for w_ref, w_fast in zip(models["reference"].weights + models["reference"].biases,
                             models["fast"].weights + models["fast"].biases):
        assert np.abs(w_fast - w_ref).max() <= 1e-2


def test_the_fast_steps_never_call_the_core_forward_backward_or_updates(monkeypatch):
    """Two implementations, so that their agreement means something."""
    def refuse(*args, **kwargs):
        raise AssertionError("the fast engine called the core")

    model = MLP((12, 9, 3), seed=0)
    for name in ("forward", "backward", "gradients", "loss_value", "evaluate"):
        monkeypatch.setattr(MLP, name, refuse)
    for cls in (core_optimizers.SGD, core_optimizers.Adam):
        monkeypatch.setattr(cls, "step", refuse)
    x = np.random.default_rng(0).random((40, 12))
    y = one_hot(np.arange(40) % 3, 3)
    for settings in ({}, {"momentum": 0.9, "weight_decay": 1e-3}, {"optimizer": "adam"}):
        engine, _, loss = run_fast_epoch(model, x.astype(np.float32), y, 8, **settings)
        assert np.isfinite(loss)
        engine.evaluate(x.astype(np.float32), np.arange(40) % 3)


def test_the_reference_engine_trains_where_the_fast_package_cannot_be_imported(synthetic_data, tmp_path):
    """`bptrain train --engine reference` in a process whose import of bptrain.fast fails."""
    code = f"""
import sys
class NoFast:
    def find_spec(self, name, path=None, target=None):
        if name == "bptrain.fast" or name.startswith("bptrain.fast."):
            raise ImportError("the fast engine is not available in this test")
sys.meta_path.insert(0, NoFast())
from bptrain.app.cli import main
sys.argv = ["bptrain", "train", "--engine", "reference", "--data", {str(synthetic_data)!r}, "--sizes", "20,8,3",
            "--epochs", "2", "--out", {str(tmp_path / 'm.npy')!r}, "--quiet"]
try:
    main()
except SystemExit as exit:
    assert not any(m.startswith("bptrain.fast") for m in sys.modules), "bptrain.fast was imported"
    raise
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.npy").is_file()
    evaluated = subprocess.run([sys.executable, "-m", "bptrain", "eval", str(tmp_path / "m.npy"), "--data",
                                str(synthetic_data), "--json"], capture_output=True, text=True, timeout=120)
    assert evaluated.returncode == 0, evaluated.stderr
    assert '"accuracy": ' in evaluated.stdout


def test_reference_engine_gives_the_same_model_file_through_the_cli(runner, synthetic_data, tmp_path):
    from conftest import invoke
    from bptrain.data.model_io import load_model

    for engine in ("reference", "fast"):
        result = invoke(runner, "train", "--engine", engine, "--data", synthetic_data, "--sizes", "20,8,3",
                        "--epochs", 2, "--dtype", "float64", "--out", tmp_path / f"{engine}.npy", "--quiet")
        assert result.exit_code == 0, result.output
    (ref, ref_meta), (fast, fast_meta) = load_model(tmp_path / "reference.npy"), load_model(tmp_path / "fast.npy")
    for a, b in zip(ref.weights + ref.biases, fast.weights + fast.biases):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    assert ref_meta["val_accuracy"] == fast_meta["val_accuracy"]


# ---------------------------------------------------------------- imports run one way
#: Each part of the package may import from its own layer and those below it, never above.
class ChangeByHand(Callbacks):
    """At batch 3 of epoch 1 set η and μ; keep η set by hand from then on (as the live page does)."""

    def __init__(self, lr, momentum):
        self.lr, self.momentum, self.applied = lr, momentum, False

    def control(self, steps):
        if not self.applied and steps.epoch == 1 and steps.batches_done >= 3:
            steps.set_lr(self.lr)
            steps.set_momentum(self.momentum)
            self.applied = True
        elif self.applied and steps.lr != self.lr:
            steps.set_lr(self.lr)


@pytest.mark.parametrize("threads_form", ["one-thread", "split"])
@pytest.mark.parametrize("opt", ["momentum+decay", "nesterov+decay", "adamw"])
def test_learning_rate_and_momentum_changed_mid_run_agree_and_are_recorded(monkeypatch, small_data, opt,
                                                                           threads_form):
    monkeypatch.setattr(importlib.import_module("bptrain.core.epoch_steps"), "UPDATES_PER_EPOCH", 10**6)
    if threads_form == "split":
        monkeypatch.setattr(threads, "ONE_THREAD_BELOW", {"gemm": 0, "gemm+axpy": 0, "ufuncs": 0})
    settings = TrainSettings(epochs=2, batch_size=16, seed=1, **{"lr": 0.3, **OPTIMIZERS[opt]})
    params = {}
    for engine in ("reference", "fast"):
        model = MLP((12, 9, 3), "ce", dtype=np.float64, seed=3)
        control = ChangeByHand(0.05, 0.5)
        result = train(model, small_data, settings, engine=engine, progress=False, callbacks=[control])
        params[engine] = model.weights + model.biases
        first, second = result.history
        assert first.controls == [{"batch": 3, "lr": 0.05}, {"batch": 3, "momentum": 0.5}]
        assert second.controls == [{"batch": 0, "lr": 0.05}] and second.lr == 0.05
    for a, b in zip(params["reference"], params["fast"]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_momentum_cannot_be_changed_in_a_run_without_it(small_data):
    model = MLP((12, 9, 3), seed=0)
    with pytest.raises(ValueError, match="no momentum to change"):
        train(model, small_data, TrainSettings(epochs=1, momentum=0.0), progress=False,
              callbacks=[ChangeByHand(0.1, 0.5)])


class Validations(Callbacks):
    """Keeps what the loop hands to validated(), and each epoch's record."""

    def __init__(self):
        self.seen, self.records = [], []

    def validated(self, epoch, predictions):
        self.seen.append((epoch, predictions.copy()))

    def epoch_ended(self, record, improved):
        self.records.append(record)


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_the_loop_hands_its_validation_predictions_to_the_callbacks(small_data, engine):
    hook = Validations()
    train(MLP((12, 9, 3), seed=0), small_data, TrainSettings(epochs=2, batch_size=16), engine=engine,
          progress=False, callbacks=[hook])
    _, labels = small_data.validation
    assert [epoch for epoch, _ in hook.seen] == [1, 2]
    for (_, predictions), record in zip(hook.seen, hook.records):  # the very predictions of the record's accuracy
        assert predictions.shape == labels.shape and np.mean(predictions == labels) == record.val_accuracy
