"""Training from the page: `bptrain serve`'s training API, over real HTTP, on a real server on a free port.

The runs train small networks on small synthetic data (784 features, 10 classes: square images like
MNIST's, so the weight tiles and the drawing pad work), with the same trainer as `bptrain train`.
The event stream is read with a raw socket client, line by line, as a browser's EventSource reads it.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bptrain.app import memory
from bptrain.app.serve import events as events_module, live_run
from bptrain.core.errors import SettingError
from bptrain.app.serve import http as server
from bptrain.app.config import check_config
from bptrain.app.serve.form import check_run_fits
from bptrain.app.serve.session import LiveTraining
from bptrain.app.serve.snapshots import thin_evenly, weight_tiles
from bptrain.app.options import FORM_OPTIONS, TRAIN_OPTIONS
from bptrain.app.paths import is_history_file
from bptrain.core.errors import ConfigError
from bptrain.core.network import MLP
from bptrain.core.training import EpochRecord, TrainSettings
from bptrain.data.loader import load_dataset
from bptrain.data.model_io import load_model, save_model
from conftest import assert_clean_error, invoke, write_py2_pickle
from digits import STROKES, draw_strokes

SMALL = "784,16,10"  # a network that trains in milliseconds an epoch


# ------------------------------------------------------------------ fixtures and clients
def smooth_digits(n_train=600, n_validation=200, n_test=100, seed=1, noise=1.0):
    """Synthetic 28x28 "digits": each class a few soft blobs of ink at its own places, under strong noise.
    Smooth, so shifting an image by a pixel (train's default augmentation) keeps its class; noisy, so a
    small network takes a few epochs to read them (about 50, 80, 90% after 1, 2, 4 epochs)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:28, 0:28]
    centres = []
    for _ in range(10):
        picture = np.zeros((28, 28))
        for cy, cx in rng.uniform(6, 22, size=(3, 2)):
            picture += np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * 3.0 ** 2))
        centres.append(np.clip(picture, 0, 1).reshape(-1))
    splits = []
    for n in (n_train, n_validation, n_test):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        x = np.array(centres)[labels] + rng.normal(0, noise, size=(n, 784))
        splits.append((np.clip(x, 0, 1).astype(np.float32), labels.astype(np.int64)))
    return tuple(splits)


@pytest.fixture(scope="module")
def digits_path(tmp_path_factory) -> Path:
    """Synthetic data shaped like MNIST: 784 features in [0, 1], 10 classes; 600 training images."""
    return write_py2_pickle(tmp_path_factory.mktemp("data") / "digits.pkl.gz", smooth_digits())


@pytest.fixture(scope="module")
def digits(digits_path):
    return load_dataset(digits_path)


@contextlib.contextmanager
def live_server(dataset=None, **options):
    """A training server on 127.0.0.1 at a free port, in a thread; yields (port, its LiveTraining)."""
    live = LiveTraining(dataset=dataset, **options)
    httpd = server.make_server(None, "127.0.0.1", 0, live=live)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], live
    finally:
        live.close(timeout=30)
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def trainer(digits, tmp_path):
    with live_server(digits, out_dir=tmp_path) as (port, live):
        yield port, live


