"""The commands on every data format: train, eval, predict, explain and serve on small synthetic sets, the
classes (their count sets the output layer, their names go into the model file and wherever a class is
shown), and the one line a command gives for data it cannot use."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bptrain.app.commands import cli
from bptrain.data.loader import load_dataset
from bptrain.data.model_io import load_model, read_model_record
from conftest import assert_clean_error, invoke
from test_data_formats import blobs, write_csv, write_idx_set, write_image_folder
from live_client import call, live_server

LETTERS = [chr(ord("a") + k) for k in range(26)]
QUICK = ("--epochs", "2", "--batch-size", "8", "--activation", "relu", "--quiet")


def train(runner, data, out, *args):
    result = invoke(runner, "train", "--data", data, "--out", out, *QUICK, *args)
    assert result.exit_code == 0, result.output
    return result


def eval_json(runner, model, data, *args) -> dict:
    result = invoke(runner, "eval", model, "--data", data, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def letters_csv(tmp_path):
    """26 classes labelled 1..26, as EMNIST's letters are, named a..z by a classes.txt beside them."""
    x, y = blobs(26 * 8, 26, first_label=1)
    folder = tmp_path / "letters"
    folder.mkdir()
    (folder / "classes.txt").write_text("\n".join(LETTERS) + "\n")
    return write_csv(folder / "train.csv", x, y)


def test_26_classes_set_the_output_layer_and_are_named_in_eval_and_predict(runner, tmp_path, letters_csv):
    model = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", letters_csv, "--out", model, "--epochs", "1", "--batch-size", "8")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("training 16-128-64-26 ") and "34 of its 208 training images" in first
    assert "held out for validation" in first
    meta = read_model_record(model)[2]
    assert meta["class_names"] == LETTERS and meta["label_values"] == list(range(1, 27))
    # eval: every row of the CSV (it has no test part), its 26 classes named in both tables
    text = invoke(runner, "eval", model, "--data", letters_csv).stdout
    assert "on all of" in text and "(208 images)" in text
    table = text.split("confusion matrix")[0].splitlines()
    assert [line.split()[0] for line in table if "%" in line and "accuracy" not in line] == LETTERS
    assert text.split("confusion matrix")[1].splitlines()[2].split()[0] == "a"
    report = eval_json(runner, model, letters_csv)
    assert report["class_names"] == LETTERS and len(report["confusion_matrix"]) == 26
    # predict names the class without the data at hand
    rows = tmp_path / "rows.csv"
    x, _ = blobs(3, 26, first_label=1)
    write_csv(rows, x, None, header=False)
    letters_csv.unlink()
    answer = json.loads(invoke(runner, "predict", model, rows, "--json").stdout)
    assert all(p["name"] in LETTERS and p["name"] == LETTERS[p["class"]] for p in answer["predictions"])
    lines = invoke(runner, "predict", model, rows, "--top-k", "2").stdout.splitlines()
    assert len(lines) == 3 and all(line.split()[1] in LETTERS for line in lines)


def test_sizes_must_end_with_the_class_count(runner, tmp_path, letters_csv):
    result = invoke(runner, "train", "--data", letters_csv, "--out", tmp_path / "m.npy", "--sizes", "16,30,10")
    assert_clean_error(result, "--sizes has 10 output classes but the data has labels for 26 classes (in "
                               "train.csv): --sizes must end with 26")
    result = invoke(runner, "train", "--data", letters_csv, "--out", tmp_path / "m.npy", "--sizes", "784,30,26")
    assert_clean_error(result, "--sizes must start with 16")


@pytest.mark.parametrize("n_classes", [3, 12])
def test_train_eval_on_an_npz_and_an_idx_set(runner, tmp_path, n_classes):
    (x, y), (xt, yt) = blobs(12 * n_classes, n_classes), blobs(4 * n_classes, n_classes, seed=1)
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=x, y_train=y, x_test=xt, y_test=yt)
    idx = write_idx_set(tmp_path / "idx", (x, y), (xt, yt))
    for data in (npz, idx):
        model = tmp_path / f"{data.name}.npy"
        train(runner, data, model)
        assert load_model(model)[0].sizes == (16, 128, 64, n_classes)
        report = eval_json(runner, model, data)
        assert report["samples"] == 4 * n_classes and report["split"] == "test"  # its test part


