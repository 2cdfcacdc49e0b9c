"""The commands beyond train/eval end to end: early stopping, best-epoch saving, predict, plot, gradcheck,
bench, download, info, and every --help.

All data is synthetic and every file lives in tmp_path; the download tests talk to a local HTTP server on
127.0.0.1 only.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bptrain.app import bench as bench_module
from bptrain.fast import threads as cores
from bptrain.data import download as download_module
from bptrain.app import gradcheck as gradcheck_module
from bptrain.app.commands import cli
from bptrain.data.download import MNIST_FILENAME
from bptrain.data.loader import load_dataset
from bptrain.data.model_io import load_model, save_model
from bptrain.core.network import MLP
from bptrain import TrainSettings, train

from conftest import assert_clean_error, invoke, local_http_server, make_blobs, py2_pickle_bytes, write_py2_pickle

SIZES = "20,16,3"
FAST = ["--sizes", SIZES, "--epochs", "3", "--lr", "0.5", "--batch-size", "16", "--augment", "0"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"




def ok(result):
    assert result.exit_code == 0, f"exit {result.exit_code}:\n{result.output}\n{result.exception!r}"
    return result


def history_of(model_path: Path) -> dict:
    return json.loads(model_path.with_name(model_path.name.removesuffix(".npy") + ".history.json").read_text())


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_png(path: Path) -> None:
    width, height = png_size(path)
    assert width > 200 and height > 200, (path, width, height)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 20-16-3 model trained once on the synthetic set through the CLI: (data path, model path)."""
    directory = tmp_path_factory.mktemp("commands")
    data = write_py2_pickle(directory / "synthetic.pkl.gz", make_blobs())
    out = directory / "model.npy"
    ok(CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(out), *FAST, "--seed", "3", "-q"]))
    return data, out


# ====================================================================== 1. early stopping
def test_early_stopping_stops_once_validation_accuracy_stalls(runner, tmp_path, synthetic_data):
    # The blobs reach 100% validation accuracy within a few epochs; after that nothing can improve on it.
    out = tmp_path / "m.npy"
    result = ok(invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "--epochs", 40,
                       "--lr", "0.02", "--batch-size", 16, "--early-stopping", 2, "--augment", 0, "--seed", 3))
    history = history_of(out)
    epochs = [e["epoch"] for e in history["epochs"]]
    assert len(epochs) < 40 and epochs == list(range(1, len(epochs) + 1))
    assert history["stopped_early"] is True and history["interrupted"] is False
    assert "early stopping" in result.stdout
    best = history["best_epoch"]
    assert epochs[-1] - best == 2  # exactly --early-stopping epochs after the best one
    accuracies = [e["val_accuracy"] for e in history["epochs"]]
    assert accuracies[best - 1] == max(accuracies)
    assert all(a <= accuracies[best - 1] for a in accuracies[best:])  # the last two did not improve
    assert history["settings"]["early_stopping"] == 2
    _, meta = load_model(out)
    assert meta["best_epoch"] == best


def test_without_early_stopping_all_epochs_run(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    result = ok(invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "--epochs", 6,
                       "--lr", "0.02", "--batch-size", 16, "--augment", 0, "--seed", 3))
    history = history_of(out)
    assert len(history["epochs"]) == 6 and history["stopped_early"] is False
    assert "early stopping" not in result.stdout