def request(port, method, path, body=None, headers=None):
    """One request on a fresh connection, with this server's own Host; returns (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def call(port, method, path, document=None, headers=None):
    """(status, JSON answer) of a request with a JSON body."""
    body = None if document is None else json.dumps(document).encode()
    sent = {"Content-Type": "application/json", **(headers or {})} if document is not None else headers
    status, _, answer = request(port, method, path, body, sent)
    return status, json.loads(answer)


def start(port, **settings):
    status, answer = call(port, "POST", "/api/train", {"sizes": SMALL, "batch_size": 10, **settings})
    assert status == 200, answer
    return answer


def state(port):
    return call(port, "GET", "/api/train")[1]


def wait_until(condition, timeout=60, every=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def one_line_error(status_answer, status=400):
    got, answer = status_answer
    assert got == status, answer
    assert answer["error"] and "\n" not in answer["error"]
    return answer["error"]


class Events:
    """A client of GET /api/train/events on a raw socket: reads the stream in a thread, keeps every event."""

    def __init__(self, port, host=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(f"GET /api/train/events HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        self.file = self.sock.makefile("rb")
        self.status_line = self.file.readline().decode()
        self.headers = {}
        while (line := self.file.readline().decode().strip()):
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.events, self.comments, self.ended = [], [], False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while line := self.file.readline():
                text = line.decode("utf-8").rstrip("\n")
                with self.changed:
                    if text.startswith("data: "):
                        self.events.append(json.loads(text[6:]))
                    elif text.startswith(":"):
                        self.comments.append(text)
                    self.changed.notify_all()
        except (OSError, ValueError):
            pass
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_for(self, predicate, timeout=60):
        """The first event (from the start) for which ``predicate(event)`` holds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = next((e for e in self.events if predicate(e)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    raise AssertionError(f"no such event; got {[e['type'] for e in self.events]}")
                self.changed.wait(left)

    def of(self, kind):
        with self.changed:
            return [e for e in self.events if e["type"] == kind]

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@contextlib.contextmanager
def events(port, **kwargs):
    client = Events(port, **kwargs)
    try:
        yield client
    finally:
        client.close()


# ------------------------------------------------------------------ the form
def test_the_form_is_the_options_table_without_the_files(trainer):
    port, _ = trainer
    status, form = call(port, "GET", "/api/train/form")
    assert status == 200
    names = [field["name"] for field in form["options"]]
    assert names == [option.name for option in FORM_OPTIONS]
    assert not {"data", "out", "history", "resume", "no_download", "quiet"} & set(names)
    assert {"sizes", "activation", "loss", "optimizer", "lr", "momentum", "batch_size", "epochs", "augment",
            "elastic_alpha", "affine_rotate"} <= set(names)
    fields = {field["name"]: field for field in form["options"]}
    table = {option.name: option for option in TRAIN_OPTIONS}
    for name, field in fields.items():  # the same defaults as `bptrain train`
        expected = table[name].default_value()
        assert field["value"] == expected, name
    assert fields["augment"]["value"] == 1 and fields["sizes"]["value"] == "784,128,64,10"
    assert fields["optimizer"]["choices"] == ["sgd", "adam"] and fields["batch_size"]["min"] == 1
    assert form["can_train"] and form["reason"] is None and form["continue"] is None
    assert form["data"] == {"train": 600, "validation": 200, "features": 784, "classes": 10, "name": "digits.pkl.gz"}
    assert "/" not in json.dumps(form["data"])  # no file paths in the API


def test_presets_fill_the_form(digits, tmp_path):
    with live_server(digits, presets={"epochs": 3, "lr": 0.05, "sizes": (784, 30, 10), "data": "x"}) as (port, _):
        fields = {f["name"]: f["value"] for f in call(port, "GET", "/api/train/form")[1]["options"]}
        assert (fields["epochs"], fields["lr"], fields["sizes"]) == (3, 0.05, "784,30,10")
        run = start(port, sizes="784,30,10")  # presets are defaults: what the request leaves out
        assert run["settings"]["epochs"] == 3 and run["settings"]["lr"] == 0.05


# ------------------------------------------------------------------ bad settings
def cli_config_message(runner, tmp_path, key, value) -> str:
    """What `bptrain train --config` says about ``key = value``, without the file's name."""
    config = tmp_path / "bad.toml"
    config.write_text(f"{key} = {json.dumps(value)}\n")
    line = assert_clean_error(invoke(runner, "train", "--config", config, "--out", tmp_path / "m.npy"))
    return line.split(f"{config}: ", 1)[1].rstrip(")").split(" (see ")[0]


@pytest.mark.parametrize("key, value", [("lr", 0), ("lr", -0.5), ("epochs", 0), ("batch_size", 1.5),
                                        ("momentum", 1.0), ("optimizer", "rmsprop"), ("augment", 9),
                                        ("sizes", "784,x,10"), ("sizes", "784"), ("affine_rotate", 400),
                                        ("weight_decay", "lots"), ("nesterov", "yes")])
def test_a_bad_setting_is_400_with_the_clis_message_beside_its_field(trainer, runner, tmp_path, key, value):
    port, _ = trainer
    status, answer = call(port, "POST", "/api/train", {key: value})
    assert status == 400 and answer["field"] == key
    with pytest.raises(ConfigError) as cli_error:
        check_config({key: value}, None)
    assert answer["error"] == str(cli_error.value)
    assert cli_config_message(runner, tmp_path, key, value) in str(cli_error.value)  # the CLI's own words
    assert state(port)["status"] == "idle"


@pytest.mark.parametrize("document, phrase, status", [
    ({"data": "/etc/passwd"}, "requests carry no file paths", 400),
    ({"out": "model.npy"}, "requests carry no file paths", 400),
    ({"history": "h.json"}, "requests carry no file paths", 400),
    ({"resume": "m.npy"}, "requests carry no file paths", 400),
    ({"bogus": 1}, "unknown setting 'bogus'", 400),
    ({"sizes": "20,5,10"}, "input width 20 but the images have 784 features", 400),
    ({"sizes": "784,5,3"}, "3 output classes but the data has labels for 10 classes", 400),
    ({"batch_size": 601}, "batch_size 601 is larger than the 600 training samples", 400),
    ({"sizes": "784,8000,8000,10"}, "the page trains networks of at most 50,000,000", 400),
    ({"epochs": 5000}, "more than the page runs at once", 400),
    ({"sizes": ",".join(["784"] + ["2"] * 40 + ["10"])}, "the page trains at most 32", 400),
    ({"nesterov": True, "momentum": 0.0}, "Nesterov momentum needs a momentum above 0", 400),
    ({"continue": True}, "no model to continue", 400),
    ({"continue": "yes"}, '"continue" must be true or false', 400),
    ([1, 2], "expected a JSON object of settings", 400),
])
def test_settings_the_page_may_not_ask_for_are_400(trainer, document, phrase, status):
    port, _ = trainer
    message = one_line_error(call(port, "POST", "/api/train", document), status)
    assert phrase in message, message


def test_malformed_or_untyped_bodies_are_refused(trainer):
    port, _ = trainer
    status, _, body = request(port, "POST", "/api/train", b"{nope", {"Content-Type": "application/json"})
    assert status == 400 and "malformed JSON" in json.loads(body)["error"]
    status, _, body = request(port, "POST", "/api/train", b"epochs=3", {"Content-Type": "text/plain"})
    assert status == 415
    status, _, _ = request(port, "POST", "/api/train", b"x" * (3 << 20), {"Content-Type": "application/json"})
    assert status == 413
    assert request(port, "PUT", "/api/train")[0] == 405 and request(port, "GET", "/api/train/start")[0] == 404


# ------------------------------------------------------------------ a run, watched
def test_a_run_streams_progress_epochs_and_weights_in_order(trainer):
    port, _ = trainer
    with events(port) as stream:
        assert stream.status_line.startswith("HTTP/1.1 200")
        assert stream.headers["content-type"] == "text/event-stream" and stream.headers["cache-control"] == "no-cache"
        first = stream.wait_for(lambda e: True)
        assert first == {"type": "state", "state": {"run": None, "status": "idle", "can_train": True,
                                                    "reason": None, "tiles": None, "history": None}}
        run = start(port, epochs=4)
        assert run["status"] == "running" and run["first_epoch"] == 1 and run["last_epoch"] == 4
        done = stream.wait_for(lambda e: e["type"] == "status" and e["status"] == "finished")
        assert "best validation accuracy" in done["message"]
        stream.wait_for(lambda e: e["type"] == "progress" and e["status"] == "finished")
        stream.wait_for(lambda e: e["type"] == "weights" and e["status"] == "finished")
        states = [e for e in stream.events if e["type"] == "state"]
        assert states[-1]["state"]["run"] == run["run"]
        epochs = stream.of("epoch")
        assert [e["record"]["epoch"] for e in epochs] == [1, 2, 3, 4]
        fields = set(EpochRecord.__dataclass_fields__)
        assert all(set(e["record"]) == fields for e in epochs)  # each epoch's record, as the history file has it
        assert all(np.array(e["confusion"]).sum() == 200 for e in epochs)
        assert epochs[-1]["snapshots"] == [0, 1, 2, 3, 4] and epochs[-1]["record"]["val_accuracy"] > 0.7
        progress = stream.of("progress")
        where = [(p["epoch"], p["batch"]) for p in progress]
        assert where == sorted(where) and progress[-1]["status"] == "finished"
        points = [point for p in progress for point in p["loss"]]
        xs = [x for x, _ in points]
        assert xs == sorted(xs) and 60 <= len(points) <= 4 * 21  # about 20 running-loss points an epoch
        assert all(p["images_per_second"] is None or p["images_per_second"] > 0 for p in progress)
        weights = stream.of("weights")
        assert weights and all(w["tiles"]["count"] == 16 and w["tiles"]["side"] == 28 for w in weights)
        tiles = base64.b64decode(weights[-1]["tiles"]["tiles"])
        assert len(tiles) == 16 * 784 and len(set(tiles)) > 50
        order = [e["type"] for e in stream.events]
        assert order.index("status") > max(i for i, kind in enumerate(order) if kind == "epoch")
    final = state(port)
    assert final["status"] == "finished" and [r["epoch"] for r in final["epochs"]] == [1, 2, 3, 4]
    assert final["epochs"] == [e["record"] for e in epochs]
    assert len(final["loss_points"]) == len(points)


def test_events_are_throttled_and_small(trainer):
    port, _ = trainer
    with events(port) as stream:
        start(port, epochs=1000, batch_size=5)
        time.sleep(2.0)
        call(port, "POST", "/api/train/control", {"action": "stop"})
        stream.wait_for(lambda e: e["type"] == "status" and e["status"] == "stopped")
        progress = stream.of("progress")
    assert len(progress) <= 2.0 / events_module.EVENT_INTERVAL + 4  # not one per callback (100 an epoch)
    assert len(progress) >= 4  # but several a second


def test_a_heartbeat_keeps_a_quiet_stream_open(trainer, monkeypatch):
    monkeypatch.setattr(events_module, "HEARTBEAT_SECONDS", 0.2)
    port, _ = trainer
    with events(port) as stream:
        wait_until(lambda: len(stream.comments) >= 2, timeout=10)
    assert set(stream.comments) == {": heartbeat"}


# ------------------------------------------------------------------ the knobs
def progress_now(port):
    return state(port)["progress"]


def test_pause_stops_the_steps_and_resume_goes_on(trainer):
    port, _ = trainer
    start(port, epochs=1000)
    wait_until(lambda: progress_now(port)["batch"] > 3)
    status, answer = call(port, "POST", "/api/train/control", {"action": "pause"})
    assert status == 200 and answer["status"] == "paused" and answer["taken"]
    where = progress_now(port)
    time.sleep(0.6)
    assert progress_now(port) == {**where, "elapsed_seconds": where["elapsed_seconds"],
                                  "eta_seconds": where["eta_seconds"]}  # no step advanced
    assert state(port)["status"] == "paused"
    status, answer = call(port, "POST", "/api/train/control", {"action": "resume"})
    assert status == 200 and answer["status"] == "running"
    wait_until(lambda: (progress_now(port)["epoch"], progress_now(port)["batch"]) > (where["epoch"], where["batch"]))
    status, answer = call(port, "POST", "/api/train/control", {"action": "stop"})
    assert status == 200 and answer["status"] == "stopped"


def test_the_learning_rate_and_momentum_set_mid_run_are_recorded(trainer):
    port, _ = trainer
    start(port, epochs=1000, schedule="cosine")
    wait_until(lambda: progress_now(port)["batch"] > 3)
    status, answer = call(port, "POST", "/api/train/control", {"lr": 0.0123, "momentum": 0.5})
    assert status == 200 and answer["taken"] and answer["lr"] == 0.0123 and answer["momentum"] == 0.5
    assert answer["lr_by_hand"]

    def changed_in():  # the epoch whose record has the change (epochs of 600 images are quick)
        return next((r["epoch"] for r in state(port)["epochs"]
                     if any(c.get("momentum") == 0.5 for c in r["controls"] or [])), None)

    wait_until(lambda: changed_in() is not None and len(state(port)["epochs"]) >= changed_in() + 1)
    call(port, "POST", "/api/train/control", {"action": "stop"})
    records = {r["epoch"]: r for r in state(port)["epochs"]}
    first, after = records[changed_in()], records[changed_in() + 1]
    assert {"lr": 0.0123} in [{k: v for k, v in c.items() if k == "lr"} for c in first["controls"]]
    assert any(c.get("momentum") == 0.5 for c in first["controls"])
    assert first["lr"] == 0.0123
    # set by hand, it replaces the schedule: the next epoch starts with it again, and says so
    assert after["lr"] == 0.0123 and after["controls"] == [{"batch": 0, "lr": 0.0123}]


def test_the_saved_history_says_what_the_knobs_did(trainer, tmp_path):
    port, _ = trainer
    start(port, epochs=1000)
    wait_until(lambda: progress_now(port)["batch"] > 3)
    call(port, "POST", "/api/train/control", {"lr": 0.02})
    changed_in = progress_now(port)["epoch"]
    wait_until(lambda: len(state(port)["epochs"]) >= changed_in)  # that epoch ended: its record says so
    call(port, "POST", "/api/train/control", {"action": "stop"})
    status, answer = call(port, "POST", "/api/train/save", {"name": "knobs.npy"})
    assert status == 200 and answer["history"] == "knobs.history.json"
    history = json.loads((tmp_path / "knobs.history.json").read_text())
    assert is_history_file(tmp_path / "knobs.history.json") and history["interrupted"]
    assert any(c.get("lr") == 0.02 for record in history["epochs"] for c in record["controls"] or [])


@pytest.mark.parametrize("document, phrase", [
    ({"action": "jump"}, '"action" must be "pause", "resume" or "stop"'),
    ({"lr": -1}, "lr must be a finite number above 0, got -1"),
    ({"lr": 0}, "lr must be a finite number above 0, got 0"),
    ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ({"lr": True}, "lr must be a number"),
    ({"momentum": 1.5}, "momentum must be in (0, 1), got 1.5"),
    ({"momentum": 0}, "momentum must be in (0, 1), got 0.0"),
    ({"momentum": "high"}, "momentum must be a number"),
    ({"speed": 2}, "unknown key 'speed'"),
    ({}, 'send {"action"'),
    (["pause"], "expected a JSON object"),
])
def test_bad_control_messages_are_400_and_the_run_goes_on(trainer, document, phrase):
    port, _ = trainer
    start(port, epochs=1000)
    message = one_line_error(call(port, "POST", "/api/train/control", document))
    assert phrase in message, message
    batch = progress_now(port)["batch"]
    wait_until(lambda: progress_now(port)["batch"] != batch)
    assert state(port)["status"] == "running"


def test_control_without_a_run_is_409_and_adam_changes_beta1(trainer):
    port, _ = trainer
    assert "no run is in progress" in one_line_error(call(port, "POST", "/api/train/control", {"action": "pause"}), 409)
    start(port, epochs=1000, momentum=0.0)
    message = one_line_error(call(port, "POST", "/api/train/control", {"momentum": 0.5}))
    assert message == "this run has no momentum to change (it started with momentum 0)"
    call(port, "POST", "/api/train/control", {"action": "stop"})
    start(port, epochs=1000, optimizer="adam")
    assert "beta1 must be in (0, 1)" in one_line_error(call(port, "POST", "/api/train/control", {"momentum": 1.0}))
    status, answer = call(port, "POST", "/api/train/control", {"momentum": 0.8})
    assert status == 200 and answer["momentum"] == 0.8
    assert "already in progress" in one_line_error(call(port, "POST", "/api/train", {"sizes": SMALL}), 409)


def test_a_diverging_run_is_reported_as_the_cli_words_it(trainer):
    port, _ = trainer
    with events(port) as stream:
        start(port, epochs=5, lr=1e6, momentum=0.0, batch_size=1)
        error = stream.wait_for(lambda e: e["type"] == "error")
    assert error["status"] == "diverged"
    assert error["message"].startswith("training diverged in epoch 1: the loss reached")
    assert error["message"].endswith("the learning rate 1e+06 is too large, try a smaller --lr")
    assert state(port)["status"] == "diverged"
    assert "nothing to save" in one_line_error(call(port, "POST", "/api/train/save", {"name": "x.npy"}), 409)
    status, _ = call(port, "GET", "/api/model")
    assert status == 200  # the pad still reads drawings, with the last parameters that made sense


# ------------------------------------------------------------------ saving
def test_save_writes_a_model_that_bptrain_eval_loads(trainer, tmp_path, runner, digits_path):
    port, _ = trainer
    run = start(port, epochs=3)
    wait_until(lambda: state(port)["status"] == "finished")
    assert run["proposed_name"] == "model-784-16-10.npy"
    status, answer = call(port, "POST", "/api/train/save", {"name": "live.npy"})
    best = state(port)["best_epoch"]
    assert status == 200 and answer["saved"] == "live.npy" and answer["epochs_trained"] == best >= 1
    model, meta = load_model(tmp_path / "live.npy")
    assert model.sizes == (784, 16, 10) and meta["best_epoch"] == best and meta["settings"]["epochs"] == 3
    assert meta["epochs_run"] == 3
    result = invoke(runner, "eval", tmp_path / "live.npy", "--data", digits_path, "--split", "validation", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(meta["val_accuracy"], abs=0.011)
    # the download is the same file
    status, headers, body = request(port, "GET", "/api/train/model")
    assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="model-784-16-10.npy"'
    (tmp_path / "downloaded.npy").write_bytes(body)
    downloaded, downloaded_meta = load_model(tmp_path / "downloaded.npy")
    assert downloaded_meta == meta
    for a, b in zip(downloaded.weights + downloaded.biases, model.weights + model.biases):
        np.testing.assert_array_equal(a, b)
    # saving again under the same name replaces our own file
    assert call(port, "POST", "/api/train/save", {"name": "live.npy"})[0] == 200


def test_save_during_a_run_writes_the_best_epoch_so_far(trainer, tmp_path):
    port, live = trainer
    start(port, epochs=1000)
    wait_until(lambda: len(state(port)["epochs"]) >= 2)
    status, answer = call(port, "POST", "/api/train/save", {"name": "midway.npy"})
    assert status == 200 and answer["epochs_trained"] >= 1
    model, meta = load_model(tmp_path / "midway.npy")
    assert meta["best_epoch"] == answer["epochs_trained"] and state(port)["status"] == "running"


@pytest.mark.parametrize("name", ["../up.npy", "a/b.npy", "/tmp/x.npy", "x.txt", ".hidden.npy", "", "x" * 120 + ".npy",
                                  "con\u00e9.npy", 7])
def test_save_takes_plain_file_names_only(trainer, name):
    port, _ = trainer
    start(port, epochs=1)
    wait_until(lambda: state(port)["status"] == "finished")
    message = one_line_error(call(port, "POST", "/api/train/save", {"name": name}))
    assert "plain file name ending in .npy" in message


def test_save_never_replaces_someone_elses_file_nor_one_the_server_reads(digits, digits_path, tmp_path):
    served = save_model(MLP((784, 16, 10)), tmp_path / "served.npy")
    (tmp_path / "notes.npy").write_text("my notes, not a model")
    (tmp_path / "other.history.json").write_text("[]")
    with live_server(digits, out_dir=tmp_path, model=MLP((784, 16, 10)),
                     inputs={"MODEL": [served], "--data": [digits_path]}) as (port, _):
        start(port, epochs=1)
        wait_until(lambda: state(port)["status"] == "finished")
        message = one_line_error(call(port, "POST", "/api/train/save", {"name": "notes.npy"}))
        assert message.startswith("notes.npy already exists and is not a bptrain model")
        message = one_line_error(call(port, "POST", "/api/train/save", {"name": "other.npy"}))
        assert "other.history.json already exists" in message
        message = one_line_error(call(port, "POST", "/api/train/save", {"name": "served.npy"}))
        assert message == "name served.npy is the same file as MODEL served.npy; choose another name"
    assert (tmp_path / "notes.npy").read_text() == "my notes, not a model"
    assert (tmp_path / "other.history.json").read_text() == "[]"


def test_nothing_to_save_or_fetch_before_a_run(trainer):
    port, _ = trainer
    for path in ("/api/train/snapshots", "/api/train/model", "/api/train/snapshot?epoch=0"):
        assert "press Train" in one_line_error(call(port, "GET", path), 409)
    assert "press Train" in one_line_error(call(port, "POST", "/api/train/save", {"name": "x.npy"}), 409)


# ------------------------------------------------------------------ replay
def test_snapshots_are_listed_fetched_and_predict(trainer, tmp_path):
    images = pytest.importorskip("bptrain.app.images")
    port, _ = trainer
    start(port, epochs=3, seed=4)
    wait_until(lambda: state(port)["status"] == "finished")
    status, listing = call(port, "GET", "/api/train/snapshots")
    assert status == 200 and [s["epoch"] for s in listing["snapshots"]] == [0, 1, 2, 3]
    assert listing["snapshots"][0]["val_accuracy"] is None and listing["snapshots"][3]["val_accuracy"] > 0.5
    assert listing["max"] == 64 and listing["bytes_each"] == (784 * 16 + 16 + 16 * 10 + 10) * 4
    status, first = call(port, "GET", "/api/train/snapshot?epoch=0")
    assert status == 200 and first["epoch"] == 0 and first["record"] is None
    assert np.array(first["confusion"]).sum() == 200 and first["tiles"]["count"] == 16
    status, headers, body = request(port, "GET", "/api/train/snapshot?epoch=0&format=npy")
    assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="model-784-16-10-epoch0.npy"'
    (tmp_path / "epoch0.npy").write_bytes(body)
    at_start, _ = load_model(tmp_path / "epoch0.npy")
    initial = MLP((784, 16, 10), seed=4)  # epoch 0: the random weights the run started from
    for a, b in zip(at_start.weights + at_start.biases, initial.weights + initial.biases):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    gray = draw_strokes(STROKES[7])
    drawing = {"width": 140, "height": 140, "pixels": gray.reshape(-1).tolist()}
    x = images.preprocess(gray.astype(np.float32) / 255.0).reshape(1, -1)
    status, answer = call(port, "POST", "/api/predict", {**drawing, "snapshot": 0})
    assert status == 200 and answer["snapshot"] == 0
    np.testing.assert_allclose(answer["probabilities"], initial.predict_proba(x)[0], rtol=1e-4, atol=1e-6)
    status, now = call(port, "POST", "/api/predict", drawing)
    final, _ = load_model_from(port, tmp_path)
    np.testing.assert_allclose(now["probabilities"], final.predict_proba(x)[0], rtol=1e-4, atol=1e-6)
    assert "no snapshot of epoch 9" in one_line_error(call(port, "GET", "/api/train/snapshot?epoch=9"), 404)
    assert "no snapshot of epoch 9" in one_line_error(call(port, "POST", "/api/predict", {**drawing, "snapshot": 9}), 404)
    for query in ("", "?epoch=-1", "?epoch=x", "?epoch=1&format=zip"):
        assert call(port, "GET", f"/api/train/snapshot{query}")[0] == 400
    assert "snapshot" in one_line_error(call(port, "POST", "/api/predict", {**drawing, "snapshot": "first"}))


def load_model_from(port, tmp_path):
    _, _, body = request(port, "GET", "/api/train/model")
    (tmp_path / "now.npy").write_bytes(body)
    return load_model(tmp_path / "now.npy")


def test_snapshots_are_thinned_evenly_within_their_caps(trainer, monkeypatch):
    port, _ = trainer
    monkeypatch.setattr(live_run, "MAX_SNAPSHOTS", 5)
    start(port, epochs=12)
    wait_until(lambda: state(port)["status"] == "finished")
    kept = [s["epoch"] for s in call(port, "GET", "/api/train/snapshots")[1]["snapshots"]]
    assert len(kept) == 5 and kept[0] == 0 and kept[-1] == 12
    assert max(np.diff(kept)) <= 2 * min(np.diff(kept)) + 1  # about evenly spread
    one = (784 * 16 + 16 + 16 * 10 + 10) * 4
    monkeypatch.setattr(live_run, "MAX_SNAPSHOTS", 64)
    monkeypatch.setattr(live_run, "SNAPSHOT_BYTES", 3 * one + 100)  # room for three
    start(port, epochs=6)
    wait_until(lambda: state(port)["status"] == "finished")
    kept = [s["epoch"] for s in call(port, "GET", "/api/train/snapshots")[1]["snapshots"]]
    assert kept == [0, 3, 6] or (len(kept) == 3 and kept[0] == 0 and kept[-1] == 6)


def test_thin_evenly():
    class S:
        def __init__(self, epoch):
            self.epoch = epoch

    snapshots = [S(e) for e in range(0, 101)]
    thin_evenly(snapshots, 11)
    kept = [s.epoch for s in snapshots]
    assert len(kept) == 11 and kept[0] == 0 and kept[-1] == 100
    assert max(np.diff(kept)) <= 2 * min(np.diff(kept))
    thin_evenly(snapshots, 1)
    assert [s.epoch for s in snapshots] == [100]


def test_weight_tiles_are_one_byte_per_weight_each_at_its_own_scale():
    w1 = np.zeros((784, 300), np.float32)
    w1[0, :] = 2.0
    w1[1, :] = -1.0
    tiles = weight_tiles(w1)
    assert (tiles["count"], tiles["units"], tiles["side"]) == (256, 300, 28)
    data = np.frombuffer(base64.b64decode(tiles["tiles"]), np.uint8).reshape(256, 784)
    assert (data[:, 0] == 255).all() and (data[:, 1] == 64).all() and (data[:, 2:] == 128).all()  # 128 - 127/2
    assert weight_tiles(np.ones((20, 4), np.float32)) is None  # not square images: no tiles


def test_check_run_fits():
    settings = TrainSettings(batch_size=32, epochs=10)
    check_run_fits((784, 128, 64, 10), settings, 50_000)
    with pytest.raises(SettingError, match="at most 50,000,000") as caught:
        check_run_fits((784, 10_000, 5_000, 10), settings, 50_000)
    assert caught.value.field == "sizes"
    with pytest.raises(SettingError, match="larger than the 20 training samples"):
        check_run_fits((784, 10), settings, 20)


# ------------------------------------------------------------------ many clients, and who may drive
def test_concurrent_clients_see_the_same_run_and_a_burst_of_controls_breaks_nothing(trainer, monkeypatch):
    monkeypatch.setattr(events_module, "HEARTBEAT_SECONDS", 0.3)  # a closed client is noticed at the next write
    port, live = trainer
    clients = [Events(port) for _ in range(5)]
    try:
        start(port, epochs=6, batch_size=5)
        dropped = Events(port)
        dropped.wait_for(lambda e: e["type"] == "progress")
        dropped.close()  # a tab closed mid-run
        body = [{"lr": 0.05}, {"action": "pause"}, {"action": "resume"}, {"momentum": 0.8}, {"lr": "bad"}]

        def control(i):
            return call(port, "POST", "/api/train/control", body[i % len(body)])[0]

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(control, range(80)))
        assert set(statuses) <= {200, 400, 409} and statuses.count(400) == 16
        call(port, "POST", "/api/train/control", {"action": "resume"})
        for client in clients:
            client.wait_for(lambda e: e["type"] == "status" and e["status"] in ("finished", "stopped"), timeout=120)
        records = [[e["record"] for e in client.of("epoch")] for client in clients]
        assert all(r == records[0] for r in records) and [r["epoch"] for r in records[0]] == list(range(1, 7))
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: live.events._streams == 0, timeout=10)
    assert state(port)["status"] == "finished" and request(port, "GET", "/")[0] == 200


@pytest.mark.parametrize("headers, phrase", [
    ({"Host": "evil.example"}, "does not name this server"),
    ({"Host": "evil.example:{port}"}, "does not name this server"),
    ({"Host": "127.0.0.1:1"}, "does not name this server"),
    ({"Host": "127.0.0.1:{port}", "Origin": "http://evil.example"}, "another web site"),
    ({"Host": "127.0.0.1:{port}", "Origin": "null"}, "another web site"),
    ({"Host": "127.0.0.1:{port}", "Origin": "http://localhost:{port}"}, "another web site"),
])
def test_changes_come_only_from_this_servers_own_page(trainer, headers, phrase):
    port, _ = trainer
    headers = {k: v.format(port=port) for k, v in headers.items()}
    for path, document in (("/api/train", {"sizes": SMALL}), ("/api/train/control", {"action": "stop"}),
                           ("/api/train/save", {"name": "x.npy"})):
        message = one_line_error(call(port, "POST", path, document, headers), 403)
        assert phrase in message
    assert state(port)["status"] == "idle"


def test_own_origin_and_names_are_accepted_and_reads_check_the_host(trainer):
    port, _ = trainer
    run = call(port, "POST", "/api/train", {"sizes": SMALL, "epochs": 1},
               {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"})
    assert run[0] == 200
    assert call(port, "GET", "/api/train", headers={"Host": "attacker.example"})[0] == 403
    with events(port, host="attacker.example") as stream:
        assert stream.status_line.startswith("HTTP/1.1 403")
    assert server.own_host(f"[::1]:{port}", ("127.0.0.1", port))
    assert not server.own_host("localhost", ("127.0.0.1", port))  # port 80, not ours
    assert server.own_host(f"192.168.1.5:{port}", ("0.0.0.0", port))
    assert not server.own_host(f"evil.example:{port}", ("0.0.0.0", port))


def test_the_drawing_pad_reads_with_the_network_as_it_is(trainer):
    images = pytest.importorskip("bptrain.app.images")
    port, live = trainer
    gray = draw_strokes(STROKES[1])
    drawing = {"width": 140, "height": 140, "pixels": gray.reshape(-1).tolist()}
    assert "press Train" in one_line_error(call(port, "POST", "/api/predict", drawing), 409)
    assert "press Train" in one_line_error(call(port, "GET", "/api/model"), 409)
    start(port, epochs=1000)
    wait_until(lambda: progress_now(port)["batch"] > 3)
    assert call(port, "POST", "/api/train/control", {"action": "pause"})[1]["status"] == "paused"
    weights, biases = live.run.live  # the float32 copy the request threads read: taken as it paused
    expected = MLP((784, 16, 10), weights=weights, biases=biases).predict_proba(
        images.preprocess(gray.astype(np.float32) / 255.0).reshape(1, -1))[0]
    status, answer = call(port, "POST", "/api/predict", drawing)
    assert status == 200
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-5, atol=1e-7)
    status, model = call(port, "GET", "/api/model")
    assert status == 200 and model["sizes"] == [784, 16, 10]
    call(port, "POST", "/api/train/control", {"action": "stop"})


def test_without_data_the_page_draws_and_says_why_it_cannot_train(tmp_path):
    model = MLP((784, 16, 10), seed=1)
    problem = "no data at data/mnist.pkl.gz; run `bptrain download`"
    with live_server(None, data_problem=problem, model=model, meta={"val_accuracy": 0.5}) as (port, _):
        form = call(port, "GET", "/api/train/form")[1]
        assert not form["can_train"] and form["reason"] == problem
        assert form["continue"]["sizes"] == [784, 16, 10]
        assert one_line_error(call(port, "POST", "/api/train", {}), 409) == f"cannot train: {problem}"
        assert call(port, "GET", "/api/model")[1]["val_accuracy"] == 0.5
        tiles = state(port)["tiles"]
        assert tiles["count"] == 16


def test_a_served_model_is_continued_from_its_epochs(digits, tmp_path):
    model = MLP((784, 16, 10), seed=2)
    with live_server(digits, model=model, meta={"epochs_trained": 5, "init": "xavier"}) as (port, _):
        assert call(port, "GET", "/api/train/form")[1]["continue"]["epochs_trained"] == 5
        message = one_line_error(call(port, "POST", "/api/train", {"continue": True, "sizes": "784,30,10"}))
        assert message == ("sizes 784,30,10 conflicts with the continued model's sizes 784,16,10; "
                           "leave sizes out when continuing")
        run = call(port, "POST", "/api/train", {"continue": True, "epochs": 2, "batch_size": 10})[1]
        assert (run["first_epoch"], run["last_epoch"], run["snapshots"]) == (6, 7, [5])
        wait_until(lambda: state(port)["status"] == "finished")
        assert [r["epoch"] for r in state(port)["epochs"]] == [6, 7]
        # and once more: from where the last run ended
        best = state(port)["best_epoch"]  # what a continued run starts from: the best epoch's parameters
        assert best in (6, 7) and call(port, "GET", "/api/train/form")[1]["continue"]["epochs_trained"] == best
        run = call(port, "POST", "/api/train", {"continue": True, "epochs": 1, "batch_size": 10})[1]
        assert run["first_epoch"] == best + 1
    np.testing.assert_array_equal(model.weights[0], MLP((784, 16, 10), seed=2).weights[0])  # untouched


def test_data_that_is_not_square_images_trains_without_tiles(blobs, tmp_path):
    from bptrain.data.loader import Dataset, Split

    data = Dataset(*(Split(x, y) for x, y in blobs), source="blobs")
    with live_server(data) as (port, _):
        form = {f["name"]: f["value"] for f in call(port, "GET", "/api/train/form")[1]["options"]}
        assert form["augment"] == 0  # as train: shifts need square images
        assert "distort square images" in one_line_error(call(port, "POST", "/api/train",
                                                              {"sizes": "20,8,3", "affine_rotate": 10}))
        assert "augment shifts square images" in one_line_error(call(port, "POST", "/api/train",
                                                                     {"sizes": "20,8,3", "augment": 1}))
        with events(port) as stream:
            start(port, sizes="20,8,3", epochs=2)
            stream.wait_for(lambda e: e["type"] == "status" and e["status"] == "finished")
            assert all(w["tiles"] is None for w in stream.of("weights"))
        assert "not a square image" in one_line_error(call(port, "GET", "/api/model"), 409)


# ------------------------------------------------------------------ the command
def serve_process(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "bptrain", "serve", "--port", "0", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def port_of(process) -> int:
    line = process.stdout.readline()
    assert line.startswith("serving the training page at http://127.0.0.1:"), line + process.stderr.read()
    return int(line.split()[5].rstrip("/").rsplit(":", 1)[1])


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_server_saves_the_runs_best_model_to_out(tmp_path, digits_path, stop_signal):
    pytest.importorskip("PIL")
    out = tmp_path / "best.npy"
    process = serve_process("--data", digits_path, "--out", out, "--sizes", SMALL, "--batch-size", 10,
                            "--epochs", 1000)
    try:
        port = port_of(process)
        assert start(port)["settings"]["epochs"] == 1000
        wait_until(lambda: len(state(port)["epochs"]) >= 2)
        process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert stdout.strip() == "stopped" and "Traceback" not in stderr
    assert f"run 1 stopped: saved {out}" in stderr
    model, meta = load_model(out)
    history = json.loads(out.with_name("best.history.json").read_text())
    assert model.sizes == (784, 16, 10) and meta["best_epoch"] >= 1 and len(history["epochs"]) >= 2
    assert history["interrupted"] and meta["best_epoch"] == history["best_epoch"]


def test_stopping_the_server_without_out_says_the_run_was_not_saved(tmp_path, digits_path):
    pytest.importorskip("PIL")
    process = serve_process("--data", digits_path, "--sizes", SMALL, "--batch-size", 10, "--epochs", 1000,
                            "--out-dir", tmp_path)
    try:
        port = port_of(process)
        start(port)
        wait_until(lambda: progress_now(port)["batch"] > 0)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0 and stdout.strip() == "stopped"
    assert "it was not saved (give --out FILE to save every run)" in stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_presets_the_form_from_the_command_line_and_a_config(tmp_path, digits_path):
    pytest.importorskip("PIL")
    config = tmp_path / "x.toml"
    config.write_text('epochs = 7\nlr = 0.3\nactivation = "relu"\n')
    process = serve_process("--data", digits_path, "--config", config, "--lr", 0.05, "--batch-size", 16)
    try:
        port = port_of(process)
        fields = {f["name"]: f["value"] for f in call(port, "GET", "/api/train/form")[1]["options"]}
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (fields["epochs"], fields["lr"], fields["activation"], fields["batch_size"]) == (7, 0.05, "relu", 16)


def test_serve_without_a_model_needs_data(runner, tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "serve", "--no-download", "--port", 0)
    assert_clean_error(result, "nothing to serve: no data at data/mnist.pkl.gz")
    assert_clean_error(invoke(runner, "serve", "--data", tmp_path / "missing.pkl.gz", "--port", 0), "no data at")
    assert_clean_error(invoke(runner, "serve", "--out-dir", tmp_path / "nowhere", "--port", 0), "--out-dir")
    (tmp_path / "notes.npy").write_text("not a model")
    assert_clean_error(invoke(runner, "serve", "--out", tmp_path / "notes.npy", "--port", 0), "not a bptrain model",
                       exit_code=2)
    assert_clean_error(invoke(runner, "serve", "--lr", 0, "--port", 0), "--lr", exit_code=2)


def test_a_run_that_would_not_fit_in_memory_gets_a_400_and_the_server_goes_on(monkeypatch, trainer):
    """The page's training checks the memory a run needs like `bptrain train`: one line, a 400, nothing started."""
    from bptrain.app import memory

    port, _ = trainer
    monkeypatch.setattr(memory, "available_bytes", lambda root="/": 50 * 10**6)
    status, answer = call(port, "POST", "/api/train", {"sizes": "784,4000,10", "batch_size": 10})
    assert status == 400, answer
    assert "784-4000-10 at batch 10 needs about" in answer["error"] and "available" in answer["error"]
    assert "\n" not in answer["error"]
    assert state(port).get("run") in (None, {}) or state(port)["run"] is None
    monkeypatch.setattr(memory, "available_bytes", lambda root="/": None)  # nothing known: it goes on
    start(port, epochs=1)


def test_a_stopped_run_continued_from_the_page_ends_as_one_that_never_stopped(digits, tmp_path):
    settings = {"sizes": SMALL, "batch_size": 10, "epochs": 40, "seed": 4}
    with live_server(digits, out_dir=tmp_path) as (port, live):
        start(port, **settings)
        wait_until(lambda: state(port)["status"] == "finished")
        status, _, whole = request(port, "GET", "/api/train/model")
        whole_epochs = state(port)["epochs"]
        start(port, **settings)
        wait_until(lambda: len(state(port)["epochs"]) >= 2)
        assert call(port, "POST", "/api/train/control", {"action": "stop"})[1]["status"] == "stopped"
        form = call(port, "GET", "/api/train/form")[1]
        assert form["continue"]["note"].startswith("Continues the stopped run exactly at epoch")
        stopped_at = live.run.loop_state.epoch
        run = call(port, "POST", "/api/train", {"continue": True, **settings})[1]
        assert run["continued"]["exact"] and run["continued"]["from_epoch"] == stopped_at + 1
        assert run["continued"]["lr"] == pytest.approx(whole_epochs[stopped_at]["lr"])  # the schedule goes on
        wait_until(lambda: state(port)["status"] == "finished")
        status, _, continued = request(port, "GET", "/api/train/model")
        assert status == 200 and continued == whole
        strip = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
        assert strip(state(port)["epochs"]) == strip(whole_epochs)
        # a changed setting starts a new plan from the weights, and says so
        start(port, **settings)
        wait_until(lambda: len(state(port)["epochs"]) >= 1)
        call(port, "POST", "/api/train/control", {"action": "stop"})
        run = call(port, "POST", "/api/train", {"continue": True, **settings, "lr": 0.05, "epochs": 1})[1]
        assert not run["continued"]["exact"] and run["continued"]["lr"] == 0.05
        assert "a new plan from these weights: the schedule starts again at lr 0.05 (it last trained at" in \
            run["continued"]["note"]


@pytest.mark.parametrize("document, field", [({"epochs": int("9" * 1000)}, "epochs"), ({"lr": int("9" * 400)}, "lr"),
                                             ({"seed": int("9" * 300)}, "seed")])
def test_numbers_json_accepts_but_python_cannot_use_are_a_400(trainer, document, field):
    port, live = trainer
    status, answer = call(port, "POST", "/api/train", {"sizes": SMALL, **document})
    assert status == 400 and answer.get("field") == field, answer
    assert live.run is None


def test_what_the_page_caches_to_read_drawings_shares_the_kept_arrays(digits, tmp_path):
    """Replaying epochs and reading the live network copy nothing: the networks share the snapshots' arrays."""
    with live_server(digits, out_dir=tmp_path) as (port, live):
        start(port, epochs=4)
        wait_until(lambda: state(port)["status"] == "finished")
        run = live.run
        for snapshot in run.snapshots:
            predictor = live.predictor(snapshot.epoch)
            assert all(np.shares_memory(a, b) for a, b in zip(predictor.model.weights, snapshot.weights))
        live.predictor()
        with live.lock:
            run.live = ([w.copy() for w in run.live[0]], [b.copy() for b in run.live[1]])
            run.live_version += 1
        live.predictor()
        assert sum(key[0] == "live" for key in live._predictors) == 1  # an old live copy is not kept alive


def test_the_page_counts_every_copy_it_keeps(digits, tmp_path, monkeypatch):
    settings = TrainSettings(batch_size=10, epochs=5)
    sizes = (784, 2000, 10)
    params = 784 * 2000 + 2000 + 2000 * 10 + 10
    estimates = []
    real = memory.estimate
    monkeypatch.setattr(memory, "estimate", lambda *a, **k: estimates.append(k) or real(*a, **k))
    check_run_fits(sizes, settings, 600, digits)
    kept = estimates[-1]["kept_snapshots"]
    assert kept == min(64, (256 * 1024 * 1024) // (4 * params)) + 3  # the replay, the live copy, a stop's state


def test_the_page_checks_a_run_with_the_engine_its_form_names(trainer, monkeypatch):
    """The page and `train` give the same verdict: the estimate is the chosen engine's."""
    port, _ = trainer
    engines_seen = []
    real = memory.estimate
    monkeypatch.setattr(memory, "estimate", lambda *a, **k: engines_seen.append(k.get("engine")) or real(*a, **k))
    start(port, epochs=1, engine="reference")
    assert engines_seen[-1] == "reference"
    wait_until(lambda: state(port)["status"] == "finished")
