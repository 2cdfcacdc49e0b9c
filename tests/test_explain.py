"""`bptrain explain` and `POST /api/explain`: one digit through the forward and backward pass, with the numbers.

The numbers must be the trainer's own (the core's forward and backward pass), the gradients must match
central differences, one step must lower the loss, the terminal, --json and the endpoint must agree, and
every bad input is one clear line (CLI) or a 400 with a one-line JSON error (HTTP). Synthetic data and
untrained networks throughout; one optional test on the real MNIST.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from bptrain.app import explain as explain_module
from bptrain.app.explain import FULL_UP_TO, MAX_STEPS, explain
from bptrain.app.gradcheck import numerical_gradient, relative_error
from bptrain.core.network import ACTIVATIONS, LOSSES, MLP, one_hot
from bptrain.data.loader import validate_splits
from bptrain.data.model_io import load_model, save_model

from conftest import N_CLASSES, N_FEATURES, assert_clean_error, invoke, make_blobs
from digits import STROKES, draw_strokes
from test_server import drawing, error_of, images_module, png_bytes, post_json, request, running

SIZES = (N_FEATURES, 6, 5, N_CLASSES)
EVERY_UNIT = [(loss, activation) for loss in LOSSES for activation in ACTIVATIONS]


def ok(result):
    assert result.exit_code == 0, f"exit {result.exit_code}:\n{result.output}\n{result.stderr}\n{result.exception!r}"
    return result


def values(matrix: dict) -> np.ndarray:
    return np.array(matrix["values"], np.float64)


@pytest.fixture
def model_file(tmp_path):
    """A 20-6-5-3 model with a learning rate in its settings, as `bptrain train` records it."""
    def make(loss="ce", activation="sigmoid", lr=0.5, sizes=SIZES):
        path = tmp_path / f"{loss}-{activation}.npy"
        return save_model(MLP(sizes, loss, seed=2, activation=activation), path, {"settings": {"lr": lr}})
    return make


def explain_json(runner, *args) -> dict:
    return json.loads(ok(invoke(runner, "explain", *args, "--json")).stdout)


# ====================================================================== the numbers
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("loss, activation", EVERY_UNIT)
def test_the_gradients_match_central_differences(loss, activation, batch):
    """Every entry of every ∂C/∂W_l and ∂C/∂b_l explain reports, against (C(θ+ε) − C(θ−ε)) / 2ε in float64."""
    rng = np.random.default_rng(7)
    model = MLP(SIZES, loss, dtype=np.float64, seed=4, activation=activation)
    x, labels = rng.random((batch, SIZES[0])), rng.integers(0, SIZES[-1], batch)
    doc = explain(model, x, labels, lr=0.1)
    y = one_hot(labels, SIZES[-1], np.float64)
    zs, activations = model.forward(x)
    assert doc["loss"] == model.loss_value(zs[-1], activations[-1], y)
    for layer, W, b in zip(doc["layers"], model.weights, model.biases):
        for reported, param in ((layer["grad_W"], W), (layer["grad_b"], b)):
            assert reported["shape"] == list(param.shape)
            estimate = numerical_gradient(model, x, y, param, np.arange(param.size))
            assert relative_error(values(reported).reshape(-1), estimate) < 1e-6, (layer["l"], reported["shape"])


@pytest.mark.parametrize("loss, activation", EVERY_UNIT)
def test_the_numbers_are_the_cores_forward_and_backward_pass(loss, activation, monkeypatch):
    model = MLP(SIZES, loss, seed=5, activation=activation)           # float32, as models are saved
    x = np.random.default_rng(1).random((3, SIZES[0])).astype(np.float32)
    labels = np.array([0, 2, 1])
    calls = []
    for name in ("forward", "backward"):
        original = getattr(MLP, name)
        monkeypatch.setattr(MLP, name, lambda self, *a, _o=original, _n=name: calls.append(_n) or _o(self, *a))
    doc = explain(model, x, labels, lr=0.1)
    assert "forward" in calls and "backward" in calls
    monkeypatch.undo()
    reference = model.astype(np.float64)
    zs, activations = reference.forward(x.astype(np.float64))
    grads = reference.backward(activations, one_hot(labels, 3, np.float64))
    np.testing.assert_array_equal(values(doc["A_0"]), activations[0])
    for l, layer in enumerate(doc["layers"]):
        for name, expected in (("Z", zs[l]), ("A", activations[l + 1]), ("delta", grads.deltas[l]),
                               ("grad_W", grads.weights[l]), ("grad_b", grads.biases[l]),
                               ("W", reference.weights[l]), ("b", reference.biases[l])):
            np.testing.assert_array_equal(values(layer[name]), expected, err_msg=f"layer {l + 1} {name}")
            assert layer[name]["shape"] == list(expected.shape)
    assert doc["model"]["computed_in"] == "float64"
    np.testing.assert_array_equal(model.weights[0], MLP(SIZES, loss, seed=5, activation=activation).weights[0])


@pytest.mark.parametrize("loss, activation", EVERY_UNIT)
def test_each_hidden_delta_is_its_backprop_sum_times_f_prime_exactly(runner, model_file, synthetic_data, loss,
                                                                    activation):
    doc = explain_json(runner, model_file(loss, activation), "--index", 4, "--batch-size", 3, "--data", synthetic_data)
    layers = doc["layers"]
    for layer, above in zip(layers[:-1], layers[1:]):
        backprop_sum, f_prime, delta = values(layer["backprop_sum"]), values(layer["f_prime"]), values(layer["delta"])
        np.testing.assert_array_equal(delta, backprop_sum * f_prime)                 # Δ_l = (Δ_{l+1} W_{l+1}ᵀ) ⊙ f'
        np.testing.assert_allclose(backprop_sum, values(above["delta"]) @ values(above["W"]).T, rtol=1e-12, atol=1e-15)
        a = values(layer["A"])
        expected = {"sigmoid": a * (1 - a), "tanh": 1 - a * a, "relu": (a > 0).astype(float)}[activation]
        np.testing.assert_array_equal(f_prime, expected)                              # the derivative used
    out = layers[-1]
    error, a_out = values(doc["output"]["error"]), values(out["A"])
    if loss == "ce":
        assert out["f_prime"] is None and out["backprop_sum"] is None
        np.testing.assert_array_equal(values(out["delta"]), error / 3)                # Δ_L = (A_L − Y) / B
    else:
        np.testing.assert_array_equal(values(out["f_prime"]), a_out * (1 - a_out))
        np.testing.assert_allclose(values(out["delta"]), error * a_out * (1 - a_out) / 3, rtol=1e-14)
    np.testing.assert_allclose(values(out["grad_b"]), values(out["delta"]).sum(axis=0), rtol=1e-14)


@pytest.mark.parametrize("loss, activation", EVERY_UNIT)
def test_one_small_step_lowers_the_loss(loss, activation):
    model = MLP(SIZES, loss, seed=6, activation=activation)
    x = make_blobs()[2][0][:5]
    for labels in ([0, 1, 2, 0, 1], [2, 2, 2, 2, 2]):
        step = explain(model, x, labels, lr=0.05)["step"]
        assert step["loss_after"] < step["loss_before"]
        assert np.mean(step["p_label_after"]) > np.mean(step["p_label_before"])
    single = explain(model, x[:1], [1], lr=0.05)["step"]
    assert single["p_label_after"][0] > single["p_label_before"][0]


def test_steps_are_taken_on_a_copy_and_equal_steps_taken_by_hand():
    model = MLP(SIZES, "ce", seed=3)
    saved = copy.deepcopy(model.weights), copy.deepcopy(model.biases)
    x, labels = make_blobs()[2][0][:1], [1]
    after_two = explain(model, x, labels, lr=0.3, steps=2)
    for W, w in zip(model.weights, saved[0]):                         # the model itself never moves
        np.testing.assert_array_equal(W, w)
    by_hand = model.astype(np.float64)
    y = one_hot(labels, 3, np.float64)
    for _ in range(2):
        _, activations = by_hand.forward(x.astype(np.float64))
        grads = by_hand.backward(activations, y)
        for W, b, gw, gb in zip(by_hand.weights, by_hand.biases, grads.weights, grads.biases):
            W -= 0.3 * gw
            b -= 0.3 * gb
    again = explain(by_hand, x, labels, lr=0.3)
    assert after_two["steps_taken"] == 2 and again["steps_taken"] == 0
    assert after_two["loss"] == again["loss"] and after_two["layers"] == again["layers"]
    one = explain(model, x, labels, lr=0.3, steps=1)
    assert one["loss"] == pytest.approx(explain(model, x, labels, lr=0.3)["step"]["loss_after"], rel=1e-12)


def test_a_unit_shows_its_delta_formula_with_the_numbers():
    model = MLP(SIZES, "ce", seed=3, activation="tanh")
    x = make_blobs()[2][0][:1]
    doc = explain(model, x, [2], lr=0.1, unit=(1, 4))
    unit, layer = doc["unit"], doc["layers"][0]
    assert unit["delta"] == values(layer["delta"])[0, 4] == unit["backprop_sum"] * unit["f_prime"]
    assert unit["incoming_weights"] == model.weights[0][:, 4].astype(np.float64).tolist()
    assert unit["outgoing_weights"] == model.weights[1][4, :].astype(np.float64).tolist()
    assert unit["backprop_sum"] == pytest.approx(float(np.dot(unit["outgoing_weights"], values(doc["layers"][1]["delta"])[0])),
                                                 rel=1e-12)
    assert unit["formula"] == (f"δ_j = (Σ_k W_jk δ_k) · (1 − a_j²) = {unit['backprop_sum']:.4g} × "
                               f"{unit['f_prime']:.4g} = {unit['delta']:.4g}")
    out = explain(model, x, [2], lr=0.1, unit=(3, 2))["unit"]
    assert out["y"] == 1.0 and out["formula"].startswith("δ_j = (a_j − y_j) / B = (")
    assert out["delta"] == pytest.approx(out["a"] - 1)


def test_summaries_name_the_largest_entries():
    matrix = explain_module.summary(np.array([[0.1, -3.0, 2.0], [0.5, 0.0, 1.0]]), by="magnitude", k=2)
    assert matrix["shape"] == [2, 3] and matrix["min"] == -3.0 and matrix["max"] == 2.0
    assert matrix["top"] == [{"index": [0, 1], "value": -3.0}, {"index": [0, 2], "value": 2.0}]
    assert explain_module.summary(np.array([1.0, np.nan]))["values"] == [1.0, None]   # JSON has no NaN


# ====================================================================== the command
@pytest.mark.parametrize("loss, activation", EVERY_UNIT)
def test_the_terminal_shows_every_line_of_the_derivation(runner, model_file, synthetic_data, loss, activation):
    result = ok(invoke(runner, "explain", model_file(loss, activation), "--index", 0, "--data", synthetic_data))
    out = result.stdout
    f = {"sigmoid": "σ", "tanh": "tanh", "relu": "relu"}[activation]
    prime = {"sigmoid": "A_1 ⊙ (1 − A_1)", "tanh": "1 − A_1 ⊙ A_1", "relu": "[A_1 > 0]"}[activation]
    expected = ["test[0]", "B = 1 digit", "the true label", "A_0 = X", "(1, 20)", "W_1", "(20, 6)",
                "Z_1 = A_0 W_1 + b_1", f"A_1 = {f}(Z_1)", "Z_3 = A_2 W_3 + b_3", "A_3 − Y",
                "Δ_3 W_3ᵀ", f"f'(Z_1) = {prime}", f"Δ_1 = (Δ_2 W_2ᵀ) ⊙ {prime}", "∂C/∂W_1 = A_0ᵀ Δ_1", "(20, 6)",
                "∂C/∂b_1 = Σ_rows Δ_1", "(6,)", "largest |·|: j=", "loss C", "→",
                "η = 0.5 (the initial learning rate in the model's settings)"]
    expected.append("A_3 = softmax(Z_3)" if loss == "ce" else "A_3 = σ(Z_3)")
    expected.append("Δ_3 = (A_3 − Y) / B" if loss == "ce" else "Δ_3 = (A_3 − Y) ⊙ A_3 ⊙ (1 − A_3) / B")
    for needle in expected:
        assert needle in out, needle
    assert result.stderr == ""


def test_json_has_every_array_in_full_for_a_digit_and_summaries_beyond_64(runner, model_file, synthetic_data):
    path = model_file()
    single = explain_json(runner, path, "--index", 0, "--data", synthetic_data)
    assert single["arrays"] == "all" and single["batch_size"] == 1
    assert single["input"] == {"kind": "dataset", "split": "test", "index": 0, "data": str(synthetic_data)}
    assert single["labels"] == single["true_labels"] and single["label_rule"] == "true"
    assert np.shape(single["layers"][0]["W"]["values"]) == (20, 6)
    assert np.shape(single["layers"][0]["grad_W"]["values"]) == (20, 6)
    assert np.shape(single["layers"][1]["Z"]["values"]) == (1, 5)
    batch = explain_json(runner, path, "--index", 10, "--batch-size", FULL_UP_TO + 1, "--data", synthetic_data)
    assert batch["arrays"] == "summaries" and batch["layers"][0]["Z"]["shape"] == [FULL_UP_TO + 1, 6]
    assert "values" not in batch["layers"][0]["Z"] and len(batch["labels"]) == FULL_UP_TO + 1
    full = explain_json(runner, path, "--index", 10, "--batch-size", FULL_UP_TO + 1, "--data", synthetic_data, "--full")
    assert full["arrays"] == "all" and np.shape(full["layers"][0]["Z"]["values"]) == (FULL_UP_TO + 1, 6)
    assert full["loss"] == batch["loss"]
    _, y = make_blobs()[2]
    assert full["true_labels"] == y[10:10 + FULL_UP_TO + 1].tolist()


def test_a_batch_shows_the_batch_dimension_and_another_split(runner, model_file, synthetic_data):
    out = ok(invoke(runner, "explain", model_file(), "--index", 3, "--batch-size", 8, "--split", "validation",
                    "--data", synthetic_data, "--label", 1)).stdout
    assert "validation[3:11]" in out and "B = 8 digits" in out and "given with --label" in out
    assert "(8, 6)" in out and "(8, 20)" in out and "(20, 6)" in out and "mean p(label)" in out


def test_label_and_learning_rate_options(runner, model_file, synthetic_data, tmp_path):
    path = model_file()
    doc = explain_json(runner, path, "--index", 0, "--data", synthetic_data, "--label", 2, "--lr", 0.01)
    assert doc["labels"] == [2] and doc["label_rule"] == "given"
    assert doc["step"]["lr"] == 0.01 and doc["step"]["lr_source"] == "given with --lr"
    bare = save_model(MLP(SIZES), tmp_path / "bare.npy")                       # no settings recorded
    assert explain_json(runner, bare, "--index", 0, "--data", synthetic_data)["step"]["lr"] == 0.1
    stepped = explain_json(runner, path, "--index", 0, "--data", synthetic_data, "--steps", 2)
    assert stepped["steps_taken"] == 2 and stepped["loss"] < explain_json(runner, path, "--index", 0, "--data",
                                                                          synthetic_data)["loss"]
    _, meta_before = load_model(path)
    assert meta_before["settings"] == {"lr": 0.5}


def test_the_unit_option_prints_the_formula(runner, model_file, synthetic_data):
    out = ok(invoke(runner, "explain", model_file(), "--index", 0, "--data", synthetic_data, "--unit", "2,3")).stdout
    assert "unit 3 of layer 2 (hidden)" in out and "δ_j = (Σ_k W_jk δ_k) · a_j (1 − a_j) = " in out
    assert "incoming weights W_2[:, 3]: 6 values" in out


def test_an_image_file_is_preprocessed_as_predict_does(runner, tmp_path):
    images = images_module()
    model = MLP((784, 16, 10), seed=1)
    path = save_model(model, tmp_path / "m.npy")
    picture = tmp_path / "seven.png"
    picture.write_bytes(png_bytes(draw_strokes(STROKES[7], side=200)))
    doc = explain_json(runner, path, picture)
    x = images.image_to_input(picture)
    np.testing.assert_array_equal(values(doc["A_0"])[0], x.astype(np.float64))
    assert doc["input"] == {"kind": "image", "file": str(picture)}
    assert doc["label_rule"] == "prediction" and doc["labels"] == [int(model.predict(x.reshape(1, -1))[0])]
    assert doc["true_labels"] is None
    out = ok(invoke(runner, "explain", path, picture, "--label", 7)).stdout
    assert "seven.png" in out and "(1, 784)" in out and "(784, 16)" in out and "label 7" in out


@pytest.mark.parametrize("args, phrase, code", [
    (["--index", 150], "--index 150 is out of range: the test split has 150 digits (0..149)", 2),
    (["--index", 140, "--batch-size", 20], "runs past the end of the test split", 2),
    (["--index", 0, "--label", 3], "--label 3 is not a class of this model (0..2)", 2),
    (["--index", 0, "--label", -1], "--label", 2),
    (["--index", 0, "--batch-size", 10_001], "--batch-size", 2),
    (["--index", 0, "--steps", MAX_STEPS + 1], "--steps", 2),
    (["--index", 0, "--unit", "4,0"], "--unit 4,0: the layers are 1..3", 2),
    (["--index", 0, "--unit", "1,6"], "layer 1 has units 0..5", 2),
    (["--index", 0, "--unit", "x"], "LAYER,J", 2),
    (["--index", 0, "--full"], "--full applies to --json", 2),
    (["--index", 0, "--lr", 5000], "at most 1000", 1),
    ([], "give an IMAGE file or --index N", 2),
])
def test_bad_options_are_one_clear_line(runner, model_file, synthetic_data, args, phrase, code):
    result = invoke(runner, "explain", model_file(), *args, "--data", synthetic_data)
    assert_clean_error(result, phrase, exit_code=code)


def test_bad_inputs_are_one_clear_line(runner, model_file, synthetic_data, tmp_path):
    images_module()
    path = model_file()
    picture = tmp_path / "one.png"
    picture.write_bytes(png_bytes(draw_strokes(STROKES[1])))
    assert_clean_error(invoke(runner, "explain", path, picture, "--index", 0), "one of them", exit_code=2)
    assert_clean_error(invoke(runner, "explain", path, picture), "not a square image", exit_code=1)
    square = save_model(MLP((784, 8, 10)), tmp_path / "square.npy")
    assert_clean_error(invoke(runner, "explain", square, picture, "--batch-size", 2), "--batch-size needs --index")
    blank = tmp_path / "blank.png"
    blank.write_bytes(png_bytes(np.full((50, 50), 255, np.uint8)))
    assert_clean_error(invoke(runner, "explain", square, blank), "no ink found", exit_code=1)
    assert_clean_error(invoke(runner, "explain", square, tmp_path / "missing.png"), "missing.png", exit_code=1)
    assert_clean_error(invoke(runner, "explain", square, "--index", 0, "--data", synthetic_data),
                       "input width 784", exit_code=1)
    assert_clean_error(invoke(runner, "explain", tmp_path / "nope.npy", "--index", 0), "nope.npy", exit_code=1)
    assert_clean_error(invoke(runner, "explain", path, "--index", 0, "--data", tmp_path / "none.pkl.gz"),
                       "no data at", exit_code=1)


def test_a_batch_too_big_for_the_network_is_refused_before_any_work(runner, synthetic_data, tmp_path):
    wide = save_model(MLP((N_FEATURES, 100_000, N_CLASSES), init="normal"), tmp_path / "wide.npy")
    assert_clean_error(invoke(runner, "explain", wide, "--index", 0, "--batch-size", 150, "--data", synthetic_data),
                       "--batch-size: batch size 150 is too large for a 20-100000-3 network: at most 99 digits",
                       exit_code=2)


# ====================================================================== the endpoint
@pytest.fixture(scope="module")
def net():
    return MLP((784, 24, 12, 10), loss="ce", seed=3)


@pytest.fixture(scope="module")
def test_digits():
    """A small data set of 784-pixel 'digits' (synthetic blobs) for "test_index"."""
    return validate_splits(make_blobs(40, 20, 20, n_features=784, n_classes=10), source="blobs")


serving = running  # test_server's, with a data set for "test_index"


@pytest.fixture(scope="module")
def port(net, test_digits):
    with serving(net, {"settings": {"lr": 0.2}}, test_digits) as port:
        yield port


def post(port, document):
    status, headers, body = post_json(port, document, "/api/explain")
    return status, json.loads(body)


def test_a_drawing_is_explained_as_the_cli_explains_the_same_input(port, net, runner, tmp_path):
    images = images_module()
    gray = draw_strokes(STROKES[7], side=200)
    png = png_bytes(gray)
    status, headers, body = request(port, "POST", "/api/explain?label=7&steps=1&unit=1,5", png,
                                    {"Content-Type": "image/png"})
    assert status == 200 and headers["Content-Type"] == "application/json", body
    answer = json.loads(body)
    assert answer["arrays"] == "units" and answer["input"] == {"kind": "image"}
    assert answer["labels"] == [7] and answer["steps_taken"] == 1 and answer["step"]["lr"] == 0.2
    path = tmp_path / "seven.png"
    path.write_bytes(png)
    model_path = save_model(net, tmp_path / "net.npy", {"settings": {"lr": 0.2}})
    cli = explain_json(runner, model_path, path, "--label", 7, "--steps", 1, "--unit", "1,5")
    cli.pop("input"), answer.pop("input")
    assert cli.pop("arrays") == "all" and answer.pop("arrays") == "units"
    for layer in cli["layers"]:                      # W_l and ∂C/∂W_l: in full only in the CLI's answer
        for name in ("W", "grad_W"):
            assert layer[name].pop("values")
    assert cli["step"].pop("lr_source") == "the initial learning rate in the model's settings"
    answer["step"].pop("lr_source")
    assert answer == cli                             # the same function: the page and the terminal agree
    x = images.image_to_input(png)
    np.testing.assert_array_equal(values(json.loads(body)["A_0"])[0], x)


def test_the_json_forms_drawing_input_and_test_index(port, net, test_digits):
    images_module()
    status, drawn = post(port, {**drawing(draw_strokes(STROKES[1])), "label": None})
    assert status == 200 and drawn["input"] == {"kind": "drawing"} and drawn["label_rule"] == "prediction"
    assert drawn["labels"] == drawn["output"]["predictions"] and drawn["steps_taken"] == 0
    status, again = post(port, {"input": values(drawn["A_0"])[0].tolist()})
    assert status == 200 and again["input"] == {"kind": "input"}
    assert again["layers"] == drawn["layers"] and again["loss"] == drawn["loss"]
    status, digit = post(port, {"test_index": 5, "label": None, "steps": 0, "lr": 0.05})
    assert status == 200 and digit["input"] == {"kind": "dataset", "split": "test", "index": 5}
    assert digit["labels"] == digit["true_labels"] == [int(test_digits.test.y[5])] and digit["label_rule"] == "true"
    assert digit["step"]["lr"] == 0.05 and digit["step"]["lr_source"] == "given"


def test_steps_are_stateless_and_the_model_never_changes(port, net):
    images_module()
    weights = [w.copy() for w in net.weights]
    document = {**drawing(draw_strokes(STROKES[7])), "label": 3}
    answers = [post(port, {**document, "steps": s})[1] for s in (0, 1, 2, 0)]
    assert [a["steps_taken"] for a in answers] == [0, 1, 2, 0]
    assert answers[0] == answers[3]                       # nothing was kept between requests
    for before, after in zip(answers, answers[1:3]):      # each step is the "one step" the previous answer showed
        assert after["loss"] == pytest.approx(before["step"]["loss_after"], rel=1e-12)
        assert after["output"]["p_label"] == pytest.approx(before["step"]["p_label_after"], rel=1e-12)
    assert answers[2]["loss"] < answers[1]["loss"] < answers[0]["loss"]
    for W, w in zip(net.weights, weights):
        np.testing.assert_array_equal(W, w)


def test_a_unit_request_gives_what_the_hover_needs(port):
    images_module()
    status, answer = post(port, {**drawing(draw_strokes(STROKES[1])), "unit": [1, 3]})
    assert status == 200
    unit = answer["unit"]
    assert (unit["layer"], unit["j"], unit["kind"]) == (1, 3, "hidden")
    assert len(unit["incoming_weights"]) == 784 and len(unit["outgoing_weights"]) == 12
    assert unit["delta"] == unit["backprop_sum"] * unit["f_prime"] == answer["layers"][0]["delta"]["values"][0][3]
    assert unit["formula"].startswith("δ_j = (Σ_k W_jk δ_k) · a_j (1 − a_j) = ")
    hidden = answer["layers"][0]
    for name in ("Z", "A", "b", "delta", "backprop_sum", "f_prime"):
        assert "values" in hidden[name], name
    assert "values" not in hidden["W"] and "values" not in hidden["grad_W"]


def test_the_body_the_page_sends_to_predict_with_its_ink_choice_is_explained_alike(port):
    """A square ring cut to its ink is two thirds ink: "auto" takes the hole for the ink, "dark" does not."""
    images_module()
    ring = np.full((60, 60), 255, np.uint8)
    ring[:20], ring[-20:], ring[:, :20], ring[:, -20:] = 0, 0, 0, 0
    seen = {}
    for ink in ("auto", "dark"):
        document = {**drawing(ring), "ink": ink}
        status, _, body = post_json(port, document)
        predicted = json.loads(body)["input"]
        status, answer = post(port, document)
        assert status == 200, answer
        seen[ink] = np.array(answer["A_0"]["values"][0])
        np.testing.assert_allclose(seen[ink], predicted, atol=5e-4)    # /api/predict rounds to 3 digits
        status, image = request(port, "POST", f"/api/explain?ink={ink}&label=2", png_bytes(ring),
                                {"Content-Type": "image/png"})[::2]
        assert status == 200
        np.testing.assert_array_equal(np.array(json.loads(image)["A_0"]["values"][0]), seen[ink])
    assert not np.array_equal(seen["auto"], seen["dark"])
    status, message = error_of(post_json(port, {**drawing(ring), "ink": "purple"}, "/api/explain"))
    assert status == 400 and '"ink"' in message
    status, message = error_of(request(port, "POST", "/api/explain?ink=purple", png_bytes(ring),
                                       {"Content-Type": "image/png"}))
    assert status == 400 and '"ink"' in message


def test_the_answer_stays_small_for_the_default_network():
    images_module()
    model = MLP((784, 128, 64, 10), seed=0)
    with running(model) as port:
        status, headers, body = post_json(port, {**drawing(draw_strokes(STROKES[7])), "unit": [1, 0], "steps": 5},
                                          "/api/explain")
    assert status == 200 and len(body) < 200_000


def test_a_server_without_data_refuses_test_index(net):
    with running(net) as port:
        status, message = error_of(post_json(port, {"test_index": 0}, "/api/explain"))
    assert status == 400 and "needs a data set" in message


@pytest.mark.parametrize("document, phrase", [
    ({}, "give one input"),
    ({"test_index": 0, "input": [0] * 784}, "give one input"),
    ({"test_index": 20}, '"test_index" must be an integer from 0 to 19'),
    ({"test_index": True}, '"test_index"'),
    ({"input": [0] * 10}, "784 numbers"),
    ({"input": [2] * 784}, "from 0 to 1"),
    ({"input": ["a"] * 784}, "numbers only"),
    ({"test_index": 0, "label": 10}, '"label" must be a class, an integer from 0 to 9'),
    ({"test_index": 0, "label": "3"}, '"label"'),
    ({"test_index": 0, "steps": MAX_STEPS + 1}, '"steps" must be an integer from 0 to 50'),
    ({"test_index": 0, "steps": -1}, '"steps"'),
    ({"test_index": 0, "lr": 0}, '"lr" must be a number above 0'),
    ({"test_index": 0, "lr": "fast"}, '"lr"'),
    ({"test_index": 0, "lr": 1e9}, "at most 1000"),
    ({"test_index": 0, "unit": [4, 0]}, '"unit" must be [layer, j]'),
    ({"test_index": 0, "unit": [1, 24]}, '"unit"'),
    ({"test_index": 0, "unit": 3}, '"unit"'),
    ({"test_index": 0, "lable": 3}, 'unknown field "lable"'),
    ({"width": 2, "height": 2, "pixels": [0, 1, 2]}, "4 numbers"),
])
def test_bad_requests_are_400_with_one_line(port, document, phrase):
    status, message = error_of(post_json(port, document, "/api/explain"))
    assert status == 400 and phrase in message, message


def test_bad_bodies_methods_and_types_as_for_predict(port):
    images_module()
    assert error_of(request(port, "POST", "/api/explain", b"{nope", {"Content-Type": "application/json"}))[0] == 400
    status, message = error_of(request(port, "POST", "/api/explain", b"[1]", {"Content-Type": "application/json"}))
    assert status == 400 and "JSON object" in message
    status, message = error_of(request(port, "POST", "/api/explain", b"x" * (3 * 1024 * 1024),
                                       {"Content-Type": "application/json"}))
    assert status == 413
    status, headers, _ = request(port, "GET", "/api/explain")
    assert status == 405 and headers["Allow"] == "POST"
    assert error_of(request(port, "POST", "/api/explain", b"hi", {"Content-Type": "text/plain"}))[0] == 415
    status, message = error_of(post_json(port, drawing(np.full((60, 60), 255, np.uint8)), "/api/explain"))
    assert status == 400 and "no ink" in message
    png = png_bytes(draw_strokes(STROKES[1]))
    for query, phrase in (("?label=12", '"label"'), ("?steps=many", '"steps"'), ("?unit=1", '"unit"'),
                          ("?colour=red", "unknown field")):
        status, message = error_of(request(port, "POST", "/api/explain" + query, png, {"Content-Type": "image/png"}))
        assert status == 400 and phrase in message, (query, message)
    status, message = error_of(request(port, "POST", "/api/explain", b"not an image", {"Content-Type": "image/png"}))
    assert status == 400
    status, _, body = post_json(port, {"test_index": 1}, "/api/explain")  # and it goes on serving
    assert status == 200 and json.loads(body)["batch_size"] == 1


# ====================================================================== the real MNIST (optional)
def test_a_trained_network_explains_a_real_test_digit(runner, real_mnist_path, tmp_path):
    from digits import trained_mnist_model

    trained, meta = trained_mnist_model(real_mnist_path)
    path = save_model(trained, tmp_path / "mnist.npy", {"settings": {"lr": 0.1}})
    result = ok(invoke(runner, "explain", path, "--index", 0, "--data", real_mnist_path))
    assert "test[0]" in result.stdout and "one-hot(7), the true label" in result.stdout
    assert "(1, 784)" in result.stdout and "(784, 64)" in result.stdout and "(64, 10)" in result.stdout
    doc = explain_json(runner, path, "--index", 0, "--data", real_mnist_path)
    assert doc["output"]["predictions"] == [7] and doc["output"]["p_label"][0] > 0.5
    assert doc["step"]["loss_after"] < doc["step"]["loss_before"]
