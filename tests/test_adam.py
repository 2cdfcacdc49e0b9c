"""Adam against a plain reference written here from Kingma & Ba (2015), step by step, in float64.

The optimizer gets what training gives it, deltas times η, and keeps rescaled moments
(optim.Adam's docstring); the reference gets the true gradient and keeps m and v as in
the paper. They must agree to rounding over several steps, with a learning rate that
changes in between (as a schedule does), with and without decoupled weight decay.
"""

from __future__ import annotations

import numpy as np
import pytest

from bptrain.fast import blas
from bptrain.core.network import MLP, one_hot
from bptrain.core.optimizers import DEFAULT_LR, make_optimizer
from bptrain.fast.network import FastNetwork
from bptrain.fast.optimizers import SGD, Adam
from bptrain.core.training import TrainSettings

from conftest import fast_train_step


class RefAdam:
    """Algorithm 1 of Kingma & Ba, plus AdamW's θ ← θ − ηλθ on weights; fresh arrays every step."""

    def __init__(self, params, beta1, beta2, eps, weight_decay, decayed):
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.decayed = decayed  # which params are weights
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params, grads, lr):
        self.t += 1
        new = []
        for k, (p, g) in enumerate(zip(params, grads)):
            self.m[k] = self.beta1 * self.m[k] + (1 - self.beta1) * g
            self.v[k] = self.beta2 * self.v[k] + (1 - self.beta2) * g * g
            m_hat = self.m[k] / (1 - self.beta1 ** self.t)
            v_hat = self.v[k] / (1 - self.beta2 ** self.t)
            if self.decayed[k]:
                p = p - lr * self.weight_decay * p
            new.append(p - lr * m_hat / (np.sqrt(v_hat) + self.eps))
        return new


@pytest.mark.parametrize("blas_path", [True, False], ids=["openblas-axpby", "numpy"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("eps", [1e-8, 1e-3])  # 1e-3: ε matters, so its scaling with η is checked too
def test_adam_matches_the_reference_step_by_step(monkeypatch, weight_decay, eps, blas_path):
    if not blas_path:
        monkeypatch.setattr(blas, "_ROUTINES", None)  # the element-wise updates fall back to NumPy
    rng = np.random.default_rng(0)
    sizes = (6, 5, 4, 3)
    model = MLP(sizes, "ce", dtype=np.float64, seed=1)
    network = FastNetwork(model)
    params = [p.copy() for pair in zip(model.weights, model.biases) for p in pair]  # W1, b1, W2, ...
    adam = Adam(model.weights, model.biases, beta1=0.8, beta2=0.95, eps=eps, weight_decay=weight_decay)
    reference = RefAdam(params, 0.8, 0.95, eps, weight_decay, decayed=[k % 2 == 0 for k in range(len(params))])
    schedule = [0.01, 0.01, 0.01, 0.004, 0.004, 0.02, 0.02, 0.001]  # η changes as under a schedule
    batches = [7, 7, 1, 7, 3, 7, 7, 5]
    for lr, batch in zip(schedule, batches):
        x = rng.random((batch, sizes[0]))
        y = rng.integers(0, sizes[-1], batch)
        reference_model = MLP(sizes, "ce", dtype=np.float64, weights=params[0::2], biases=params[1::2])
        grad_w, grad_b = reference_model.gradients(x, y)
        params = reference.step(params, [g for pair in zip(grad_w, grad_b) for g in pair], lr)

        activations, deltas, work = fast_train_step(network, x, one_hot(y, sizes[-1], np.float64), lr)
        adam.step(activations, deltas, work, lr)
        for k, p in enumerate(params):
            got = (model.weights if k % 2 == 0 else model.biases)[k // 2]
            np.testing.assert_allclose(got, p, rtol=1e-10, atol=1e-13, err_msg=f"param {k}, step {reference.t}")
    moved = max(np.abs(w - w0).max() for w, w0 in zip(model.weights, MLP(sizes, dtype=np.float64, seed=1).weights))
    assert moved > 1e-3  # the steps were real


def test_adam_first_step_is_lr_times_the_sign_of_the_gradient():
    """With bias correction, step 1 is −η g/(|g| + ε): about η per parameter, whatever the gradient's size."""
    rng = np.random.default_rng(3)
    model = MLP((5, 4, 3), "mse", dtype=np.float64, seed=2)
    network = FastNetwork(model)
    before = [w.copy() for w in model.weights]
    x, y = rng.random((4, 5)), rng.integers(0, 3, 4)
    grad_w, _ = model.gradients(x, y)
    activations, deltas, work = fast_train_step(network, x, one_hot(y, 3, np.float64), 0.01)
    Adam(model.weights, model.biases, eps=1e-12).step(activations, deltas, work, 0.01)
    for w, w0, g in zip(model.weights, before, grad_w):
        np.testing.assert_allclose(w, w0 - 0.01 * np.sign(g), rtol=0, atol=1e-9)


@pytest.mark.parametrize("kwargs, message", [({"beta1": 1.0}, "beta1"), ({"beta2": -0.1}, "beta2"),
                                              ({"eps": 0.0}, "eps"), ({"weight_decay": -1}, "weight decay")])
def test_adam_rejects_bad_settings(kwargs, message):
    model = MLP((3, 2))
    with pytest.raises(ValueError, match=message):
        Adam(model.weights, model.biases, **kwargs)


def test_make_optimizer_and_default_learning_rates():
    model = MLP((3, 2))
    assert isinstance(make_optimizer(TrainSettings(), model.weights, model.biases, sgd=SGD, adam=Adam), SGD)
    adam = make_optimizer(TrainSettings(optimizer="adam", beta1=0.5, eps=1e-6, weight_decay=0.01),
                          model.weights, model.biases, sgd=SGD, adam=Adam)
    assert isinstance(adam, Adam) and (adam.beta1, adam.beta2, adam.eps, adam.weight_decay) == (0.5, 0.999, 1e-6, 0.01)
    assert TrainSettings().lr == DEFAULT_LR["sgd"] == 0.1
    assert TrainSettings(optimizer="adam").lr == DEFAULT_LR["adam"] == 0.001
    assert TrainSettings(optimizer="adam", lr=0.01).lr == 0.01
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainSettings(optimizer="adagrad")


def test_adam_trains_the_synthetic_set(blobs):
    from bptrain.data.loader import validate_splits
    from bptrain import train

    data = validate_splits(blobs, "blobs")
    model = MLP((20, 16, 3), seed=0)
    train(model, data, TrainSettings(optimizer="adam", lr=0.01, epochs=4, batch_size=16), progress=False)
    assert np.mean(model.predict(data.test.x) == data.test.y) > 0.95


def test_a_learning_rate_of_zero_changes_nothing(blobs):
    """A step schedule can decay η to (nearly) 0: the η-scaled deltas then underflow and carry no gradient,
    so neither Adam nor the speed recorder may divide by η; the parameters stay put and training finishes."""
    from bptrain.data.loader import validate_splits
    from bptrain import train

    data = validate_splits(blobs, "blobs")
    model = MLP((20, 8, 3), seed=0)
    result = train(model, data, TrainSettings(optimizer="adam", lr=0.01, epochs=3, batch_size=64, schedule="step",
                                              step_size=1, gamma=1e-300), progress=False)
    assert [r.lr for r in result.history][1:] == [0.01 * 1e-300, 0.0]
    assert result.history[1].grad_b_norm is None and result.history[1].fixed_grad_b_norm is not None
    assert all(np.isfinite(w).all() for w in model.weights)
