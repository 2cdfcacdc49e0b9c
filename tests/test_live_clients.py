"""Who may drive a run from the page, with what data, and `bptrain serve` as a process."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bptrain.app import memory
from bptrain.app.serve import events as events_module
from bptrain.app.serve import http as server
from bptrain.app.serve.form import check_run_fits
from bptrain.core.network import MLP
from bptrain.core.training import TrainSettings
from bptrain.data.model_io import load_model
from conftest import assert_clean_error, ended_at_exit, invoke
from digits import STROKES, draw_strokes
from live_client import (SMALL, Events, call, events, live_server, one_line_error, port_of, progress_now, request,
                         serve_process, start, state, wait_until)
from live_client import digits, digits_path, trainer  # noqa: F401  (fixtures)


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

@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_server_saves_the_runs_best_model_to_out(tmp_path, digits_path, stop_signal):
    pytest.importorskip("PIL")
    out = tmp_path / "best.npy"
    process = serve_process("--data", digits_path, "--out", out, "--sizes", SMALL, "--batch-size", 10,
                            "--epochs", 1000)
    with ended_at_exit(process):
        port = port_of(process)
        assert start(port)["settings"]["epochs"] == 1000
        wait_until(lambda: len(state(port)["epochs"]) >= 2)
        process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=60)
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
    with ended_at_exit(process):
        port = port_of(process)
        start(port)
        wait_until(lambda: progress_now(port)["batch"] > 0)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and stdout.strip() == "stopped"
    assert "it was not saved (give --out FILE to save every run)" in stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_presets_the_form_from_the_command_line_and_a_config(tmp_path, digits_path):
    pytest.importorskip("PIL")
    config = tmp_path / "x.toml"
    config.write_text('epochs = 7\nlr = 0.3\nactivation = "relu"\n')
    process = serve_process("--data", digits_path, "--config", config, "--lr", 0.05, "--batch-size", 16)
    with ended_at_exit(process):
        port = port_of(process)
        fields = {f["name"]: f["value"] for f in call(port, "GET", "/api/train/form")[1]["options"]}
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
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
