"""Hidden activations (sigmoid, tanh, relu), their initialisations, and model files that record them.

- backward against central differences of a loss computed here, independently, for every
  activation x loss x depth (float64, < 1e-6), away from relu's kink;
- the same check fails (> 1e-2) when a plausible wrong derivative is swapped in: it can catch one;
- forward against a plain reference, in the column-major workspace layers too (batch < width);
- inits: auto follows the unit, he / scaled-normal have the documented spread;
- model files: the activation round-trips; a file in today's layout without "activation" loads as
  sigmoid and evaluates unchanged; non-sigmoid files carry format version 2 so older readers refuse them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bptrain.core.errors import ModelFileError
from bptrain.data.model_io import FORMAT_NAME, load_model, model_record, save_model
from bptrain.core.network import ACTIVATIONS, HIDDEN_UNITS, MLP, default_init, initial_parameters
from bptrain.fast.network import HIDDEN_ACTIVATIONS, FastNetwork

LOSSES = ("ce", "mse")
DEPTHS = [(6, 5, 3), (6, 5, 4, 3), (7, 5, 4, 4, 3)]  # 1, 2 and 3 hidden layers

REFERENCE_UNITS = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
}


def ref_pre_activations(weights, biases, x, activation):
    """[Z_1, ..., Z_L] with the reference units (no softmax/sigmoid at the output)."""
    f = REFERENCE_UNITS[activation]
    a, zs = np.asarray(x, np.float64), []
    for l, (w, b) in enumerate(zip(weights, biases)):
        z = a @ w + b
        zs.append(z)
        a = f(z) if l < len(weights) - 1 else None
    return zs


def ref_loss(weights, biases, x, y, loss, activation):
    """Batch-mean loss: ce = −log softmax(Z_L)[label]; mse = ½‖σ(Z_L) − onehot‖²."""
    z = ref_pre_activations(weights, biases, x, activation)[-1]
    if loss == "ce":
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-np.mean(log_p[np.arange(len(y)), y]))
    a = 1.0 / (1.0 + np.exp(-z))
    return float(np.mean(0.5 * np.sum((a - np.eye(a.shape[1])[y]) ** 2, axis=1)))


def numeric_gradients(model, x, y, eps=1e-6):
    """Central differences of :func:`ref_loss` for every entry of every W and b (perturbed in place)."""
    result = []
    for array in model.weights + model.biases:
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + eps
            plus = ref_loss(model.weights, model.biases, x, y, model.loss, model.activation)
            array[index] = saved - eps
            minus = ref_loss(model.weights, model.biases, x, y, model.loss, model.activation)
            array[index] = saved
            numeric[index] = (plus - minus) / (2 * eps)
        result.append(numeric)
    return result


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def worst_error(model, x, y):
    """The largest relative error, over all W and b, between backprop and central differences."""
    grad_w, grad_b = model.gradients(x, y)
    numeric = numeric_gradients(model, x, y)
    return max(relative_error(g, n) for g, n in zip(grad_w + grad_b, numeric))


def problem(sizes, activation, loss, batch=4, seed=0):
    """A float64 network and batch with every hidden pre-activation at least 1e-3 from relu's kink.

    Normal init (biases non-zero, weights large) keeps gradients well above rounding in every layer.
    Central differences move a pre-activation by at most ~1e-5 here, so a 1e-3 margin keeps every
    relu unit on one side of 0 throughout the check.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, size=(batch, sizes[0]))
    y = rng.integers(0, sizes[-1], size=batch)
    for attempt in range(50):
        model = MLP(sizes, loss, dtype=np.float64, init="normal", seed=seed * 100 + attempt, activation=activation)
        zs = ref_pre_activations(model.weights, model.biases, x, activation)[:-1]
        if min(np.abs(z).min() for z in zs) > 1e-3:
            return model, x, y
    raise AssertionError("no seed keeps the pre-activations away from 0")