# ====================================================================== 2. the best epoch is saved
def test_cli_saves_the_best_epoch_not_the_last(runner, tmp_path, synthetic_data):
    # Two good epochs at lr 0.3, then a step schedule with gamma 30 jumps to lr 9, which wrecks the network.
    out = tmp_path / "m.npy"
    ok(invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "--epochs", 4, "--lr", "0.3",
              "--batch-size", 16, "--momentum", 0, "--schedule", "step", "--step-size", 2, "--gamma", 30,
              "--augment", 0, "--seed", 1, "-q"))
    history = history_of(out)
    records = history["epochs"]
    best = max(records, key=lambda e: e["val_accuracy"])  # max() keeps the first of equals, as train does
    assert history["best_epoch"] == best["epoch"]
    # the scenario really has a worse last epoch (else this test would test nothing)
    assert best["epoch"] < records[-1]["epoch"] and records[-1]["val_accuracy"] < best["val_accuracy"] - 0.1

    model, meta = load_model(out)
    assert meta["best_epoch"] == best["epoch"]
    assert meta["val_accuracy"] == best["val_accuracy"]
    result = ok(invoke(runner, "eval", out, "--data", synthetic_data, "--split", "validation", "--json"))
    report = json.loads(result.stdout)
    assert report["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-12)
    assert report["accuracy"] != pytest.approx(records[-1]["val_accuracy"])


def test_train_leaves_the_model_holding_the_best_snapshot(synthetic_data, monkeypatch):
    """With a scripted validation accuracy per epoch, the model ends with exactly the best epoch's parameters."""
    dataset = load_dataset(synthetic_data)
    y_val = dataset.validation.y
    scripted = [0.40, 0.80, 0.60, 0.80, 0.70]  # best: epoch 2 (a tie later does not count)
    model = MLP((20, 16, 3), seed=0)
    real_evaluate = model.evaluate
    calls = iter(scripted)

    def evaluate(x, y, *args, **kwargs):
        loss, _ = real_evaluate(x, y, *args, **kwargs)
        wrong = len(y_val) - round(next(calls) * len(y_val))
        predictions = y_val.copy()
        predictions[:wrong] = (predictions[:wrong] + 1) % 3
        return loss, predictions

    monkeypatch.setattr(model, "evaluate", evaluate)
    snapshots = {}

    def on_epoch(record, improved):
        snapshots[record.epoch] = [p.copy() for p in model.weights + model.biases]

    settings = TrainSettings(lr=0.05, epochs=len(scripted), batch_size=32, seed=0)
    result = train(model, dataset, settings, engine="reference", progress=False, on_epoch=on_epoch)
    assert [r.val_accuracy for r in result.history] == pytest.approx(scripted)
    assert result.best_epoch == 2 and result.best_val_accuracy == pytest.approx(0.80)
    assert not result.stopped_early
    final = model.weights + model.biases
    for saved, now in zip(snapshots[2], final):
        np.testing.assert_array_equal(saved, now)
    assert any(not np.array_equal(saved, now) for saved, now in zip(snapshots[5], final))


# ====================================================================== 3. predict
@pytest.fixture
def test_images(blobs):
    return blobs[2][0][:12]  # float32 in [0, 1], 20 features


def test_predict_float_npy_matches_the_model(runner, tmp_path, trained, test_images):
    _, model_path = trained
    model, _ = load_model(model_path)
    images = tmp_path / "images.npy"
    np.save(images, test_images)
    result = ok(invoke(runner, "predict", model_path, images))
    lines = result.stdout.splitlines()
    assert len(lines) == len(test_images)
    expected = model.predict(test_images)
    for i, line in enumerate(lines):
        match = re.fullmatch(r"(\d+): (\d+) \((\d+\.\d)%\)", line)
        assert match, line
        assert int(match.group(1)) == i and int(match.group(2)) == expected[i]
        assert 0 <= float(match.group(3)) <= 100


@pytest.mark.parametrize("kind", ["float", "uint8"])
def test_predict_json_top_k(runner, tmp_path, trained, test_images, kind):
    _, model_path = trained
    model, _ = load_model(model_path)
    if kind == "float":
        array, seen = test_images, test_images
    else:
        array = np.round(test_images * 255).astype(np.uint8)
        seen = array.astype(np.float32) / np.float32(255)
    images = tmp_path / f"{kind}.npy"
    np.save(images, array)
    result = ok(invoke(runner, "predict", model_path, images, "--json", "--top-k", 2))
    document = json.loads(result.stdout)
    assert document["model"] == str(model_path) and document["input"] == str(images)
    predictions = document["predictions"]
    assert [p["index"] for p in predictions] == list(range(len(array)))
    assert [p["class"] for p in predictions] == model.predict(seen).tolist()
    proba = model.predict_proba(seen)
    for row, p in zip(proba, predictions):
        top = p["top"]
        assert len(top) == 2
        assert top[0]["class"] == p["class"] and top[0]["class"] != top[1]["class"]
        probabilities = [t["probability"] for t in top]
        assert all(0.0 <= q <= 1.0 for q in probabilities)
        assert probabilities == sorted(probabilities, reverse=True)
        assert probabilities == pytest.approx([float(row[t["class"]]) for t in top], rel=1e-6)


def test_predict_top_k_beyond_the_classes_is_clamped(runner, tmp_path, trained, test_images):
    _, model_path = trained
    images = tmp_path / "images.npy"
    np.save(images, test_images[:2])
    document = json.loads(ok(invoke(runner, "predict", model_path, images, "--json", "--top-k", 7)).stdout)
    for p in document["predictions"]:
        assert sorted(t["class"] for t in p["top"]) == [0, 1, 2]
        assert sum(t["probability"] for t in p["top"]) == pytest.approx(1.0, abs=1e-5)


def test_predict_mse_model_scores_are_normalised(runner, tmp_path, test_images):
    model_path = tmp_path / "mse.npy"
    save_model(MLP((20, 16, 3), "mse", seed=5), model_path)
    images = tmp_path / "images.npy"
    np.save(images, test_images[:3])
    document = json.loads(ok(invoke(runner, "predict", model_path, images, "--json", "--top-k", 3)).stdout)
    for p in document["predictions"]:
        assert sum(t["probability"] for t in p["top"]) == pytest.approx(1.0, abs=1e-6)


def test_predict_wrong_width_is_a_clean_error(runner, tmp_path, trained):
    _, model_path = trained
    images = tmp_path / "wide.npy"
    np.save(images, np.zeros((4, 21), np.float32))
    line = assert_clean_error(invoke(runner, "predict", model_path, images), "21 features")
    assert "expects 20" in line


# ====================================================================== 4. plot
@pytest.fixture
def square_model(runner, tmp_path):
    """A 16-8-3 model trained on 4x4 synthetic images, with its history: (data path, model path)."""
    data = write_py2_pickle(tmp_path / "square.pkl.gz", make_blobs(300, 90, 90, n_features=16, seed=1, spread=0.25))
    out = tmp_path / "square.npy"
    ok(invoke(runner, "train", "--data", data, "--out", out, "--sizes", "16,8,3", "--epochs", 2, "--lr", "0.1",
              "--batch-size", 16, "--augment", 0, "-q"))
    return data, out


def test_plot_history_writes_curves(runner, tmp_path, trained):
    pytest.importorskip("matplotlib")
    _, model_path = trained
    history = model_path.with_name("model.history.json")
    result = ok(invoke(runner, "plot", history, "--out-dir", tmp_path))
    written = [tmp_path / "model.curves.png", tmp_path / "model.speed.png"]
    assert result.stdout.splitlines() == [f"wrote {path}" for path in written]
    for path in written:
        assert_png(path)


def test_plot_model_writes_all_pictures(runner, tmp_path, square_model):
    pytest.importorskip("matplotlib")
    data, model_path = square_model
    result = ok(invoke(runner, "plot", model_path, "--data", data))
    names = ["confusion", "mistakes", "weights", "curves", "speed"]
    paths = [tmp_path / f"square.{name}.png" for name in names]
    assert result.stdout.splitlines() == [f"wrote {p}" for p in paths]
    for path in paths:
        assert_png(path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_plot_model_with_non_square_inputs_writes_nothing_or_what_it_can(runner, tmp_path, trained):
    """Either refuse before writing anything, or draw what needs no square images (and exit 0)."""
    pytest.importorskip("matplotlib")
    data, model_path = trained
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = invoke(runner, "plot", model_path, "--data", data, "--out-dir", out_dir)
    assert result.exit_code == 0, result.output
    assert_png(out_dir / "model.confusion.png")
    assert_png(out_dir / "model.curves.png")
    assert "not square images" in result.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.confusion.png", "model.curves.png",
                                                         "model.speed.png"]


def test_plot_without_matplotlib_says_how_to_install(runner, tmp_path, trained, monkeypatch):
    _, model_path = trained
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    result = invoke(runner, "plot", model_path.with_name("model.history.json"), "--out-dir", tmp_path)
    assert_clean_error(result, "pip install 'bptrain[plot]'", exit_code=1)
    assert list(tmp_path.iterdir()) == []


# ====================================================================== 5. gradcheck
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_gradcheck_passes(runner, loss):
    result = ok(invoke(runner, "gradcheck", "--sizes", "12,5,3", "--max-entries", 0, "--loss", loss))
    assert "all passed" in result.stdout and "FAIL" not in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.rstrip().endswith("pass")]
    assert len(rows) == 4


