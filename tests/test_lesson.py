"""The lesson (bptrain/app/lesson.py) and its terminal walk (`bptrain explain --lesson`).

The numbers are checked against what they claim to be: explain's own document, the core's forward and
backward pass, a numerical gradient, and the untouched model file; the terminal walk is driven with its
input piped in, for both losses, answering, skipping and ending early.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from bptrain.app.lesson import EPSILON, lesson
from bptrain.app.lesson_batch import shifted_companions, split_companions
from bptrain.core.errors import BptrainError
from bptrain.core.network import MLP, one_hot
from bptrain.data.model_io import load_model, save_model
from bptrain.core.training import TrainSettings, train

from conftest import assert_clean_error, make_blobs, write_py2_pickle

SIDE = 4                      # 16 inputs: a square picture, small enough to train in a blink
SIZES = (SIDE * SIDE, 12, 8, 3)


@pytest.fixture(scope="module")
def square_blobs():
    return make_blobs(n_features=SIDE * SIDE, n_train=300, n_validation=60, n_test=60)


@pytest.fixture
def square_data(tmp_path, square_blobs):
    return write_py2_pickle(tmp_path / "square.pkl.gz", square_blobs)


def trained(loss: str, blobs) -> MLP:
    model = MLP(SIZES, loss, seed=1, dtype=np.float32)
    (x, y), (xv, yv), _ = blobs
    train(model, ((x, y), (xv, yv)), TrainSettings(epochs=3, batch_size=10, lr=0.5 if loss == "ce" else 2.0,
                                                   seed=0))
    return model


@pytest.fixture(scope="module", params=["ce", "mse"])
def model_of(request, square_blobs):
    return trained(request.param, square_blobs)


def test_steps_in_order_with_a_formula_shapes_prose_and_the_core_function(model_of, square_blobs):
    x, y = square_blobs[2]
    doc = lesson(model_of, x[0], int(y[0]), lr=0.1)
    ids = [step["id"] for step in doc["steps"]]
    assert ids == ["input", "forward-1", "forward-2", "forward-3", "cost", "backward-3", "backward-2",
                   "backward-1", "speed", "batch", "check", "input-gradient", "update"]
    assert [step["n"] for step in doc["steps"]] == list(range(1, 14))
    for step in doc["steps"]:
        assert step["formula"] and step["shapes"] and len(step["prose"]) > 150
        assert step["core"].startswith(("bptrain.core.network.MLP.", "bptrain.app.explain.gradient_step"))
    cost = doc["steps"][4]
    assert ("cross-entropy" in cost["formula"]) == (model_of.loss == "ce")
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc  # JSON as it is


def test_numbers_are_explains_and_the_cores(model_of, square_blobs):
    x, y = square_blobs[2]
    label = int(y[5])
    doc = lesson(model_of, x[5], label, lr=0.1)
    net = model_of.astype(np.float64)
    zs, activations = net.forward(x[5:6].astype(np.float64))
    grads = net.backward(activations, one_hot(np.array([label]), 3, np.float64))
    for l in (1, 2, 3):
        forward = doc["steps"][l]
        assert [u["z"] for u in forward["units"]] == zs[l - 1][0].tolist()
        assert [u["a"] for u in forward["units"]] == activations[l][0].tolist()
        assert forward["z_top"] == doc["explain"]["layers"][l - 1]["Z"]["top"]
        backward = next(s for s in doc["steps"] if s["id"] == f"backward-{l}")
        assert [u["delta"] for u in backward["units"]] == grads.deltas[l - 1][0].tolist()
        assert backward["grad_W_norm"] == doc["explain"]["layers"][l - 1]["grad_W"]["norm"]
    # a unit's written-out terms are real terms of its sum, the largest ones
    unit = doc["steps"][1]["units"][3]
    products = x[5].astype(np.float64) * net.weights[0][:, 3]
    assert [t["i"] for t in unit["terms"]] == list(np.argsort(-np.abs(products), kind="stable")[:len(unit["terms"])])
    assert unit["sum"] + unit["b"] == pytest.approx(unit["z"])
    hidden = doc["steps"][6]["units"][2]   # backward-2, unit 2: Σ_k w_jk δ_k times f'
    assert hidden["sum"] * hidden["f_prime"] == pytest.approx(hidden["delta"])
    assert doc["steps"][4]["cost"] == doc["explain"]["loss"]
    gradient = np.array(doc["steps"][11]["input_gradient"])
    np.testing.assert_allclose(gradient, (grads.deltas[0] @ net.weights[0].T)[0])


def test_the_input_gradient_is_the_slope_of_the_cost_in_each_pixel(model_of, square_blobs):
    x, y = square_blobs[2]
    doc = lesson(model_of, x[1], int(y[1]), lr=0.1)
    net = model_of.astype(np.float64)
    target = one_hot(np.array([int(y[1])]), 3, np.float64)

    def cost(pixels):
        zs, activations = net.forward(pixels.reshape(1, -1))
        return net.loss_value(zs[-1], activations[-1], target)

    pixel = doc["steps"][11]["input_gradient_top"][0]["index"]
    nudged = [x[1].astype(np.float64).copy() for _ in range(2)]
    nudged[0][pixel] += 1e-5
    nudged[1][pixel] -= 1e-5
    assert (cost(nudged[0]) - cost(nudged[1])) / 2e-5 == pytest.approx(doc["steps"][11]["input_gradient"][pixel],
                                                                         rel=1e-4)


def test_the_nudge_check_agrees_and_any_weight_can_be_picked(model_of, square_blobs):
    x, y = square_blobs[2]
    doc = lesson(model_of, x[2], int(y[2]), lr=0.1)
    check = doc["check"]
    assert check["weight"] == check["suggested"] and check["epsilon"] == EPSILON
    grads = model_of.astype(np.float64).backward(
        model_of.astype(np.float64).forward(x[2:3].astype(np.float64))[1], one_hot(np.array([int(y[2])]), 3, np.float64))
    assert check["weight"][0] == 1                             # layer 1: its gradient passed through every layer
    assert abs(check["predicted"]) == pytest.approx(float(np.abs(grads.weights[0]).max()))
    m, p = check["measured"], check["predicted"]
    assert check["relative_error"] == pytest.approx(abs(m - p) / max(1e-8, abs(m) + abs(p)))   # cs231n's
    assert check["relative_error"] < 1e-7 and check["verdict"] == "they agree"
    assert check["thresholds"] == [1e-7, 1e-2] and "cs231n" in check["relative_error_formula"]
    assert check["measured"] == pytest.approx(check["predicted"], rel=1e-3)
    other = lesson(model_of, x[2], int(y[2]), lr=0.1, weight=(1, 5, 7), epsilon=1e-3)["check"]
    assert other["weight"] == [1, 5, 7] and other["epsilon"] == 1e-3
    assert other["predicted"] == pytest.approx(float(grads.weights[0][5, 7]))
    assert other["measured"] == pytest.approx(other["predicted"], rel=1e-3, abs=1e-9)
    for bad, words in (((4, 0, 0), "the layers are 1..3"), ((1, 16, 0), "W_1 is 16 × 12"), (("a", 1, 1), "three")):
        with pytest.raises(BptrainError, match=words):
            lesson(model_of, x[2], int(y[2]), lr=0.1, weight=bad)
    with pytest.raises(BptrainError, match="ε"):
        lesson(model_of, x[2], int(y[2]), lr=0.1, epsilon=0.0)


def test_questions_have_the_right_answers(model_of, square_blobs):
    x, y = square_blobs[2]
    doc = lesson(model_of, x[3], int(y[3]), lr=0.1)
    by_id = {step["id"]: step for step in doc["steps"]}
    cost_q = by_id["forward-3"]["question"]
    assert cost_q["choices"][cost_q["answer"]] == str(doc["explain"]["output"]["predictions"][0])
    error_q = by_id["backward-3"]["question"]
    signs = [u["delta"] > 0 for u in by_id["backward-3"]["units"]]
    assert error_q["choices"][error_q["answer"]] == "every class but the target"
    assert signs == [c != int(y[3]) for c in range(3)]
    norms = [layer["delta"]["norm"] for layer in doc["explain"]["layers"]]
    smallest_q = by_id["speed"]["question"]
    assert smallest_q["answer"] == int(np.argmin(norms)) and "‖Δ_l‖" in smallest_q["ask"]
    assert "docs/learning-speed.md" in smallest_q["why"]
    assert by_id["backward-1"]["question"] is None and by_id["backward-3"]["question"] is not None


def test_the_update_acts_on_a_copy(model_of, square_blobs):
    x, y = square_blobs[2]
    before = [w.copy() for w in model_of.weights] + [b.copy() for b in model_of.biases]
    doc = lesson(model_of, x[4], int(y[4]), lr=0.5)
    after = list(model_of.weights) + list(model_of.biases)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    update = doc["steps"][12]["update"]
    assert update["loss_after"] < update["loss_before"]      # one small step downhill on this digit
    assert update["p_label_after"] > update["p_label_before"]


# ================================================================== the terminal
def run_lesson(model_path, data, answers: str, *extra):
    return subprocess.run([sys.executable, "-m", "bptrain", "explain", str(model_path), "--index", "7",
                           "--data", str(data), "--lesson", *map(str, extra)],
                          input=answers, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_terminal_lesson_walks_every_step_with_piped_input(loss, tmp_path, square_data, square_blobs):
    model = save_model(trained(loss, square_blobs), tmp_path / f"{loss}.npy", {})
    original = model.read_bytes()
    # Enter through every step, answer the first question rightly-or-not with "1", skip the others
    result = run_lesson(model, square_data, "\n" * 3 + "1\n" + "\n" * 40)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    titles = re.findall(r"── Step (\d+) of (\d+) · ([^─]+)", out)
    assert [int(n) for n, _, _ in titles] == list(range(1, 14)) and {t for _, t, _ in titles} == {"13"}
    assert "End of the lesson (13 steps)" in out and "Traceback" not in result.stderr
    doc = json.loads(subprocess.run([sys.executable, "-m", "bptrain", "explain", str(model), "--index", "7",
                                     "--data", str(square_data), "--json"], capture_output=True, text=True,
                                    check=True).stdout)
    assert f"C = {doc['loss']:.4g}" in out                       # the cost step shows explain's C
    p = doc["output"]["probabilities"]["values"][0][doc["labels"][0]]
    assert f"({100 * p:.2f}%)" in out
    z_top = doc["layers"][0]["Z"]["top"][0]["value"]
    assert f"{z_top + 0.0:.4g}" in out                            # layer 1's largest sum
    assert ("Right: the answer is" in out) or ("Not quite: the answer is" in out)  # the answered question
    assert out.count("Skipped: the answer is") == 5                # the skipped ones are still answered
    measured = float(re.search(r"measured .*= (\S+)", out).group(1))
    predicted = float(re.search(r"predicted .*= (\S+)", out).group(1))
    assert measured == pytest.approx(predicted, rel=1e-3)
    assert ("Δ_3 = (A_3 − Y) / B   (B = 1 here)" in out) == (loss == "ce")
    assert ("A_3 ⊙ (1 − A_3)" in out) == (loss == "mse")
    assert model.read_bytes() == original


def test_terminal_lesson_ends_cleanly_when_the_input_ends(tmp_path, square_data, square_blobs):
    model = save_model(trained("ce", square_blobs), tmp_path / "m.npy", {})
    result = run_lesson(model, square_data, "\n\n")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "Step 3 of 13" in result.stdout and "Step 4 of 13" not in result.stdout
    assert "the input ended: the lesson stops after step 3 of 13" in result.stdout
    silent = run_lesson(model, square_data, "")
    assert silent.returncode == 0 and "stops after step 1 of 13" in silent.stdout


def test_terminal_lesson_checks_a_weight_the_learner_picks(tmp_path, square_data, square_blobs):
    model = save_model(trained("ce", square_blobs), tmp_path / "m.npy", {})
    # ten steps (an Enter after each) and five skipped questions before the check's prompt; then a bad
    # weight, then 1,3,4
    answers = "\n" * (10 + 5) + "9,9,9\n1,3,4\n\n\n"
    result = run_lesson(model, square_data, answers)
    assert result.returncode == 0, result.stderr
    assert "weight 9,9,9: the layers are 1..3" in result.stdout
    assert "w = W_1[3, 4]" in result.stdout
    doc = lesson(load_model(model)[0], square_blobs[2][0][7], int(square_blobs[2][1][7]), lr=0.1, weight=(1, 3, 4))
    assert f"{doc['check']['predicted'] + 0.0:.8g}" in result.stdout


@pytest.mark.parametrize("flag, words", [(("--json",), "--json"), (("--steps", "2"), "--steps"),
                                         (("--batch-size", "2"), "--batch-size"), (("--unit", "1,1"), "--unit")])
def test_lesson_refuses_what_it_cannot_walk(flag, words, runner, tmp_path, square_data, square_blobs):
    from conftest import invoke
    model = save_model(MLP(SIZES, "ce", seed=0), tmp_path / "m.npy", {})
    result = invoke(runner, "explain", model, "--index", 0, "--data", square_data, "--lesson", *flag)
    assert_clean_error(result, words, exit_code=2)


def test_a_network_too_large_to_show_is_refused_in_one_line(monkeypatch, tmp_path, square_data):
    """Every unit is shown with its terms: a network of millions of units would fill the memory instead."""
    import bptrain.app.lesson as lesson_module
    from conftest import invoke
    from click.testing import CliRunner

    monkeypatch.setattr(lesson_module, "MAX_UNITS", 30)
    model = MLP(SIZES, "ce", seed=0)                  # 16 + 12 + 8 + 3 = 39 units
    with pytest.raises(BptrainError, match="39 units; the lesson shows every one"):
        lesson(model, np.zeros(16), 0, lr=0.1)
    path = save_model(model, tmp_path / "m.npy", {})
    result = invoke(CliRunner(), "explain", path, "--index", 0, "--data", square_data, "--lesson")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "at most 30" in result.output + getattr(result, "stderr", "")


# ================================================================== the batch, the speeds, the numbers by hand
def test_the_batch_step_has_b_rows_divides_by_b_and_sums_over_the_rows(model_of, square_blobs):
    x, y = square_blobs[2]
    companions = split_companions(x, y, 5, "test")
    doc = lesson(model_of, x[5], int(y[5]), lr=0.1, companions=companions)
    batch = next(s for s in doc["steps"] if s["id"] == "batch")["batch"]
    assert batch["batch_size"] == 4 and [r["digit"] for r in batch["rows"]][1:] == [
        "test digit 6", "test digit 7", "test digit 8"]
    xb, labels = x[5:9].astype(np.float64), y[5:9].astype(np.int64)
    net = model_of.astype(np.float64)
    zs, activations = net.forward(xb)
    Y = one_hot(labels, 3, np.float64)
    grads = net.backward(activations, Y)
    delta = np.array(batch["delta_out"])
    assert delta.shape == (4, 3)
    if model_of.loss == "ce":                                  # Δ_L = (A_L − Y)/B, row by row
        np.testing.assert_allclose(delta, (activations[-1] - Y) / 4, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(delta, grads.deltas[-1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(batch["grad_b_out"], delta.sum(axis=0), rtol=1e-12, atol=1e-15)   # Σ_rows Δ_L
    for layer in batch["layers"]:
        l, w = layer["l"], layer["weight"]
        assert layer["shape_A_prev"] == [4, SIZES[l - 1]] and layer["shape_W"] == [SIZES[l - 1], SIZES[l]]
        assert len(w["terms"]) == 4                            # one product a_i δ_j per digit
        assert sum(t["product"] for t in w["terms"]) == pytest.approx(w["sum"])
        assert w["sum"] == pytest.approx(float(grads.weights[l - 1][w["i"], w["j"]]))   # A_{l−1}ᵀ Δ_l's entry
        assert sum(layer["bias"]["deltas"]) == pytest.approx(layer["bias"]["sum"])
    q = next(s for s in doc["steps"] if s["id"] == "batch")["question"]
    assert q["choices"][q["answer"]] == f"({SIZES[1]} × {SIZES[2]})"        # ∂C/∂W_2 has W_2's shape, any B


def test_a_drawn_digit_is_batched_with_itself_moved_by_a_pixel(model_of, square_blobs):
    x, y = square_blobs[2]
    batch = next(s for s in lesson(model_of, x[0], int(y[0]), lr=0.1)["steps"] if s["id"] == "batch")["batch"]
    assert [r["label"] for r in batch["rows"]] == [int(y[0])] * 4 and "moved right" in batch["rows"][1]["digit"]
    moved, _, _ = shifted_companions(x[0], int(y[0]))
    picture = x[0].reshape(SIDE, SIDE)
    np.testing.assert_array_equal(moved[0].reshape(SIDE, SIDE)[:, 1:], picture[:, :-1])
    assert not moved[0].reshape(SIDE, SIDE)[:, 0].any()      # nothing wraps round


def test_minus_log_p_of_the_shown_p_gives_the_shown_c(square_blobs):
    """A learner computing −log p from the p on the screen gets the C on the screen, to its 4 digits, even
    for a digit read at 99.9% (where 4 digits of p would give the wrong C)."""
    x, y = square_blobs[2]
    model = trained("ce", square_blobs)
    checked = set()
    for n in range(len(x)):
        for label in range(3):
            cost = next(s for s in lesson(model, x[n], label, lr=0.1)["steps"] if s["kind"] == "cost")
            shown_p, shown_c = cost["p_target_text"], f"{cost['cost']:.4g}"
            assert f"{-np.log(float(shown_p)):.4g}" == shown_c, (n, label, shown_p, shown_c)
            assert f"−log {shown_p} = {shown_c}" in cost["prose"]
            checked.add(len(shown_p.split(".")[-1]) > 4)
    assert True in checked                                    # some needed more than 4 decimals
    from bptrain.app.lesson import probability_text
    assert probability_text(0.99382, -np.log(0.99382)) == "0.99382" and f"{-np.log(0.9938):.4g}" == "0.006219"


def test_the_speed_step_shows_both_factors_and_the_rank_one_identity(model_of, square_blobs):
    x, y = square_blobs[2]
    doc = lesson(model_of, x[3], int(y[3]), lr=0.1)
    speed = next(s for s in doc["steps"] if s["id"] == "speed")
    rows = speed["layers"]
    for row, layer in zip(rows, doc["explain"]["layers"]):
        assert row["grad_W_norm"] == pytest.approx(row["a_prev_norm"] * row["delta_norm"], rel=1e-12)
        assert row["delta_norm"] == pytest.approx(layer["delta"]["norm"])
    for row, above in zip(rows, rows[1:]):                    # ‖Δ_l‖ = ‖Δ_l+1‖ × (Wᵀ factor) × (f' factor)
        assert row["delta_norm"] == pytest.approx(above["delta_norm"] * row["w_factor"] * row["f_factor"])
    assert "docs/learning-speed.md" in speed["prose"] and "at initialisation" in speed["prose"]


def test_the_delta_question_can_be_worked_out_from_the_numbers_it_shows(model_of, square_blobs):
    x, y = square_blobs[2]
    for n in range(6):
        step = next(s for s in lesson(model_of, x[n], int(y[n]), lr=0.1)["steps"] if s["id"] == "backward-2")
        q = step["question"]
        total, a = (float(v) for v in re.search(r"= (\S+) and a_\d+ = (\S+),", q["ask"]).groups())
        by_hand = total * a * (1 - a)                          # σ: f'(z) = a (1 − a), from the shown numbers
        nearest = min(range(len(q["choices"])), key=lambda k: abs(float(q["choices"][k]) - by_hand))
        assert nearest == q["answer"], (q["ask"], q["choices"])
        assert len(set(q["choices"])) == len(q["choices"]) >= 3


def test_terminal_lesson_marks_a_wrong_pick_and_walks_the_new_steps(tmp_path, square_data, square_blobs):
    model_path = save_model(trained("ce", square_blobs), tmp_path / "m.npy", {})
    model = load_model(model_path)[0]
    x, y = square_blobs[2]
    doc = lesson(model, x[7], int(y[7]), lr=0.1, companions=split_companions(x, y, 7, "test"))
    by_id = {s["id"]: s for s in doc["steps"]}
    delta_right = by_id["backward-2"]["question"]["answer"] + 1
    speed_wrong = (by_id["speed"]["question"]["answer"] + 1) % 3 + 1
    # reads: 3 Enters, forward-3's question, Enter, Enter (cost), backward-3's question, Enter, backward-2's
    # question, Enter, Enter, the speed question, Enter, the batch question, Enter, the check's weight, Enter,
    # Enter, the update question
    answers = ["", "", "", "", "", "", "", "", str(delta_right), "", "", str(speed_wrong), "", "2", "", "", "",
               "", "2"]
    result = run_lesson(model_path, square_data, "".join(a + "\n" for a in answers))
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())                     # the paragraphs' line breaks as spaces
    assert "End of the lesson (13 steps)" in out
    assert out.count("Right: the answer is") == 3             # δ_j, the batch's shape, the transpose
    wrong = by_id["speed"]["question"]["choices"][speed_wrong - 1]
    assert f"Not quite: you chose {wrong}; the answer is layer" in out
    assert "Step 10 of 13 · A batch of B = 4 digits" in out and "Δ_3 = (A_3 − Y)/4, one row per digit (4 × 3)" in out
    assert "= ∂C/∂b_3" in out and "test digit 8" in out
    assert "∂C/∂W_2 = A_1ᵀ Δ_2: (12 × 4) (4 × 8) = (12 × 8)" in out
    assert "Step 13 of 13 · One step" in out and "one step of η" in out
    assert "cs231n's rel_error" in out and "below 1e-07: they agree; above 0.01: the gradient is wrong" in out
    assert re.search(r"w = W_1\[\d+, \d+\]", out)             # the check's default weight is in layer 1


def test_terminal_lesson_without_an_index_starts_from_a_digit_the_network_reads_wrong(tmp_path, square_data,
                                                                                      square_blobs):
    model_path = save_model(trained("ce", square_blobs), tmp_path / "m.npy", {})
    model = load_model(model_path)[0]
    x, y = square_blobs[2]
    wrong = np.flatnonzero(model.predict(x) != y)
    assert len(wrong)                                         # a digit the little network misreads
    result = subprocess.run([sys.executable, "-m", "bptrain", "explain", str(model_path), "--data", str(square_data),
                             "--lesson"], input="\n" * 60, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"no --index given: test digit {wrong[0]}, the first digit of the split the network reads wrong" \
        in result.stdout
    assert "End of the lesson" in result.stdout


@pytest.mark.parametrize("sizes, loss", [((10, 3), "ce"), ((10, 4, 3), "mse"), ((16, 3), "mse")])
def test_a_network_without_hidden_layers_or_a_non_square_input_still_gets_every_step(sizes, loss):
    """No hidden layer: no δ_j question, ∂C/∂W_1 where the shape question would ask about ∂C/∂W_2; a
    non-square input: the batch repeats the digit instead of moving it."""
    model = MLP(sizes, loss, seed=3)
    x = np.random.default_rng(0).random(sizes[0])
    doc = lesson(model, x, 1, lr=0.1)
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    by_id = {s["id"]: s for s in doc["steps"]}
    batch = by_id["batch"]
    k = 2 if len(sizes) > 2 else 1
    assert batch["question"]["choices"][batch["question"]["answer"]] == f"({sizes[k - 1]} × {sizes[k]})"
    worked = [s["id"] for s in doc["steps"] if s["question"] and s["question"]["ask"].startswith("Work it out")]
    assert worked == ([] if len(sizes) == 2 else ["backward-1"])
    assert len(batch["batch"]["rows"]) == 4 and by_id["check"]["check"]["weight"][0] == 1
    if sizes[0] == 10:
        assert batch["batch"]["rows"][1]["digit"] == "the same digit again"