# ====================================================================== gradient check
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("sizes", DEPTHS, ids=lambda s: "-".join(map(str, s)))
def test_gradient_matches_central_differences(activation, loss, sizes):
    model, x, y = problem(sizes, activation, loss)
    if activation == "relu":  # the check means something only if some units are on and some off
        zs = ref_pre_activations(model.weights, model.biases, x, activation)[:-1]
        assert all((z > 0).any() and (z < 0).any() for z in zs)
    grad_w, grad_b = model.gradients(x, y)
    for g, n in zip(grad_w + grad_b, numeric_gradients(model, x, y)):
        assert np.abs(n).max() > 1e-6, "gradient too small to check"
        assert relative_error(g, n) < 1e-6


WRONG_DERIVATIVES = {
    # σ'(z) applied to the output: σ(a)(1 − σ(a)) instead of a(1 − a), the classic slip
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)) * (1.0 - 1.0 / (1.0 + np.exp(-a))),
    # 1 − a instead of 1 − a²
    "tanh": lambda a: 1.0 - a,
    # the mask forgotten: slope 1 everywhere
    "relu": lambda a: np.ones_like(a),
}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_check_catches_a_wrong_derivative(monkeypatch, activation):
    model, x, y = problem((6, 5, 4, 3), activation, "ce", batch=6, seed=2)
    assert worst_error(model, x, y) < 1e-6
    f = HIDDEN_UNITS[activation][0]
    monkeypatch.setitem(HIDDEN_UNITS, activation, (f, WRONG_DERIVATIVES[activation]))
    assert worst_error(model, x, y) > 1e-2


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_derivatives_from_the_output_match_the_unit(activation):
    """f'(z) from a = f(z), against a central difference of f itself: the core's, and the fast engine's
    in-place form (in both dtypes)."""
    z = np.linspace(-6, 6, 101)
    z = z[np.abs(z) > 1e-3]  # relu's kink
    numeric = (REFERENCE_UNITS[activation](z + 1e-6) - REFERENCE_UNITS[activation](z - 1e-6)) / 2e-6
    f, derivative = HIDDEN_UNITS[activation]
    np.testing.assert_allclose(derivative(f(z)), numeric, rtol=1e-6, atol=1e-9)
    f, derivative = HIDDEN_ACTIVATIONS[activation]
    a = f(z.copy(), None)
    np.testing.assert_allclose(derivative(a, np.empty_like(a)), numeric, rtol=1e-6, atol=1e-9)
    z32 = z.astype(np.float32)
    assert f(z32, z32) is z32  # in place


