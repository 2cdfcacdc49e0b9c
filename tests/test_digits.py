"""The data set's digits over HTTP (bptrain/app/serve/digits.py): GET /api/digits[/cell|/random|/confusion],
read by the network on show; and what `bptrain serve MODEL` adds around them (the model's history in the
state, a finished run that was never saved named when the server stops). Real servers on free ports,
synthetic 28 x 28 digits."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from bptrain.app.history import history_path, load_history
from bptrain.app.metrics import confusion_matrix
from bptrain.core.network import MLP
from bptrain.data.loader import Dataset, Split
from conftest import ended_at_exit, invoke
from live_client import call, live_server, port_of, serve_process, start, state, wait_until
from live_client import digits as digits  # noqa: F401  (fixtures: synthetic MNIST-shaped data)
from live_client import digits_path as digits_path  # noqa: F401
from test_server import request, running

ROUTES = ("/api/digits", "/api/digits/cell?true=1&read=1", "/api/digits/random", "/api/digits/confusion")


@pytest.fixture(scope="module")
def model():
    return MLP((784, 16, 10), "ce", seed=3)


def test_a_cell_lists_its_digits_most_confident_first(digits, model):  # noqa: F811
    with live_server(digits, model=model) as (port, _):
        status, answer = call(port, "GET", "/api/digits")
        assert status == 200 and answer == {"available": True, "reason": None,
                                            "splits": {"validation": 200, "test": 100}}
        status, whole = call(port, "GET", "/api/digits/confusion")
        x, y = digits.validation
        probabilities = model.predict_proba(x)
        predictions = probabilities.argmax(axis=1)
        assert status == 200 and whole["confusion"] == confusion_matrix(y, predictions, 10).tolist()
        assert whole["accuracy"] == pytest.approx(float(np.mean(predictions == y)))
        true, read = max(((i, j) for i in range(10) for j in range(10) if i != j),
                         key=lambda cell: whole["confusion"][cell[0]][cell[1]])
        status, cell = call(port, "GET", f"/api/digits/cell?true={true}&read={read}&limit=5")
        assert status == 200 and cell["count"] == whole["confusion"][true][read] >= 1
        assert (cell["true"], cell["read"], cell["split"], cell["snapshot"]) == (true, read, "validation", None)
        shown = cell["digits"]
        assert len(shown) == min(5, cell["count"])
        assert [d["confidence"] for d in shown] == sorted((d["confidence"] for d in shown), reverse=True)
        for d in shown:
            assert (d["label"], d["prediction"], int(y[d["index"]])) == (true, read, true)
            assert d["confidence"] == pytest.approx(probabilities[d["index"], read], rel=1e-5)
            assert np.allclose(d["input"], x[d["index"]], atol=6e-4)
        # the diagonal: the digits it reads right
        status, right = call(port, "GET", f"/api/digits/cell?true={true}&read={true}&limit=48")
        assert right["count"] == whole["confusion"][true][true]
        status, random = call(port, "GET", "/api/digits/random")
        tx, ty = digits.test
        assert status == 200 and random["split"] == "test" and random["label"] == int(ty[random["index"]])
        assert np.allclose(random["input"], tx[random["index"]], atol=6e-4)
        # the digit's own pixels, sent back to /api/predict, are read as the answer said
        status, _, body = request(port, "POST", "/api/predict", json.dumps({"input": random["input"]}).encode(),
                                  {"Content-Type": "application/json"})
        assert status == 200 and json.loads(body)["prediction"] == random["prediction"]


@pytest.mark.parametrize("query, phrase", [
    ("/api/digits/cell?true=10&read=1", '"true" must be a class, an integer from 0 to 9'),
    ("/api/digits/cell?true=1", '"read" must be a class'),
    ("/api/digits/cell?true=1&read=2&limit=0", '"limit" must be an integer from 1 to 48'),
    ("/api/digits/cell?true=1&read=2&colour=red", 'unknown field "colour"'),
    ("/api/digits/random?split=train", '"split" must be one of validation, test'),
    ("/api/digits/confusion?snapshot=3", "no run yet, so no snapshots"),
])
def test_bad_questions_get_one_line(digits, model, query, phrase):  # noqa: F811
    with live_server(digits, model=model) as (port, _):
        status, answer = call(port, "GET", query)
        assert status in (400, 404) and phrase in answer["error"] and "\n" not in answer["error"], answer


def test_without_data_the_digits_say_why(model):
    with running(model) as port:  # a server of a model alone
        status, answer = call(port, "GET", "/api/digits")
        assert status == 200 and not answer["available"]
        assert answer["reason"].startswith("this server was started without a data set")
        for path in ROUTES[1:]:
            status, refused = call(port, "GET", path)
            assert status == 503 and refused["error"].startswith("no digits from the data: this server was started")
    other = Dataset(*(Split(np.zeros((4, 16), np.float32), np.arange(4) % 2) for _ in range(3)), source="small")
    with live_server(other, model=model) as (port, _):  # data the network cannot read
        answer = call(port, "GET", "/api/digits")[1]
        assert not answer["available"] and "16 pixels, but the network takes 784 inputs" in answer["reason"]


def test_every_digit_route_checks_the_host(digits, model):  # noqa: F811
    with live_server(digits, model=model) as (port, _):
        for path in ROUTES:
            status, answer = call(port, "GET", path, headers={"Host": f"evil.example:{port}"})
            assert status == 403 and "does not name this server" in answer["error"], path
            assert call(port, "GET", path)[0] == 200


def test_a_kept_epoch_reads_the_digits_its_own_way(digits, model):  # noqa: F811
    with live_server(digits, model=model) as (port, live):
        start(port, epochs=2, **{"continue": False})
        wait_until(lambda: state(port)["status"] == "finished")
        at_start = call(port, "GET", "/api/digits/confusion?snapshot=0")[1]
        at_end = call(port, "GET", "/api/digits/confusion")[1]
        assert at_start["snapshot"] == 0 and at_end["snapshot"] is None
        assert at_start["confusion"] == live.run.confusion(live.run.snapshot(0))
        assert at_start["accuracy"] < at_end["accuracy"]


def test_serve_model_puts_its_history_in_the_state_and_names_a_finished_run_left_unsaved(
        runner, tmp_path, digits_path):  # noqa: F811
    pytest.importorskip("PIL")
    out = tmp_path / "m.npy"
    assert invoke(runner, "train", "--data", digits_path, "--sizes", "784,16,10", "--epochs", 2, "--out", out,
                  "-q").exit_code == 0
    history = load_history(history_path(out))
    (tmp_path / "saves").mkdir()
    process = serve_process(out, "--data", digits_path, "--out-dir", tmp_path / "saves", "--batch-size", 10)
    with ended_at_exit(process):
        port = port_of(process)
        idle = state(port)
        assert idle["run"] is None and idle["history"]["epochs"] == history["epochs"]
        start(port, epochs=1, **{"continue": True})
        wait_until(lambda: state(port)["status"] == "finished")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and stdout.strip() == "stopped", stderr
    assert "the finished run (best validation accuracy" in stderr and "was not saved: press Save model" in stderr