def test_an_image_folder_trains_and_predicts_its_images_read_alike(runner, tmp_path):
    x, y = blobs(60, 3)
    root = write_image_folder(tmp_path / "shapes", x, y, ["circle", "square", "triangle"])
    model = tmp_path / "m.npy"
    train(runner, root, model, "--epochs", "30", "--lr", "0.05")
    meta = read_model_record(model)[2]
    assert meta["class_names"] == ["circle", "square", "triangle"] and meta["image_size"] == [4, 4]
    picture = root / "square" / "0001.png"
    answer = json.loads(invoke(runner, "predict", model, picture, "--json").stdout)
    assert answer["predictions"][0]["name"] == "square"  # its pixels as they are, not MNIST-centred
    assert eval_json(runner, model, root)["accuracy"] > 0.9
    line = invoke(runner, "explain", model, picture).stdout
    assert "label 1 (square)" in line


def test_the_data_options_reach_train_and_eval(runner, tmp_path):
    x, y = blobs(60, 3)
    flat = x.reshape(60, -1)
    path = tmp_path / "last.csv"
    path.write_text("".join(",".join(map(str, row)) + f",{label}\n" for row, label in zip(flat, y)))
    model = tmp_path / "m.npy"
    train(runner, path, model, "--label-column", "16")
    assert eval_json(runner, model, path, "--label-column", "16")["samples"] == 60
    names = tmp_path / "names.txt"
    names.write_text("x\ny\nz\n")
    train(runner, path, model, "--label-column", "16", "--class-names", names)
    assert read_model_record(model)[2]["class_names"] == ["x", "y", "z"]
    assert_clean_error(invoke(runner, "train", "--data", path, "--out", model, "--resize", "0x4"),
                       "is not an image size like 28x28")


def test_a_sweep_hands_the_data_options_to_every_run(runner, tmp_path):
    """A CSV whose labels are its last column, swept: each run is told so, and trains on it."""
    x, y = blobs(60, 3)
    path = tmp_path / "last.csv"
    path.write_text("".join(",".join(map(str, row)) + f",{label}\n" for row, label in zip(x.reshape(60, -1), y)))
    names = tmp_path / "names.txt"
    names.write_text("x\ny\nz\n")
    out = tmp_path / "runs"
    result = invoke(runner, "sweep", "--lr", "0.1,0.5", "--data", path, "--label-column", "16", "--class-names",
                    names, "--epochs", "1", "--batch-size", "8", "--out-dir", out, "-q")
    assert result.exit_code == 0, result.output
    for lr in ("0.1", "0.5"):
        assert read_model_record(out / f"lr={lr}.npy")[2]["class_names"] == ["x", "y", "z"]
    printed = invoke(runner, "sweep", "--lr", "0.1,0.5", "--data", path, "--label-column", "16", "--out-dir",
                     tmp_path / "printed", "--print-commands").stdout.splitlines()
    assert len(printed) == 2 and all("--label-column 16" in line for line in printed)


def test_bad_data_is_one_line_in_the_commands(runner, tmp_path, monkeypatch):
    x, y = blobs(30, 3)
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(f"{label + 0.5}," + ",".join(map(str, row)) + "\n"
                           for row, label in zip(x.reshape(30, -1), y)))
    assert_clean_error(invoke(runner, "train", "--data", bad, "--out", tmp_path / "m.npy"),
                       "labels must be integers", exit_code=1)
    big = write_csv(tmp_path / "big.csv", *blobs(300, 3))
    from bptrain.app import memory

    monkeypatch.setattr(memory, "available_bytes", lambda *a: 20_000)
    assert_clean_error(invoke(runner, "train", "--data", big, "--out", tmp_path / "m.npy"), "of memory available")


