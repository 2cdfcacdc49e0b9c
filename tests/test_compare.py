"""`bptrain compare` and overlaid curves (`bptrain plot RUN RUN ...`): mixed inputs, the settings that
differ, the starting weights, and pictures with one line per run and a legend naming what differs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bptrain.app import plot
from bptrain.app.compare import DIGEST_KEY, collect_runs, differing_settings, format_table, read_run
from bptrain.app.run_identity import parameters_sha256
from bptrain.app.compare import same_settings
from bptrain.core.errors import BptrainError
from bptrain.data.model_io import load_model
from bptrain.core.network import MLP
from conftest import assert_clean_error, invoke, make_blobs, write_py2_pickle

FAST = ("--epochs", "2", "--batch-size", "16", "-q")


def ok(result):
    assert result.exit_code == 0, result.output + result.stderr
    return result


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """Three runs trained once for the module: lr 0.1 and 0.5 of 20-16-3, and lr 0.1 of 20-8-3 elsewhere."""
    from click.testing import CliRunner

    from bptrain.app.commands import cli

    root = tmp_path_factory.mktemp("runs")
    data = write_py2_pickle(root / "syn.pkl.gz", make_blobs())
    (root / "lr").mkdir()
    (root / "other").mkdir()
    runner = CliRunner()
    for lr in ("0.1", "0.5"):
        result = runner.invoke(cli, ["train", "--data", str(data), "--sizes", "20,16,3", "--lr", lr, *FAST,
                                     "--out", str(root / "lr" / f"lr={lr}.npy")])
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["train", "--data", str(data), "--sizes", "20,8,3", *FAST,
                                 "--out", str(root / "other" / "narrow.npy")])
    assert result.exit_code == 0, result.output
    return root


def test_compare_names_the_settings_that_differ(runner, runs_dir):
    result = ok(invoke(runner, "compare", runs_dir / "lr"))
    lines = result.stdout.splitlines()
    assert lines[0] == "2 runs; settings that differ: lr"
    assert "same in all: sizes 20-16-3, loss ce, activation sigmoid" in result.stdout
    header = next(line for line in lines if line.startswith("run"))
    assert header.split() == ["run", "lr", "best", "val", "acc", "at", "epoch", "final", "train", "loss", "seconds",
                              "status"]
    assert any(line.startswith("lr=0.1 ") and line.endswith("finished") for line in lines)
    assert "all 2 runs started from identical weights" in result.stdout


def test_compare_mixed_inputs_a_folder_a_model_and_a_lone_history(runner, runs_dir, tmp_path):
    lone = tmp_path / "copied.history.json"
    shutil.copy(runs_dir / "other" / "narrow.history.json", lone)  # a history without its model
    result = json.loads(ok(invoke(runner, "compare", runs_dir / "lr", runs_dir / "lr" / "lr=0.1.npy", lone,
                                  "--json")).stdout)
    assert [run["label"] for run in result["runs"]] == ["lr=0.1", "lr=0.5", "copied"]  # lr=0.1 once
    assert result["differ"] == ["sizes", "lr"]
    assert result["runs"][2]["model"] is None and result["runs"][2]["settings"]["sizes"] == [20, 8, 3]
    assert result["identical_start"] is False
    assert result["same"]["loss"] == "ce" and "sizes" not in result["same"]
    text = ok(invoke(runner, "compare", runs_dir / "lr", lone)).stdout
    assert "start" in text and "2 different starting points" in text


def test_compare_of_runs_of_the_same_name_names_them_by_path(runner, runs_dir, tmp_path):
    (tmp_path / "again").mkdir()
    for name in ("lr=0.1.npy", "lr=0.1.history.json"):
        shutil.copy(runs_dir / "lr" / name, tmp_path / "again" / name)
    runs = collect_runs([runs_dir / "lr" / "lr=0.1.npy", tmp_path / "again" / "lr=0.1.history.json"])
    assert [run.label for run in runs] == [str(runs_dir / "lr" / "lr=0.1"), str(tmp_path / "again" / "lr=0.1")]
    assert differing_settings(runs) == []


def test_compare_errors_are_one_line(runner, tmp_path):
    assert_clean_error(invoke(runner, "compare", tmp_path / "nothing.npy"), "no run at", exit_code=1)
    (tmp_path / "empty").mkdir()
    assert_clean_error(invoke(runner, "compare", tmp_path / "empty"), "holds no bptrain models", exit_code=1)
    (tmp_path / "x.json").write_text("{}")
    assert_clean_error(invoke(runner, "compare", tmp_path / "x.json"), "is not a bptrain history", exit_code=1)


def test_a_summary_adds_the_runs_that_left_no_files(runner, runs_dir, tmp_path):
    folder = tmp_path / "sweep"
    shutil.copytree(runs_dir / "lr", folder)
    (folder / "summary.json").write_text(json.dumps({"format": "bptrain-sweep", "runs": [
        {"name": "lr=0.5", "status": "finished"}, {"name": "lr=100", "status": "diverged", "settings": {"lr": 100.0},
                                                   "message": "training diverged in epoch 1: the loss reached 1e9"},
        {"name": "lr=0.1", "status": "finished"}]}))
    runs = collect_runs([folder])
    assert [(run.label, run.status) for run in runs] == [("lr=0.5", "finished"), ("lr=100", "diverged"),
                                                         ("lr=0.1", "finished")]
    table = format_table(runs, ["lr"], label=False)
    assert "diverged in epoch 1" in table and "100" in table
    result = ok(invoke(runner, "compare", folder))
    assert "lr=100: training diverged in epoch 1" in result.stdout


def test_same_settings_leaves_out_what_does_not_apply(runs_dir):
    runs = collect_runs([runs_dir / "lr"])
    same = same_settings(runs)
    assert same["optimizer"] == "sgd" and "beta1" not in same and "elastic_sigma" not in same
    assert "affine_rotate" not in same and "min_lr" in same  # cosine schedule: its floor applies


# ====================================================================== overlays
def history(n_epochs: int, rate: float, best: int) -> dict:
    epochs = [{"epoch": e, "train_loss": 1 / (1 + rate * e), "val_loss": 1.1 / (1 + rate * e),
               "val_accuracy": min(0.99, 0.5 + 0.05 * rate * e), "lr": 0.1, "seconds": 1.0,
               "fixed_grad_b_norm": [0.01 * rate / e, 0.1 / e], "fixed_grad_w_norm": [0.1, 0.2],
               "grad_b_norm": [0.01, 0.1], "grad_w_norm": [0.1, 0.2]} for e in range(1, n_epochs + 1)]
    return {"epochs": epochs, "best_epoch": best, "interrupted": False,
            "initial": {"batch": 1000, "grad_b_norm": [0.02, 0.2], "grad_w_norm": [0.1, 0.2]}}


RUNS = [("lr=0.025", history(30, 0.1, 30)), ("lr=0.25", history(30, 1.0, 24)), ("lr=2.5", history(12, 5.0, 7))]


def drawn_lines(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() not in ("None", "none", "")]


@pytest.mark.parametrize("quantity", ["train_loss", "val_loss", "val_accuracy"])
def test_overlay_has_one_line_per_run_a_legend_and_a_star_at_each_best_epoch(quantity):
    pytest.importorskip("matplotlib")
    fig = plot.overlay_figure(RUNS, quantity, subtitle="sizes 784-30-10, loss mse")
    (ax,) = fig.axes
    lines = drawn_lines(ax)
    assert [line.get_label() for line in lines] == ["lr=0.025", "lr=0.25", "lr=2.5"]
    assert len({line.get_color() for line in lines}) == 3
    assert [len(line.get_xdata()) for line in lines] == [30, 30, 12]  # shared axes, each its own epochs
    stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
    assert [float(star.get_xdata()[0]) for star in stars] == [30, 24, 7]
    assert [star.get_color() for star in stars] == [line.get_color() for line in lines]
    legend = ax.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["lr=0.025", "lr=0.25", "lr=2.5"]
    assert "best validation epoch" in ax.get_title()
    assert fig._suptitle is not None and "784-30-10" in fig._suptitle.get_text()


def test_overlay_of_learning_speed_has_a_panel_per_layer_and_a_line_per_run():
    pytest.importorskip("matplotlib")
    fig = plot.overlay_speed_figure(RUNS)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["layer 1 (hidden)", "layer 2 (output)"]
    for ax in panels:
        assert [line.get_label() for line in drawn_lines(ax)] == ["lr=0.025", "lr=0.25", "lr=2.5"]
        assert ax.get_yscale() == "log"
    assert [text.get_text() for text in panels[0].get_legend().get_texts()] == ["lr=0.025", "lr=0.25", "lr=2.5"]


def test_overlay_refuses_what_it_cannot_draw():
    pytest.importorskip("matplotlib")
    with pytest.raises(BptrainError, match="cannot overlay"):
        plot.overlay_figure(RUNS, "seconds")
    with pytest.raises(BptrainError, match="no runs"):
        plot.overlay_figure([], "train_loss")


def test_plot_of_a_folder_writes_one_png_per_quantity(runner, runs_dir, tmp_path):
    pytest.importorskip("matplotlib")
    result = ok(invoke(runner, "plot", runs_dir / "lr", "--out-dir", tmp_path))
    names = ["compare.train-loss.png", "compare.val-loss.png", "compare.val-accuracy.png", "compare.speed.png"]
    assert result.stdout.splitlines() == [f"wrote {tmp_path / name}" for name in names]
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_several_files_writes_beside_them_and_labels_by_what_differs(runner, runs_dir, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    seen = []
    real = plot.overlay_figure

    def spy(runs, quantity, subtitle=""):
        seen.append([label for label, _ in runs])
        return real(runs, quantity, subtitle)

    monkeypatch.setattr(plot, "overlay_figure", spy)
    folder = tmp_path / "two"
    shutil.copytree(runs_dir / "lr", folder)
    result = ok(invoke(runner, "plot", folder / "lr=0.1.npy", folder / "lr=0.5.history.json"))
    assert f"wrote {folder / 'compare.train-loss.png'}" in result.stdout
    assert seen[0] == ["lr=0.1", "lr=0.5"]


def test_plot_of_runs_keeps_the_output_rules(runner, runs_dir, tmp_path):
    pytest.importorskip("matplotlib")
    folder = tmp_path / "mine"
    shutil.copytree(runs_dir / "lr", folder)
    (folder / "compare.val-loss.png").write_text("my notes")
    assert_clean_error(invoke(runner, "plot", folder), "is not a PNG picture", exit_code=2)
    assert (folder / "compare.val-loss.png").read_text() == "my notes"
    assert not (folder / "compare.train-loss.png").exists()
    assert_clean_error(invoke(runner, "plot", folder, folder, "--distortions"), "--distortions", exit_code=2)


def test_read_run_from_an_old_history_without_the_network(tmp_path):
    document = history(3, 1.0, 2)
    document["settings"] = {"lr": 0.1, "epochs": 3}
    path = tmp_path / "old.history.json"
    path.write_text(json.dumps(document))
    run = read_run("old", history=path)
    assert run.settings == {"lr": 0.1, "epochs": 3} and run.initial_sha256 is None
    assert (run.best_epoch, run.epochs_run, run.status) == (2, 3, "finished")
    assert run.best_val_accuracy == pytest.approx(0.6) and run.seconds == 3.0
    assert np.isclose(run.final_train_loss, 0.25)


# ====================================================================== starting weights
def test_train_records_its_starting_weights_and_network_in_model_and_history(runner, tmp_path):
    data = write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())
    ok(invoke(runner, "train", "--data", data, "--sizes", "20,16,3", *FAST, "--init", "he", "--seed", "3",
              "--out", tmp_path / "m.npy"))
    _, meta = load_model(tmp_path / "m.npy")
    history = json.loads((tmp_path / "m.history.json").read_text())
    fresh = MLP((20, 16, 3), "ce", init="he", seed=3)
    assert meta[DIGEST_KEY] == history[DIGEST_KEY] == parameters_sha256(fresh.weights, fresh.biases)
    assert (history["sizes"], history["loss"], history["activation"], history["init"], history["dtype"]) == \
        ([20, 16, 3], "ce", "sigmoid", "he", "float32")


def test_parameters_sha256_is_the_bytes():
    a = MLP((5, 4, 3), seed=0)
    b = MLP((5, 4, 3), seed=0)
    assert parameters_sha256(a.weights, a.biases) == parameters_sha256(b.weights, b.biases)
    b.weights[0][0, 0] = np.nextafter(b.weights[0][0, 0], np.float32(1))  # one bit
    assert parameters_sha256(a.weights, a.biases) != parameters_sha256(b.weights, b.biases)
    assert parameters_sha256(a.weights, a.biases) != parameters_sha256([w.astype(np.float64) for w in a.weights],
                                                                        a.biases)


def test_a_history_without_settings_or_epochs_is_not_described_as_having_them(tmp_path):
    """compare of a bare history: no "same in all: lr 0.1" as if it recorded lr too, no "finished" for a run
    that ran no epoch."""
    from bptrain.app.compare import same_line, status_text

    with_settings = history(3, 1.0, 2)
    with_settings["settings"] = {"lr": 0.1, "epochs": 3}
    (tmp_path / "a.history.json").write_text(json.dumps(with_settings))
    (tmp_path / "b.history.json").write_text(json.dumps(history(3, 1.0, 2)))          # records no settings
    empty = history(3, 1.0, 2)
    empty["epochs"] = []
    (tmp_path / "c.history.json").write_text(json.dumps(empty))
    runs = [read_run(name, history=tmp_path / f"{name}.history.json") for name in "abc"]
    assert [run.records_settings for run in runs] == [True, False, False]
    line = same_line(runs)
    assert line.startswith("same in all that record settings (b, c record none): ") and "same in all: " not in line
    assert same_line(runs[:1]).startswith("same in all: lr 0.1")
    assert [status_text(run) for run in runs] == ["finished", "finished", "no epochs run"]
    from click.testing import CliRunner

    answer = json.loads(invoke(CliRunner(), "compare", *(tmp_path / f"{n}.history.json" for n in "abc"), "--json").stdout)
    assert answer["without_settings"] == ["b", "c"] and answer["same"]["lr"] == 0.1
    assert [run["status"] for run in answer["runs"]] == ["finished", "finished", "no epochs"]


def test_the_same_in_all_line_never_parts_a_setting_from_its_value():
    from bptrain.app.compare import Run, same_line

    settings = {"sizes": (784, 128, 64, 10), "loss": "ce", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                "batch_size": 32, "epochs": 30, "seed": 12345, "schedule": "cosine", "weight_decay": 0.0001}
    runs = [Run("a", settings=dict(settings)), Run("b", settings=dict(settings))]
    for width in range(20, 90):
        lines = same_line(runs, width=width).splitlines()
        items = [item.strip() for line in lines for item in line.removeprefix("same in all:").split(",") if item.strip()]
        assert all(" " in item for item in items), (width, lines)          # "lr 0.1", never "lr" | "0.1"
        assert all(len(line) <= width for line in lines if line.count(",") > 1), (width, lines)
