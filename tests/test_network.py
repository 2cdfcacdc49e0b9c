"""The network and its training step, checked against the math rather than against itself.

- backward against central differences of a loss computed here, independently (float64, < 1e-6);
- forward, and whole training runs through ``train`` (plain SGD, momentum, Nesterov, weight decay;
  batch 1, a partial last batch, full batch) against a plain allocating NumPy reference written
  straight from the README's math section and the SGD docstring (float64, identical to ~1e-12);
- dtypes, shapes, schedules, a stable sigmoid, and that training really learns.
"""

from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import pytest

from bptrain.data.loader import validate_splits
from bptrain.core.network import MLP, initial_parameters, sigmoid
from bptrain.core.schedules import SCHEDULES, learning_rate
from bptrain.fast.network import FastNetwork
from bptrain.fast.network import sigmoid as fast_sigmoid
from bptrain.fast.optimizers import SGD
from bptrain import TrainSettings, train

from conftest import make_blobs

LOSSES = ("ce", "mse")


# ====================================================================== a plain reference
def ref_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def ref_forward(weights, biases, x, loss):
    """[A_0, ..., A_L]: sigmoid everywhere, softmax output for "ce"."""
    activations = [np.asarray(x, np.float64)]
    for l, (w, b) in enumerate(zip(weights, biases)):
        z = activations[-1] @ w + b
        if l == len(weights) - 1 and loss == "ce":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            activations.append(e / e.sum(axis=1, keepdims=True))
        else:
            activations.append(ref_sigmoid(z))
    return activations


def ref_loss(weights, biases, x, y, loss):
    """Batch-mean loss: ce = mean of -log softmax(z)[label]; mse = mean of 0.5 ||a - onehot||²."""
    if loss == "ce":
        a = ref_forward(weights[:-1], biases[:-1], x, "mse")[-1]  # hidden layers only
        z = a @ weights[-1] + biases[-1]
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-np.mean(log_p[np.arange(len(y)), y]))
    a = ref_forward(weights, biases, x, loss)[-1]
    target = np.eye(a.shape[1])[y]
    return float(np.mean(0.5 * np.sum((a - target) ** 2, axis=1)))


def ref_backward(weights, activations, y, loss):
    """(∂C/∂W_l, ∂C/∂b_l) of the batch-mean loss, the math section line by line."""
    batch = len(y)
    target = np.eye(activations[-1].shape[1])[y]
    a_out = activations[-1]
    delta = (a_out - target) / batch
    if loss == "mse":
        delta = delta * a_out * (1 - a_out)
    grad_w, grad_b = [None] * len(weights), [None] * len(weights)
    for l in range(len(weights) - 1, -1, -1):
        grad_w[l] = activations[l].T @ delta
        grad_b[l] = delta.sum(axis=0)
        if l > 0:
            delta = (delta @ weights[l].T) * activations[l] * (1 - activations[l])
    return grad_w, grad_b


class RefSGD:
    """The update optim.SGD documents, with fresh arrays every step:

        step = η g (+ η λ W for weights only);  v = μ v + step;
        classical W -= v;  Nesterov W -= step + μ v;  no momentum W -= step.
    """

    def __init__(self, n_layers, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.vw = [0.0] * n_layers
        self.vb = [0.0] * n_layers

    def step(self, weights, biases, grad_w, grad_b, lr):
        new_w, new_b = [], []
        for l, (w, b, gw, gb) in enumerate(zip(weights, biases, grad_w, grad_b)):
            step_w = lr * gw + lr * self.weight_decay * w
            step_b = lr * gb
            if self.momentum:
                self.vw[l] = self.momentum * self.vw[l] + step_w
                self.vb[l] = self.momentum * self.vb[l] + step_b
                if self.nesterov:
                    step_w = step_w + self.momentum * self.vw[l]
                    step_b = step_b + self.momentum * self.vb[l]
                else:
                    step_w, step_b = self.vw[l], self.vb[l]
            new_w.append(w - step_w)
            new_b.append(b - step_b)
        return new_w, new_b


def assert_params_close(model, weights, biases, rtol=1e-12, atol=1e-12):
    for l, (w, b) in enumerate(zip(weights, biases), 1):
        np.testing.assert_allclose(model.weights[l - 1], w, rtol=rtol, atol=atol, err_msg=f"W{l}")
        np.testing.assert_allclose(model.biases[l - 1], b, rtol=rtol, atol=atol, err_msg=f"b{l}")


def small_problem(n=30, n_features=6, n_classes=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, n_features))
    y = rng.integers(0, n_classes, size=n)
    k = min(n, n_classes)
    y[:k] = np.arange(k)  # every class present when there is room
    return x, y