def test_eval_maps_the_labels_to_the_models_classes(runner, tmp_path, letters_csv):
    model = tmp_path / "m.npy"
    train(runner, letters_csv, model)
    x, y = blobs(10, 26, first_label=1)
    some = write_csv(tmp_path / "some.csv", x[y <= 5], y[y <= 5])  # labels 1..5 of 1..26: classes a..e
    report = eval_json(runner, model, some)
    assert report["samples"] == int((y <= 5).sum()) and report["class_names"] == LETTERS
    assert [row for row in report["per_class_accuracy"][5:] if row is not None] == []
    zero = write_csv(tmp_path / "zero.csv", x[:3], np.array([0, 1, 2]))
    assert_clean_error(invoke(runner, "eval", model, "--data", zero), "label 0, which is not one of the model's "
                                                                       "classes (1, 2, 3")


def test_the_page_names_the_classes(runner, tmp_path, letters_csv):
    model_path = tmp_path / "m.npy"
    train(runner, letters_csv, model_path)
    dataset = load_dataset(letters_csv)
    model, meta = load_model(model_path)
    with live_server(dataset, model=model, meta=meta, out_dir=tmp_path) as (port, _):
        status, described = call(port, "GET", "/api/model")
        assert status == 200 and described["class_names"] == LETTERS and described["classes"] == 26
    with live_server(dataset, out_dir=tmp_path) as (port, _):  # no model yet: the data's names
        status, form = call(port, "GET", "/api/train/form")
        assert status == 200


def test_the_pages_form_presets_a_network_that_fits_the_data(tmp_path, letters_csv, monkeypatch):
    from bptrain.app.commands import serve as serve_module

    seen = {}

    class Stop(Exception):
        pass

    def capture(**options):
        seen.update(options)
        raise Stop

    monkeypatch.setattr(serve_module, "LiveTraining", capture)
    from click.testing import CliRunner

    result = invoke(CliRunner(), "serve", "--data", letters_csv, "--port", "0", "--out-dir", tmp_path)
    assert isinstance(result.exception, Stop)
    assert tuple(seen["presets"]["sizes"]) == (16, 128, 64, 26)


def test_explain_and_the_lesson_name_the_classes(runner, tmp_path, letters_csv):
    model = tmp_path / "m.npy"
    train(runner, letters_csv, model)
    text = invoke(runner, "explain", model, "--data", letters_csv, "--split", "test", "--index", "0").stdout
    assert "label 0 (a): p = " in text
    walked = runner.invoke(cli, ["explain", str(model), "--data", str(letters_csv), "--split", "test", "--index", "0",
                                 "--lesson"], input="\n" * 40)
    assert walked.exit_code == 0, walked.output
    assert "target 0 (a): p = " in walked.stdout


def test_the_page_reads_an_image_for_a_model_of_an_image_folder_as_its_images(runner, tmp_path):
    from bptrain.app.serve.predictor import Predictor

    x, y = blobs(60, 3)
    root = write_image_folder(tmp_path / "shapes", x, y, ["circle", "square", "triangle"])
    model_path = tmp_path / "m.npy"
    train(runner, root, model_path, "--epochs", "30", "--lr", "0.05")
    predictor = Predictor(*load_model(model_path))
    picture = (root / "square" / "0001.png").read_bytes()
    seen = predictor.input_from_image(picture)
    np.testing.assert_allclose(seen, x[1].reshape(-1) / 255, atol=1e-6)  # its pixels, not an MNIST digit
    assert predictor.predict(seen)["prediction"] == 1
    big = np.kron(x[1] / 255, np.ones((5, 5)))  # a drawing on a bigger pad: brought to the images' size
    np.testing.assert_allclose(predictor.input_from_drawing(big), x[1].reshape(-1) / 255, atol=1e-5)
