"""`POST /api/lesson`: the lesson's steps over real HTTP, on a real server at a free port of 127.0.0.1.

The answer must be :func:`bptrain.app.lesson.lesson`'s document for the digit the request names (a drawing,
an image file, the model's input, or a data-set digit by split and index), with the request's target, η,
weight and ε; every bad field is a 400 of one line naming it; and nothing a lesson does changes the served
model or the weights of a running training.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bptrain.app import lesson as lessons
from bptrain.app.lesson_batch import split_companions
from bptrain.app.serve import api
from bptrain.core.network import MLP
from bptrain.data.loader import validate_splits
from conftest import make_blobs
from digits import STROKES, draw_strokes
from live_client import call, live_server, start, wait_until
from test_server import drawing, error_of, images_module, png_bytes, post_json, request, running

LR = 0.2


@pytest.fixture(scope="module")
def net():
    return MLP((784, 12, 8, 10), loss="ce", seed=5)


@pytest.fixture(scope="module")
def data():
    """784-pixel 'digits' (synthetic blobs) in three splits of 30 each."""
    return validate_splits(make_blobs(30, 30, 30, n_features=784, n_classes=10, seed=4), source="blobs")


@pytest.fixture(scope="module")
def port(net, data):
    with running(net, {"settings": {"lr": LR}}, data) as port:
        yield port


def lesson_of(port, document, path="/api/lesson"):
    status, _, body = post_json(port, document, path)
    answer = json.loads(body)
    assert status == 200, answer
    return answer


def test_a_data_set_digit_by_split_and_index_gets_lesson_pys_document(port, net, data):
    answer = lesson_of(port, {"split": "validation", "index": 7})
    x, y = data.validation.x[7], int(data.validation.y[7])
    source = {"kind": "dataset", "split": "validation", "index": 7}
    expected = lessons.lesson(net, x, y, lr=LR, lr_source="the initial learning rate in the model's settings",
                              label_rule="true", true_label=y, source=source,
                              companions=split_companions(data.validation.x, data.validation.y, 7, "validation"))
    assert answer == json.loads(api.to_json(expected))
    assert answer["input"] == source and answer["label"] == y and answer["true_label"] == y
    assert [s["id"] for s in answer["steps"]] == ["input", "forward-1", "forward-2", "forward-3", "cost", "backward-3",
                                                  "backward-2", "backward-1", "speed", "batch", "check",
                                                  "input-gradient", "update"]
    check = answer["check"]
    assert check["weight"] == check["suggested"] and check["epsilon"] == lessons.EPSILON
    assert check["weight"][0] == 1 and check["relative_error"] < 1e-6
    batch = next(s for s in answer["steps"] if s["id"] == "batch")["batch"]
    assert [r["digit"] for r in batch["rows"]] == ["the lesson's digit", "validation digit 8", "validation digit 9",
                                                   "validation digit 10"]


def test_a_lesson_without_an_input_starts_from_the_first_test_digit_the_network_reads_wrong(port, net, data):
    answer = lesson_of(port, {})
    predictions = net.predict(data.test.x)
    wrong = np.flatnonzero(predictions != data.test.y)
    expected = int(wrong[0]) if len(wrong) else int(np.argmin(
        net.predict_proba(data.test.x)[np.arange(len(data.test.y)), data.test.y]))
    assert answer["input"] == {"kind": "dataset", "split": "test", "index": expected}


def test_test_index_and_split_index_name_the_same_digit_in_lesson_and_explain(port, data):
    by_index = lesson_of(port, {"split": "test", "index": 4})
    assert lesson_of(port, {"index": 4}) == by_index                       # test is the split when none is named
    old = lesson_of(port, {"test_index": 4})
    assert old["steps"] == by_index["steps"] and old["input"] == by_index["input"]
    explained = lesson_of(port, {"split": "validation", "index": 2, "label": None}, "/api/explain")
    assert explained["input"] == {"kind": "dataset", "split": "validation", "index": 2}
    assert explained["labels"] == [int(data.validation.y[2])] and explained["label_rule"] == "true"


def test_the_target_step_size_weight_and_nudge_are_the_requests(port, net):
    images_module()
    document = {**drawing(draw_strokes(STROKES[7])), "label": 3, "lr": 0.05, "weight": [2, 11, 4], "epsilon": 1e-3}
    answer = lesson_of(port, document)
    assert answer["input"] == {"kind": "drawing"} and answer["label"] == 3 and answer["label_rule"] == "given"
    check = answer["check"]
    assert check["weight"] == [2, 11, 4] and check["epsilon"] == 1e-3 and check["suggested"] != [2, 11, 4]
    assert check["w"] == pytest.approx(float(net.weights[1][11, 4]))
    assert check["measured"] == pytest.approx(check["predicted"], rel=1e-4)
    assert answer["steps"][-1]["update"]["lr"] == 0.05
    default = lesson_of(port, drawing(draw_strokes(STROKES[7])))           # the target: the network's answer
    assert default["label_rule"] == "prediction" and default["label"] == default["explain"]["output"]["predictions"][0]


def test_an_uploaded_image_takes_the_fields_in_its_query_string(port):
    images_module()
    png = png_bytes(draw_strokes(STROKES[1], side=200))
    status, _, body = request(port, "POST", "/api/lesson?label=2&weight=1,400,5&epsilon=0.001&ink=dark", png,
                              {"Content-Type": "image/png"})
    answer = json.loads(body)
    assert status == 200, answer
    assert answer["input"] == {"kind": "image"} and answer["label"] == 2 and answer["check"]["weight"] == [1, 400, 5]
    status, message = error_of(request(port, "POST", "/api/lesson?weight=1,400", png, {"Content-Type": "image/png"}))
    assert status == 400 and '"weight"' in message


@pytest.mark.parametrize("document, field, phrase", [
    ({"index": 0, "split": "train"}, "split", '"split" must be one of validation, test'),
    ({"index": 30, "split": "validation"}, "index", '"index" must be an integer from 0 to 29'),
    ({"index": -1}, "index", '"index"'),
    ({"index": "3"}, "index", '"index"'),
    ({"test_index": 30}, "test_index", '"test_index" must be an integer from 0 to 29'),
    ({"input": [0] * 784, "split": "test"}, "split", '"split" goes with "index"'),
    ({"index": 0, "label": 10}, "label", '"label" must be a class, an integer from 0 to 9'),
    ({"index": 0, "label": True}, "label", '"label"'),
    ({"index": 0, "lr": 0}, "lr", '"lr" must be a number above 0 and at most 1000'),
    ({"index": 0, "lr": "fast"}, "lr", '"lr"'),
    ({"index": 0, "weight": [4, 0, 0]}, "weight", '"weight" must be [layer, i, j] with layer 1..3'),
    ({"index": 0, "weight": [1, 784, 0]}, "weight", '"weight"'),
    ({"index": 0, "weight": [3, 0, 10]}, "weight", '"weight"'),
    ({"index": 0, "weight": [1, 2]}, "weight", '"weight"'),
    ({"index": 0, "weight": "1,2,3"}, "weight", '"weight"'),
    ({"index": 0, "epsilon": 0}, "epsilon", '"epsilon" must be a number above 0 and at most 0.1'),
    ({"index": 0, "epsilon": 0.5}, "epsilon", '"epsilon"'),
    ({"index": 0, "epsilon": None, "steps": 1}, "steps", 'unknown field "steps"'),
])
def test_bad_fields_are_400_with_one_line_naming_the_field(port, document, field, phrase):
    status, _, body = post_json(port, document, "/api/lesson")
    answer = json.loads(body)
    assert status == 400 and phrase in answer["error"] and "\n" not in answer["error"], answer
    assert answer["field"] == field


def test_bad_bodies_and_methods_are_refused_as_for_explain(port, net):
    assert error_of(post_json(port, {"ink": "dark"}, "/api/lesson"))[1].startswith("give one input")
    assert error_of(request(port, "POST", "/api/lesson", b"{nope", {"Content-Type": "application/json"}))[0] == 400
    assert error_of(request(port, "POST", "/api/lesson", b"hi", {"Content-Type": "text/plain"}))[0] == 415
    status, headers, _ = request(port, "GET", "/api/lesson")
    assert status == 405 and headers["Allow"] == "POST"
    with running(net) as bare:                                              # no data set: no data-set digit
        status, message = error_of(post_json(bare, {"split": "test", "index": 0}, "/api/lesson"))
    assert status == 400 and '"index" needs a data set' in message
    assert lesson_of(port, {"index": 0})["steps"]                           # and it goes on serving


def test_lessons_never_change_the_served_model(port, net):
    images_module()
    before = [a.tobytes() for a in net.weights + net.biases]
    seven = drawing(draw_strokes(STROKES[7]))
    predicted = json.loads(post_json(port, seven)[2])
    for document in ({"index": 1, "lr": 1000.0}, {"index": 1, "weight": [1, 300, 2], "epsilon": 0.1},
                     {**seven, "label": 0, "lr": 500.0}):
        answer = lesson_of(port, document)
        update = answer["steps"][-1]["update"]
        assert update["loss_after"] != update["loss_before"]                # the step was taken, on a copy
    assert [a.tobytes() for a in net.weights + net.biases] == before
    assert json.loads(post_json(port, seven)[2])["probabilities"] == predicted["probabilities"]


def test_a_lesson_during_a_run_leaves_its_weights_alone(tmp_path):
    data = validate_splits(make_blobs(300, 40, 40, n_features=784, n_classes=10, seed=2), source="blobs")
    with live_server(data, out_dir=tmp_path) as (port, live):
        start(port, epochs=1000)
        wait_until(lambda: call(port, "GET", "/api/train")[1]["progress"]["batch"] > 3)
        assert call(port, "POST", "/api/train/control", {"action": "pause"})[1]["status"] == "paused"
        run = live.run
        trained = [a.copy() for a in run.model.weights + run.model.biases]
        shown = [a.copy() for a in run.live[0] + run.live[1]]
        for document in ({"split": "validation", "index": 3, "lr": 1000.0},
                         {"split": "test", "index": 0, "weight": [1, 100, 5], "epsilon": 0.1}):
            status, answer = call(port, "POST", "/api/lesson", document)
            assert status == 200, answer
            assert answer["model"]["sizes"] == [784, 16, 10]
        for now, then in zip(run.model.weights + run.model.biases, trained):
            np.testing.assert_array_equal(now, then)
        for now, then in zip(run.live[0] + run.live[1], shown):
            np.testing.assert_array_equal(now, then)
        assert call(port, "POST", "/api/train/control", {"action": "resume"})[1]["status"] == "running"
        call(port, "POST", "/api/train/control", {"action": "stop"})


def test_a_quadratic_cost_model_gets_its_own_output_error_and_a_check_that_agrees(data):
    net = MLP((784, 10, 10), loss="mse", activation="tanh", seed=1)
    with running(net, None, data) as port:
        answer = lesson_of(port, {"split": "validation", "index": 5, "weight": [1, 200, 3]})
    output = next(s for s in answer["steps"] if s["id"] == "backward-2")
    assert output["formula"].startswith("Δ_2 = (A_2 − Y) ⊙ A_2 ⊙ (1 − A_2)")
    for unit in output["units"]:
        assert unit["delta"] == pytest.approx((unit["a"] - unit["y"]) * unit["f_prime"], rel=1e-12)
    check = answer["check"]
    assert check["predicted"] != 0
    assert check["weight"] == [1, 200, 3] and check["measured"] == pytest.approx(check["predicted"], rel=1e-4, abs=1e-12)
    assert answer["steps"][-1]["update"]["lr_source"] == "sgd's default; the model file records none"
