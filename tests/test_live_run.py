"""A run trained from the page and watched: the event stream, the knobs, divergence."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest

from bptrain.app.serve import events as events_module
from bptrain.app.paths import is_history_file
from bptrain.core.training import EpochRecord
from live_client import SMALL, call, events, one_line_error, progress_now, start, state, wait_until
from live_client import digits, digits_path, trainer  # noqa: F401  (fixtures)


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