# ====================================================================== gradient check
def relative_error(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("sizes", [(5, 3), (6, 4, 3), (7, 5, 4, 3)], ids=lambda s: "-".join(map(str, s)))
def test_gradient_matches_central_differences(loss, sizes):
    rng = np.random.default_rng(42)
    batch = 4
    x = rng.normal(0, 1, size=(batch, sizes[0]))
    y = rng.integers(0, sizes[-1], size=batch)
    # standard-normal weights and biases: large enough gradients everywhere, biases non-zero
    model = MLP(sizes, loss, dtype=np.float64, init="normal", seed=3)
    grad_w, grad_b = model.gradients(x, y)

    eps = 1e-5
    params = [("W", l, w) for l, w in enumerate(model.weights)] + [("b", l, b) for l, b in enumerate(model.biases)]
    for kind, l, array in params:
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + eps
            plus = ref_loss(model.weights, model.biases, x, y, loss)
            array[index] = saved - eps
            minus = ref_loss(model.weights, model.biases, x, y, loss)
            array[index] = saved
            numeric[index] = (plus - minus) / (2 * eps)
        analytic = (grad_w if kind == "W" else grad_b)[l]
        assert analytic.shape == array.shape
        assert np.abs(numeric).max() > 1e-6, f"{kind}{l + 1}: gradient too small to check"
        err = relative_error(analytic, numeric)
        assert err < 1e-6, f"{loss} {sizes}: {kind}{l + 1} relative error {err:.2e}"


def test_gradient_check_would_catch_a_wrong_gradient():
    """The same check flags a gradient that is off by a factor: the tolerance is meaningful."""
    x, y = small_problem(n=4, n_features=5)
    model = MLP((5, 4, 3), "mse", dtype=np.float64, init="normal", seed=3)
    grad_w, _ = model.gradients(x, y)
    assert relative_error(grad_w[0], 1.01 * grad_w[0]) > 1e-6


@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_do_not_change_the_parameters(loss):
    x, y = small_problem()
    model = MLP((6, 5, 3), loss, dtype=np.float64, seed=0)
    before = [w.copy() for w in model.weights + model.biases]
    model.gradients(x, y)
    for a, b in zip(before, model.weights + model.biases):
        assert np.array_equal(a, b)


# ====================================================================== forward
@pytest.mark.parametrize("sizes", [(784, 10), (20, 16, 3), (5, 4, 3, 2)], ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("batch", [1, 7, 32])
@pytest.mark.parametrize("loss", LOSSES)
def test_forward_shapes_and_ranges(sizes, batch, loss):
    model = MLP(sizes, loss, seed=0)
    x = np.random.default_rng(0).uniform(0, 1, size=(batch, sizes[0])).astype(np.float32)
    _, activations = model.forward(x)
    assert len(activations) == len(sizes)
    assert [a.shape for a in activations] == [(batch, n) for n in sizes]
    out = activations[-1]
    assert out.dtype == np.float32
    assert np.all((out > 0) & (out < 1))
    if loss == "ce":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert model.predict(x).shape == (batch,)
    assert model.predict_proba(x).shape == (batch, sizes[-1])


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("batch", [1, 5, 30])
def test_forward_matches_reference(loss, batch):
    x, _ = small_problem(n=batch)
    model = MLP((6, 5, 4, 3), loss, dtype=np.float64, init="normal", seed=7)
    _, got = model.forward(x)
    want = ref_forward(model.weights, model.biases, x, loss)
    for l, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15, err_msg=f"A_{l}")


@pytest.mark.parametrize("loss", LOSSES)
def test_evaluate_and_predict_proba_match_reference_in_any_chunking(loss):
    x, y = small_problem(n=30)
    model = MLP((6, 5, 3), loss, dtype=np.float64, init="normal", seed=2)
    want_proba = ref_forward(model.weights, model.biases, x, loss)[-1]
    want_loss = ref_loss(model.weights, model.biases, x, y, loss)
    for chunk in (1, 7, 30, 1000):  # 7 leaves a partial last chunk
        mean_loss, predictions = model.evaluate(x, y, chunk=chunk)
        assert mean_loss == pytest.approx(want_loss, rel=1e-12)
        assert np.array_equal(predictions, want_proba.argmax(axis=1))
        np.testing.assert_allclose(model.predict_proba(x, chunk=chunk), want_proba, rtol=1e-13, atol=1e-15)


# ====================================================================== the optimizer
OPTIMIZERS = {
    "plain": dict(),
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "decay": dict(weight_decay=0.01),
    "momentum+decay": dict(momentum=0.9, weight_decay=0.01),  # `bptrain train`'s kind of settings
    "all": dict(momentum=0.8, nesterov=True, weight_decay=0.05),
}


def test_reference_sgd_by_hand():
    """The reference update (which the library is compared with below) on numbers worked out by hand."""
    w, b, lr = [np.ones((1, 1))], [np.ones(1)], 0.1
    gw, gb = [np.full((1, 1), 5.0)], [np.full(1, 5.0)]

    new_w, new_b = RefSGD(1, weight_decay=0.1).step(w, b, gw, gb, lr)
    np.testing.assert_allclose(new_w[0], 1 - (0.5 + 0.1 * 0.1 * 1))  # decay on weights ...
    np.testing.assert_allclose(new_b[0], 1 - 0.5)                    # ... but not on biases

    ref = RefSGD(1, momentum=0.5)
    w1, b1 = ref.step(w, b, gw, gb, lr)        # v = 0.5
    w2, b2 = ref.step(w1, b1, gw, gb, lr)      # v = 0.5 * 0.5 + 0.5 = 0.75
    np.testing.assert_allclose(w2[0], 1 - 0.5 - 0.75)

    ref = RefSGD(1, momentum=0.5, nesterov=True)
    w1, b1 = ref.step(w, b, gw, gb, lr)        # v = 0.5;  W -= 0.5 + 0.25
    w2, b2 = ref.step(w1, b1, gw, gb, lr)      # v = 0.75; W -= 0.5 + 0.375
    np.testing.assert_allclose(w2[0], 1 - 0.75 - 0.875)
    np.testing.assert_allclose(b2[0], 1 - 0.75 - 0.875)


@pytest.mark.parametrize("threads", [(1, 1, 1), (2, 2, 2), (1, 2, 1)], ids=["one-thread", "split", "switching"])
@pytest.mark.parametrize("path", ["blas", "numpy"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=str)
def test_sgd_steps_match_the_reference_step_by_step(monkeypatch, path, opt, threads):
    """optim.SGD's fused update against the plain float64 RefSGD after every step: full batches that are
    new slices of one buffer (as in training), a partial and a one-row batch, hidden layers wider than the
    batch (column-major), and the learning rate changing between "epochs"; with the bundled BLAS and with
    the NumPy fallback; and in both forms of momentum (s = μv with one rotm for one BLAS thread, v with
    gemm and axpy for several: SGD.prepare), also switching between them from one "epoch" to the next."""
    from bptrain.fast import blas
    from bptrain.core.network import one_hot

    if path == "blas" and not blas.available():
        pytest.skip("no bundled OpenBLAS found: only the NumPy path exists here")
    if path == "numpy":
        monkeypatch.setattr(blas, "_ROUTINES", None)
    sizes, loss = (9, 12, 7, 3), "ce"
    x, y = small_problem(n=15, n_features=9, seed=6)
    model = MLP(sizes, loss, dtype=np.float64, seed=8)
    network = FastNetwork(model)
    optimizer = SGD(model.weights, model.biases, **OPTIMIZERS[opt])
    reference = RefSGD(len(sizes) - 1, **OPTIMIZERS[opt])
    weights, biases = [w.copy() for w in model.weights], [b.copy() for b in model.biases]
    targets = one_hot(y, sizes[-1], np.float64)
    batches = [(0, 4), (4, 8), (8, 12), (12, 14), (14, 15)]  # four rows, then a partial batch and a one-row batch
    with np.errstate(over="ignore", under="ignore"):
        for lr, epoch_threads in zip((0.5, 0.3, 0.1), threads):
            optimizer.prepare(epoch_threads > 1)
            assert optimizer.split == (epoch_threads > 1 and bool(optimizer.momentum))
            for start, stop in batches:
                work = network.workspace(stop - start)
                activations = network.forward(x[start:stop], work)
                deltas = network.backward(activations, targets[start:stop], work, lr)
                optimizer.step(activations, deltas, work, lr)
                grad_w, grad_b = ref_backward(weights, ref_forward(weights, biases, x[start:stop], loss),
                                              y[start:stop], loss)
                weights, biases = reference.step(weights, biases, grad_w, grad_b, lr)
                assert_params_close(model, weights, biases, rtol=1e-10, atol=1e-12)
                for got, want in zip(optimizer.velocities(), reference.vw + reference.vb):
                    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-10, atol=1e-12)
    assert not np.allclose(weights[0], initial_parameters(sizes, "xavier", 8)[0][0])  # it did learn something


@pytest.mark.parametrize("kwargs", [dict(momentum=1.0), dict(momentum=-0.1), dict(nesterov=True),
                                    dict(weight_decay=-1e-3)], ids=str)
def test_sgd_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        SGD([np.ones(2)], [np.ones(2)], **kwargs)


# ====================================================================== the training loop
def as_dataset(x, y, n_val=12):
    xv, yv = small_problem(n=n_val, n_features=x.shape[1], seed=99)
    return validate_splits(((x, y), (xv, yv), (xv, yv)))


def reference_training(model_seed, data, settings, loss, sizes):
    """What train() must do: each epoch, shuffle with np.random.default_rng(settings.seed).permutation(n)
    (as train() draws it; if its shuffle changes, change it here too), take batches in that order with
    a last partial batch, and end with the parameters of the best validation accuracy (strictly better)."""
    weights, biases = initial_parameters(sizes, "xavier", model_seed)
    x = data.train.x.astype(np.float64)
    y = data.train.y
    rng = np.random.default_rng(settings.seed)
    opt = RefSGD(len(weights), settings.momentum, settings.nesterov, settings.weight_decay)
    best, best_acc, losses = (weights, biases), -1.0, []
    for epoch in range(settings.epochs):
        lr = learning_rate(settings.schedule, settings.lr, epoch, settings.epochs, settings.step_size,
                           settings.gamma, settings.min_lr)
        order = rng.permutation(len(x))
        xs, ys = x[order], y[order]
        total = 0.0
        for start in range(0, len(x), settings.batch_size):
            xb, yb = xs[start:start + settings.batch_size], ys[start:start + settings.batch_size]
            activations = ref_forward(weights, biases, xb, loss)
            total += len(yb) * ref_loss(weights, biases, xb, yb, loss)
            gw, gb = ref_backward(weights, activations, yb, loss)
            weights, biases = opt.step(weights, biases, gw, gb, lr)
        losses.append(total / len(x))
        predictions = ref_forward(weights, biases, data.validation.x.astype(np.float64), loss)[-1].argmax(axis=1)
        accuracy = float(np.mean(predictions == data.validation.y))
        if accuracy > best_acc:
            best, best_acc = (weights, biases), accuracy
    return best, losses


@pytest.mark.parametrize("sizes", [(6, 5, 3), (6, 5, 4, 3)], ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=str)
@pytest.mark.parametrize("batch_size", [1, 7, 30])
def test_train_matches_reference(loss, opt, batch_size, sizes):
    """float64, identical to ~1e-12: batch 1, batch 7 (30 = 4 x 7 + a partial batch of 2), full batch."""
    x, y = small_problem(n=30)
    data = as_dataset(x, y)
    settings = TrainSettings(lr=0.5, epochs=3, batch_size=batch_size, seed=5, **OPTIMIZERS[opt])
    model = MLP(sizes, loss, dtype=np.float64, seed=4)
    result = train(model, data, settings, progress=False)
    (weights, biases), losses = reference_training(4, data, settings, loss, sizes)
    assert_params_close(model, weights, biases)
    assert [r.train_loss for r in result.history] == pytest.approx(losses, rel=1e-12)
    assert [r.epoch for r in result.history] == [1, 2, 3]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_loss_over_groups_of_batches_matches_reference(monkeypatch, loss, batch_size):
    """The training loss is computed once per group of batches from kept outputs; groups of several
    batches, and a last group ending in a partial batch, must give the reference's per-batch sum."""
    monkeypatch.setattr(importlib.import_module("bptrain.core.epoch_steps"), "UPDATES_PER_EPOCH", 2)
    x, y = small_problem(n=30)
    data = as_dataset(x, y)
    settings = TrainSettings(lr=0.5, epochs=2, batch_size=batch_size, seed=5)
    model = MLP((6, 5, 3), loss, dtype=np.float64, seed=4)
    result = train(model, data, settings, progress=False)
    (weights, biases), losses = reference_training(4, data, settings, loss, (6, 5, 3))
    assert_params_close(model, weights, biases)
    assert [r.train_loss for r in result.history] == pytest.approx(losses, rel=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("opt", ["plain", "all"])
@pytest.mark.parametrize("batch_size", [1, 7, 30])
def test_train_float32_follows_the_reference(loss, opt, batch_size):
    """The float32 path (its own BLAS routines) tracks the float64 reference to float32 precision."""
    x, y = small_problem(n=30)
    data = as_dataset(x, y)
    sizes = (6, 5, 4, 3)
    settings = TrainSettings(lr=0.5, epochs=1, batch_size=batch_size, seed=5, **OPTIMIZERS[opt])
    model = MLP(sizes, loss, dtype=np.float32, seed=4)
    train(model, data, settings, progress=False)
    (weights, biases), _ = reference_training(4, data, settings, loss, sizes)
    assert_params_close(model, weights, biases, rtol=2e-4, atol=2e-5)


def test_train_full_batch_matches_reference_whatever_the_shuffle():
    """With one batch per epoch the order of samples cannot matter (up to rounding)."""
    x, y = small_problem(n=30)
    data = as_dataset(x, y)
    settings = TrainSettings(lr=1.0, epochs=4, batch_size=30, seed=123, momentum=0.9)
    model = MLP((6, 5, 3), "ce", dtype=np.float64, seed=4)
    train(model, data, settings, progress=False)
    (weights, biases), _ = reference_training(4, data, settings, "ce", (6, 5, 3))
    assert_params_close(model, weights, biases, rtol=1e-10, atol=1e-12)


def test_train_step_schedule_changes_lr_per_epoch():
    x, y = small_problem(n=30)
    data = as_dataset(x, y)
    settings = TrainSettings(lr=0.8, epochs=3, batch_size=7, seed=1, schedule="step", step_size=1, gamma=0.5)
    model = MLP((6, 5, 3), "mse", dtype=np.float64, seed=4)
    result = train(model, data, settings, progress=False)
    assert [r.lr for r in result.history] == pytest.approx([0.8, 0.4, 0.2])
    (weights, biases), _ = reference_training(4, data, settings, "mse", (6, 5, 3))
    assert_params_close(model, weights, biases)


def test_batch_size_larger_than_training_set_is_one_batch():
    x, y = small_problem(n=30)
    data = as_dataset(x, y)
    a = MLP((6, 5, 3), "ce", dtype=np.float64, seed=4)
    b = MLP((6, 5, 3), "ce", dtype=np.float64, seed=4)
    train(a, data, TrainSettings(lr=0.5, epochs=2, batch_size=1000, seed=0), progress=False)
    train(b, data, TrainSettings(lr=0.5, epochs=2, batch_size=30, seed=0), progress=False)
    assert_params_close(a, b.weights, b.biases, rtol=0, atol=0)


def test_same_seed_same_parameters_other_seed_different(blobs):
    data = validate_splits(blobs)
    runs = []
    for seed in (0, 0, 1):
        model = MLP((20, 8, 3), "ce", seed=seed)
        train(model, data, TrainSettings(lr=0.5, epochs=2, batch_size=16, seed=seed), progress=False)
        runs.append(model)
    for w0, w1 in zip(runs[0].weights + runs[0].biases, runs[1].weights + runs[1].biases):
        assert np.array_equal(w0, w1)
    assert not np.array_equal(runs[0].weights[0], runs[2].weights[0])


@pytest.mark.parametrize("loss", LOSSES)
def test_training_learns_the_synthetic_set(blobs, loss):
    data = validate_splits(blobs)
    model = MLP((20, 16, 3), loss, seed=0)
    before, _ = model.evaluate(*data.test)
    result = train(model, data, TrainSettings(lr=2.0 if loss == "mse" else 0.5, epochs=8, batch_size=16),
                   progress=False)
    after, predictions = model.evaluate(*data.test)
    accuracy = float(np.mean(predictions == data.test.y))
    assert accuracy > 0.9, f"test accuracy {accuracy:.3f} (chance is 1/3)"
    assert after < before
    assert result.best_val_accuracy > 0.9
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_float32_and_float64_of_a_trained_model_agree():
    data = validate_splits(make_blobs(n_train=600, n_test=600, spread=0.25, seed=3))
    model64 = MLP((20, 16, 3), "ce", dtype=np.float64, seed=0)
    train(model64, data, TrainSettings(lr=0.5, epochs=3, batch_size=16), progress=False)
    model32 = model64.astype(np.float32)
    assert all(w.dtype == np.float32 for w in model32.weights + model32.biases)
    for x, _ in (data.train, data.test):
        p64, p32 = model64.predict(x), model32.predict(x)
        assert np.mean(p64 == p32) >= 0.99
    np.testing.assert_allclose(model32.predict_proba(data.test.x), model64.predict_proba(data.test.x), atol=1e-5)


def test_float32_and_float64_training_reach_the_same_accuracy(blobs):
    data = validate_splits(blobs)
    accuracies = []
    for dtype in (np.float32, np.float64):
        model = MLP((20, 16, 3), "ce", dtype=dtype, seed=0)
        train(model, data, TrainSettings(lr=0.5, epochs=4, batch_size=16), progress=False)
        assert all(w.dtype == dtype for w in model.weights + model.biases)
        accuracies.append(float(np.mean(model.predict(data.test.x) == data.test.y)))
    assert min(accuracies) > 0.9
    assert abs(accuracies[0] - accuracies[1]) <= 0.02


# ====================================================================== dtypes and construction
def test_default_dtype_is_float32_and_float64_on_request():
    assert all(p.dtype == np.float32 for p in MLP((4, 3, 2)).weights + MLP((4, 3, 2)).biases)
    model = MLP((4, 3, 2), dtype=np.float64)
    assert all(p.dtype == np.float64 for p in model.weights + model.biases)
    # float64 input to a float32 model, and the other way round
    x = np.random.default_rng(0).uniform(size=(5, 4))
    assert MLP((4, 3, 2)).predict_proba(x).dtype == np.float32
    assert model.predict_proba(x.astype(np.float32)).dtype == np.float64
    assert model.n_parameters == 4 * 3 + 3 + 3 * 2 + 2


def test_same_seed_same_initial_parameters_in_every_dtype():
    a, b = MLP((5, 4, 3), seed=9), MLP((5, 4, 3), seed=9, dtype=np.float64)
    for p, q in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(p, q.astype(np.float32))
    assert not np.array_equal(MLP((5, 4, 3), seed=10).weights[0], a.weights[0])


def test_xavier_init_bounds_and_normal_init():
    model = MLP((100, 50, 10), init="xavier", seed=0)
    limit = math.sqrt(6 / 150)
    assert np.abs(model.weights[0]).max() <= limit
    assert np.abs(model.weights[0]).max() > 0.9 * limit
    assert all(np.all(b == 0) for b in model.biases)
    normal = MLP((100, 50, 10), init="normal", seed=0, dtype=np.float64)
    assert 0.9 < normal.weights[0].std() < 1.1
    assert np.all(normal.biases[0] != 0)


@pytest.mark.parametrize("kwargs", [dict(sizes=(5,)), dict(sizes=(5, 0, 3)), dict(sizes=(5, 3), loss="hinge"),
                                    dict(sizes=(5, 3), init="zeros"),
                                    dict(sizes=(5, 3), weights=[np.zeros((3, 5))], biases=[np.zeros(3)])],
                         ids=["one-size", "zero-width", "bad-loss", "bad-init", "bad-shapes"])
def test_mlp_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        MLP(**kwargs)


# ====================================================================== sigmoid
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_at_extremes(dtype):
    z = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out = sigmoid(z.copy())
            in_place = z.copy()
            fast_sigmoid(in_place, out=in_place)
    assert out.dtype == dtype
    assert out[0] == 0.0 and out[-1] == 1.0 and out[2] == 0.5
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(in_place, out)


def test_forward_with_huge_pre_activations_warns_nothing():
    model = MLP((2, 3, 2), "mse", dtype=np.float64, weights=[np.full((2, 3), 1000.0), np.full((3, 2), -1000.0)],
                biases=[np.zeros(3), np.zeros(2)])
    x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            _, out = model.forward(x)
    np.testing.assert_array_equal(out[1], [[1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(out[2], [[0, 0], [0.5, 0.5]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_raises_no_floating_point_flag_at_all(dtype):
    z = np.array([-1000.0, 1000.0], dtype)
    with np.errstate(all="raise"):
        out = sigmoid(z)
    np.testing.assert_allclose(out, [0.0, 1.0], atol=1e-30)


# ====================================================================== learning-rate schedules
def test_constant_schedule():
    assert [learning_rate("constant", 0.3, e, 10) for e in range(10)] == [0.3] * 10


def test_step_schedule():
    lrs = [learning_rate("step", 1.0, e, 30, step_size=10, gamma=0.1) for e in range(30)]
    assert lrs[:10] == [1.0] * 10
    assert lrs[10:20] == pytest.approx([0.1] * 10)
    assert lrs[20:] == pytest.approx([0.01] * 10)


def test_cosine_schedule():
    epochs = 10
    lrs = [learning_rate("cosine", 1.0, e, epochs, min_lr=0.1) for e in range(epochs)]
    assert lrs[0] == 1.0
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] > 0.1  # the last epoch still takes a real step ...
    assert learning_rate("cosine", 1.0, epochs, epochs, min_lr=0.1) == pytest.approx(0.1)  # ... min_lr after it
    assert learning_rate("cosine", 1.0, epochs // 2, epochs, min_lr=0.1) == pytest.approx(0.55)


def test_unknown_schedule():
    assert set(SCHEDULES) == {"constant", "step", "cosine"}
    with pytest.raises(ValueError):
        learning_rate("linear", 0.1, 0, 10)