# ====================================================================== forward
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("batch", [1, 3, 40])  # 3 < 16: the hidden layers are stored column-major
def test_forward_matches_reference(activation, loss, batch):
    sizes = (12, 16, 16, 4)
    model = MLP(sizes, loss, dtype=np.float64, seed=1, activation=activation)
    x = np.random.default_rng(0).random((batch, sizes[0]))
    zs = ref_pre_activations(model.weights, model.biases, x, activation)
    z = zs[-1]
    expected = (np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
                if loss == "ce" else 1 / (1 + np.exp(-z)))
    network = FastNetwork(model)
    for activations in (model.forward(x)[1], network.forward(x, network.workspace(batch))):  # core, fast
        for l, z in enumerate(zs[:-1]):
            np.testing.assert_allclose(activations[l + 1], REFERENCE_UNITS[activation](z), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(activations[-1], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_learns_the_synthetic_set(blobs, activation):
    from bptrain.data.loader import validate_splits
    from bptrain import TrainSettings, train

    data = validate_splits(blobs, "blobs")
    model = MLP((20, 16, 3), activation=activation, seed=0)
    train(model, data, TrainSettings(lr=0.3, epochs=5, batch_size=16), progress=False)
    assert np.mean(model.predict(data.test.x) == data.test.y) > 0.95


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP((4, 3, 2), activation="softplus")


# ====================================================================== initialisation
def test_auto_init_follows_the_unit():
    assert default_init("sigmoid") == default_init("tanh") == "xavier" and default_init("relu") == "he"
    for activation in ACTIVATIONS:
        auto = initial_parameters((50, 40, 3), "auto", 7, activation)
        explicit = initial_parameters((50, 40, 3), default_init(activation), 7)
        for a, b in zip(auto[0] + auto[1], explicit[0] + explicit[1]):
            assert np.array_equal(a, b)


def test_default_sigmoid_network_starts_where_it_always_did():
    """Sigmoid + auto is Glorot-uniform with zero biases, drawn exactly as before this change."""
    rng = np.random.default_rng(3)
    limit = np.sqrt(6.0 / (30 + 20))
    expected = rng.uniform(-limit, limit, size=(30, 20))
    assert np.array_equal(MLP((30, 20, 5), seed=3).weights[0], expected.astype(np.float32))


def test_he_and_scaled_normal_spread():
    weights, biases = initial_parameters((2000, 500, 10), "he", 0)
    assert abs(weights[0].std() - np.sqrt(2 / 2000)) < 0.02 * np.sqrt(2 / 2000)
    assert not biases[0].any()
    weights, biases = initial_parameters((2000, 500, 10), "scaled-normal", 0)
    assert abs(weights[0].std() - np.sqrt(1 / 2000)) < 0.02 * np.sqrt(1 / 2000)
    assert abs(biases[0].std() - 1) < 0.15


# ====================================================================== model files
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_round_trips(tmp_path, activation):
    model = MLP((8, 6, 5, 3), seed=2, activation=activation)
    path = save_model(model, tmp_path / "m.npy")
    loaded, meta = load_model(path)
    assert loaded.activation == meta["activation"] == activation
    assert meta["format_version"] == (1 if activation == "sigmoid" else 2)
    x = np.random.default_rng(0).random((9, 8), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_non_sigmoid_models_are_refused_by_a_reader_of_version_1(tmp_path):
    """bptrain before activations existed refused any format_version above 1 ("upgrade bptrain"):
    a relu or tanh file must be above 1, or that reader would run it as sigmoid."""
    for activation in ("tanh", "relu"):
        meta = json.loads(bytes(model_record(MLP((4, 3, 2), activation=activation))["meta"]))
        assert meta["format_version"] > 1


def old_record(model) -> np.ndarray:
    """A model record in the layout written before this change: no "activation", format version 1."""
    meta = {"format": FORMAT_NAME, "format_version": 1, "sizes": list(model.sizes), "loss": model.loss,
            "dtype": model.dtype.name, "init": "xavier", "settings": {"lr": 0.1}}
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    fields = []
    for l, (w, b) in enumerate(zip(model.weights, model.biases), 1):
        fields += [(f"W{l}", w.dtype.str, w.shape), (f"b{l}", b.dtype.str, b.shape)]
    record = np.zeros((), dtype=np.dtype(fields + [("meta", f"S{len(meta_bytes)}")]))
    for l, (w, b) in enumerate(zip(model.weights, model.biases), 1):
        record[f"W{l}"], record[f"b{l}"] = w, b
    record["meta"] = meta_bytes
    return record


@pytest.mark.parametrize("loss", LOSSES)
def test_old_model_files_load_as_sigmoid_and_evaluate_unchanged(tmp_path, blobs, loss):
    model = MLP((20, 16, 8, 3), loss, seed=4)
    path = tmp_path / "old.npy"
    np.save(path, old_record(model), allow_pickle=False)
    loaded, meta = load_model(path)
    assert loaded.activation == meta["activation"] == "sigmoid"
    x, y = blobs[2]
    expected_loss, expected_predictions = model.evaluate(x, y)
    got_loss, got_predictions = loaded.evaluate(x, y)
    assert got_loss == expected_loss
    assert np.array_equal(got_predictions, expected_predictions)


def test_unknown_activation_in_a_model_file(tmp_path):
    record = model_record(MLP((4, 3, 2)))
    meta = json.loads(bytes(record["meta"]))
    meta["activation"] = "swish"
    meta_bytes = json.dumps(meta).encode()
    fields = [(n, record.dtype[n]) for n in record.dtype.names if n != "meta"] + [("meta", f"S{len(meta_bytes)}")]
    changed = np.zeros((), np.dtype(fields))
    for name in record.dtype.names:
        if name != "meta":
            changed[name] = record[name]
    changed["meta"] = meta_bytes
    path = tmp_path / "m.npy"
    np.save(path, changed, allow_pickle=False)
    with pytest.raises(ModelFileError, match="unknown hidden activation 'swish'"):
        load_model(path)
