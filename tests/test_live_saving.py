"""What a run from the page leaves: saved models, and the snapshots replay reads."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from bptrain.app.serve import live_run
from bptrain.core.errors import SettingError
from bptrain.app.serve.form import check_run_fits
from bptrain.app.serve.snapshots import thin_evenly, weight_tiles
from bptrain.core.network import MLP
from bptrain.core.training import TrainSettings
from bptrain.data.model_io import load_model, save_model
from conftest import invoke
from digits import STROKES, draw_strokes
from live_client import call, live_server, one_line_error, request, start, state, wait_until
from live_client import digits, digits_path, trainer  # noqa: F401  (fixtures)


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