def test_gradcheck_json(runner):
    document = json.loads(ok(invoke(runner, "gradcheck", "--sizes", "12,5,3", "--max-entries", 0, "--json")).stdout)
    assert document["passed"] is True and document["sizes"] == [12, 5, 3]
    rows = {(r["layer"], r["name"]): r for r in document["rows"]}
    assert sorted(rows) == [(1, "W"), (1, "b"), (2, "W"), (2, "b")]
    assert rows[1, "W"]["shape"] == [12, 5] and rows[1, "W"]["checked"] == 60
    assert rows[2, "W"]["checked"] == 15
    assert all(r["passed"] and r["relative_error"] < document["tolerance"] for r in rows.values())


def test_gradcheck_fails_with_zero_tolerance(runner, monkeypatch):
    monkeypatch.setattr(gradcheck_module, "TOLERANCE", 0.0)
    result = invoke(runner, "gradcheck", "--sizes", "12,5,3", "--max-entries", 0)
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.stdout and "all passed" not in result.stdout
    assert "Traceback" not in result.output


def test_gradcheck_catches_a_broken_backward(runner, monkeypatch):
    from bptrain.core.network import Gradients

    real = MLP.backward

    def wrong_by_half(self, activations, y_onehot):
        grads = real(self, activations, y_onehot)
        return Gradients(grads.deltas, [1.5 * g for g in grads.weights], [1.5 * g for g in grads.biases])

    monkeypatch.setattr(MLP, "backward", wrong_by_half)
    result = invoke(runner, "gradcheck", "--sizes", "12,5,3", "--max-entries", 0, "--json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["passed"] is False and not any(r["passed"] for r in document["rows"])
    assert all(r["relative_error"] == pytest.approx(0.2, abs=1e-3) for r in document["rows"])  # |1.5-1|/2.5


# ====================================================================== 6. bench
@pytest.fixture
def small_gemm(monkeypatch):
    """A 256x256 GEMM for the peak measurement instead of 2048 (seconds saved, same code path)."""
    monkeypatch.setattr(bench_module, "gemm_peak_gflops", functools.partial(bench_module.gemm_peak_gflops, n=256))


def test_bench_json_on_synthetic_data(runner, tmp_path, monkeypatch, small_gemm):
    monkeypatch.chdir(tmp_path)  # no data/mnist.pkl.gz here: synthetic 784-pixel images, shifts possible
    result = ok(invoke(runner, "bench", "--sizes", "784,16,10", "--batch-size", 64, "--runs", 1, "--warmup", 0,
                       "--samples", 2000, "--json"))
    document = json.loads(result.stdout)
    assert document["gemm_peak_gflops"] > 0
    assert document["samples"] == 2000 and "synthetic" in document["data"]
    assert document["sizes"] == [784, 16, 10]
    plain_threads, default_threads = (row["threads"] for row in document["rows"])
    # 0.8 M multiply-adds per step: momentum takes one BLAS thread; plain SGD keeps OpenBLAS's
    assert plain_threads == cores.describe((784, 16, 10), 64, "gemm")
    assert default_threads == cores.describe((784, 16, 10), 64, "gemm+axpy")
    assert default_threads.startswith("1")
    default = document["settings"]["default"]
    assert (default["momentum"], default["weight_decay"], default["augment"]) == (0.9, 1e-4, 1)
    assert document["settings"]["plain"]["description"] == "SGD without momentum, weight decay or shifts"
    plain, default_row = document["rows"]  # both settings by default, plain first
    assert (plain["settings"], default_row["settings"]) == ("plain", "default")
    for row in (plain, default_row):
        assert row["batch_size"] == 64 and len(row["runs"]) == 1
        assert row["seconds_per_epoch"] > 0 and row["ratio_to_floor"] > 0 and row["samples_per_second"] > 0
    assert plain["ratio_to_plain"] is None
    # one pair: the ratio of its two epochs (runs are rounded to 0.1 ms in the output)
    assert default_row["ratio_to_plain"] == pytest.approx(default_row["runs"][0] / plain["runs"][0], rel=0.05)


def test_bench_text_on_real_file(runner, tmp_path, synthetic_data, small_gemm):
    result = ok(invoke(runner, "bench", "--sizes", SIZES, "--batch-size", 16, "--batch-size", 600, "--runs", 1,
                       "--warmup", 0, "--data", synthetic_data))
    lines = result.stdout.splitlines()
    assert str(synthetic_data) in lines[0] and "600 samples" in lines[0]
    assert lines[1] == "plain: SGD without momentum, weight decay or shifts"
    # 20-pixel inputs are no square images: like train, the default settings run without shifts
    assert lines[2] == "default: momentum 0.9, weight decay 0.0001, no shifts (bptrain train's defaults)"
    assert lines[3].startswith("threads: BLAS threads of the steps")
    assert lines[4].startswith("GEMM peak")
    assert lines[5].split()[:3] == ["settings", "batch", "s/epoch"] and "threads" in lines[5].split()
    rows = [line.split() for line in lines[6:]]
    assert [(r[0], r[1]) for r in rows] == [("plain", "16"), ("default", "16"), ("plain", "600"), ("default", "600")]
    assert len(rows[0]) == len(rows[1]) - 1  # only default rows have the "x plain" column filled


@pytest.mark.parametrize("choice", ["plain", "default"])
def test_bench_times_only_the_chosen_settings(runner, synthetic_data, small_gemm, choice):
    result = ok(invoke(runner, "bench", "--sizes", SIZES, "--batch-size", 16, "--runs", 1, "--warmup", 0,
                       "--data", synthetic_data, "--settings", choice, "--json"))
    document = json.loads(result.stdout)
    assert list(document["settings"]) == [choice]
    assert [(r["settings"], r["ratio_to_plain"]) for r in document["rows"]] == [(choice, None)]


def test_bench_rejects_an_unknown_settings_name(runner, synthetic_data, small_gemm):
    assert_clean_error(invoke(runner, "bench", "--data", synthetic_data, "--settings", "adam"), "settings",
                       exit_code=2)


def test_bench_missing_data_is_a_clean_error(runner, tmp_path, small_gemm):
    assert_clean_error(invoke(runner, "bench", "--sizes", "784,16,10", "--runs", 1, "--data",
                              tmp_path / "missing.pkl.gz"), "missing.pkl.gz")


def test_bench_sizes_not_fitting_the_data(runner, synthetic_data, small_gemm):
    assert_clean_error(invoke(runner, "bench", "--sizes", "784,16,10", "--runs", 1, "--data", synthetic_data),
                       "does not fit", exit_code=2)


# ====================================================================== 7. download
# Any bytes would do for `download`; a small synthetic data set lets `train` use what it downloaded.
PAYLOAD = gzip.compress(py2_pickle_bytes(make_blobs(60, 30, 30)), mtime=0)
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Mirror(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        if self.path == "/mnist.pkl.gz":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        else:
            self.send_error(404, "Not Found")

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(monkeypatch):
    """A local mirror of PAYLOAD made the only one `bptrain download` knows; yields the request log."""
    requests: list[str] = []
    handler = type("Handler", (Mirror,), {"requests": requests})
    with local_http_server(handler) as base_url:
        monkeypatch.setattr(download_module, "MIRRORS", (f"{base_url}/mnist.pkl.gz",))
        monkeypatch.setattr(download_module, "MNIST_SIZE", len(PAYLOAD))
        monkeypatch.setattr(download_module, "MNIST_MD5", PAYLOAD_MD5)
        # the size and checksum defaults are bound when download_mnist is defined
        defaults = download_module.download_mnist.__kwdefaults__
        monkeypatch.setitem(defaults, "expected_size", len(PAYLOAD))
        monkeypatch.setitem(defaults, "expected_md5", PAYLOAD_MD5)
        yield requests


def test_download_then_already_there_then_force(runner, tmp_path, mirror):
    dest = tmp_path / "new" / "data"
    target = dest / MNIST_FILENAME
    result = ok(invoke(runner, "download", "--dest", dest))
    assert target.read_bytes() == PAYLOAD
    assert "downloaded" in result.stdout and str(target) in result.stdout
    assert mirror == ["/mnist.pkl.gz"]
    assert sorted(p.name for p in dest.iterdir()) == [MNIST_FILENAME]

    result = ok(invoke(runner, "download", "--dest", dest))
    assert "already there" in result.stdout and "--force" in result.stdout
    assert mirror == ["/mnist.pkl.gz"]  # no request

    target.write_bytes(b"stale copy")
    result = ok(invoke(runner, "download", "--dest", dest, "--force"))
    assert "downloaded" in result.stdout and target.read_bytes() == PAYLOAD
    assert mirror == ["/mnist.pkl.gz", "/mnist.pkl.gz"]


def test_download_with_every_mirror_failing_is_a_clean_error(runner, tmp_path, mirror, monkeypatch):
    base = download_module.MIRRORS[0].rsplit("/", 1)[0]
    monkeypatch.setattr(download_module, "MIRRORS", (f"{base}/gone",))
    line = assert_clean_error(invoke(runner, "download", "--dest", tmp_path), "HTTP 404", exit_code=1)
    assert "--data" in line
    assert list(tmp_path.iterdir()) == []


def test_train_downloads_the_default_data_when_missing(runner, tmp_path, mirror, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ok(invoke(runner, "train", "--out", "m.npy", *FAST))
    assert (tmp_path / "data" / MNIST_FILENAME).read_bytes() == PAYLOAD
    assert "downloading" in result.stderr
    assert mirror == ["/mnist.pkl.gz"]
    assert (tmp_path / "m.npy").exists()


def test_train_without_data_and_no_download_points_to_bptrain_download(runner, tmp_path, mirror, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = assert_clean_error(invoke(runner, "train", "--no-download", "--out", "m.npy", *FAST), "no data at")
    assert "bptrain download" in line and "data/mnist.pkl.gz" in line
    assert mirror == [] and not (tmp_path / "data").exists() and not (tmp_path / "m.npy").exists()


# ====================================================================== 8. info
def test_info_json(runner, trained):
    _, model_path = trained
    info = json.loads(ok(invoke(runner, "info", model_path, "--json")).stdout)
    model, meta = load_model(model_path)
    assert info["sizes"] == [20, 16, 3] and info["loss"] == "ce"
    n_parameters = sum(w.size + b.size for w, b in zip(model.weights, model.biases))
    assert info["parameters"] == n_parameters == 20 * 16 + 16 + 16 * 3 + 3
    assert info["settings"]["lr"] == 0.5 and info["settings"]["batch_size"] == 16 and info["settings"]["augment"] == 0
    history = history_of(model_path)
    best = history["epochs"][history["best_epoch"] - 1]
    assert info["val_accuracy"] == best["val_accuracy"] and info["best_epoch"] == history["best_epoch"]
    assert info["checkpoint"].startswith("none")  # the run completed: no checkpoint is beside the model
    assert {k: v for k, v in info.items() if k not in ("parameters", "checkpoint")} == meta


# ====================================================================== 9. --help everywhere
@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_subcommand_has_help(runner, command):
    result = ok(invoke(runner, command, "--help"))
    assert result.stdout.startswith(f"Usage: cli {command}") or f" {command} " in result.stdout.splitlines()[0]
    assert "--help" in result.stdout


def test_help_lists_every_subcommand(runner):
    result = ok(invoke(runner, "--help"))
    for command in cli.commands:
        assert command in result.stdout


# ====================================================================== resume and augmentation
def test_resume_never_replaces_the_model_with_a_worse_one(runner, tmp_path, synthetic_data):
    """A resumed run whose epochs all do worse (a huge learning rate) saves the model it started from."""
    first, second = tmp_path / "first.npy", tmp_path / "second.npy"
    ok(invoke(runner, "train", "--data", synthetic_data, "--out", first, *FAST, "-q"))
    start_model, start_meta = load_model(first)
    ok(invoke(runner, "train", "--data", synthetic_data, "--resume", first, "--out", second, "--epochs", "2",
              "--lr", "8", "--batch-size", "16", "-q"))
    history = history_of(second)
    assert all(e["val_accuracy"] < start_meta["val_accuracy"] for e in history["epochs"]), history
    resumed, meta = load_model(second)
    for a, b in zip(resumed.weights + resumed.biases, start_model.weights + start_model.biases):
        np.testing.assert_array_equal(a, b)
    assert meta["best_epoch"] == start_meta["epochs_trained"]


def test_explicit_augment_on_non_square_inputs_is_refused_before_training(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "--augment", "1")
    assert_clean_error(result, "square images", exit_code=2)
    assert result.stdout == "" and not out.exists()
