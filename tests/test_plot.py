"""Pictures: each plot function writes a real PNG of sensible size; bad inputs are one-line errors.

Skipped when matplotlib (the optional `plot` extra) is not installed, except the
check of the install hint, which needs no matplotlib.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from bptrain.app import history, plot
from bptrain.core.errors import BptrainError
from bptrain.app.plot import most_confident_mistakes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)


@pytest.fixture
def mpl():
    return pytest.importorskip("matplotlib")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, checked to be one: signature, then the IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_sensible_png(path: Path, result) -> tuple[int, int]:
    assert result == path
    width, height = png_size(path)
    assert 200 <= width <= 4000 and 200 <= height <= 4000, (width, height)
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []  # no temp file left
    return width, height


def history_document(n_epochs: int = 8) -> dict:
    epochs = [{"epoch": e, "train_loss": 0.5 / e, "val_loss": 0.4 / e + 0.01 * e, "val_accuracy": 0.9 + 0.01 * min(e, 5),
               "lr": 0.1 * (1 - e / (n_epochs + 1)), "seconds": 1.5} for e in range(1, n_epochs + 1)]
    return {"epochs": epochs, "best_epoch": min(5, n_epochs), "stopped_early": False, "interrupted": False}


# ---------------------------------------------------------- matplotlib missing
def test_require_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(BptrainError) as info:
        plot.require_matplotlib()
    assert str(info.value) == "plotting needs matplotlib: pip install 'bptrain[plot]'"


def test_plot_functions_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(BptrainError, match=r"pip install 'bptrain\[plot\]'"):
        plot.plot_history(history_document(), tmp_path / "h.png")
    with pytest.raises(BptrainError, match=r"pip install 'bptrain\[plot\]'"):
        plot.plot_weights(np.zeros((784, 4)), tmp_path / "w.png")
    assert list(tmp_path.iterdir()) == []


def test_require_matplotlib_returns_pyplot(mpl):
    plt = plot.require_matplotlib()
    assert plt.__name__ == "matplotlib.pyplot"


# --------------------------------------------------------------------- history
def test_plot_history(mpl, tmp_path):
    out = tmp_path / "history.png"
    width, height = assert_sensible_png(out, plot.plot_history(history_document(), out))
    assert width > height  # panels side by side


def test_plot_history_from_file_written_by_train(mpl, tmp_path):
    """The exact layout bptrain train writes, read back through load_history, with string path output."""
    path = tmp_path / "model.history.json"
    path.write_text(json.dumps({**history_document(3), "settings": {"lr": 0.1}, "bptrain_version": "0.1.0",
                                "data": "x"}))
    out = tmp_path / "curves.png"
    assert_sensible_png(out, plot.plot_history(history.load_history(path), str(out)))


def test_plot_history_single_epoch_without_lr_or_best(mpl, tmp_path):
    document = {"epochs": [{"epoch": 1, "train_loss": 0.3, "val_loss": 0.2, "val_accuracy": 0.95}]}
    out = tmp_path / "one.png"
    assert_sensible_png(out, plot.plot_history(document, out))


def test_best_epoch_defaults_to_highest_validation_accuracy():
    document = history_document()
    del document["best_epoch"]
    assert history.validate_history(document)["best_epoch"] == 5  # first of the equal maxima (epochs 5..8)


@pytest.mark.parametrize("document, message", [
    ([], "must be a JSON object"),
    ({"best_epoch": 1}, 'no "epochs" list'),
    ({"epochs": []}, "no epochs to plot"),
    ({"epochs": {"1": {}}}, '"epochs" must be a list'),
    ({"epochs": [3]}, "epoch entry 0 must be an object"),
    ({"epochs": [{"epoch": 1, "train_loss": 0.1}]}, "epoch entry 0 is missing val_loss, val_accuracy"),
    ({"epochs": [{"epoch": 1, "train_loss": "low", "val_loss": 0.1, "val_accuracy": 0.9}]},
     "train_loss = 'low', expected a number"),
    ({"epochs": [{"epoch": 2, "train_loss": 1, "val_loss": 1, "val_accuracy": 0.5},
                 {"epoch": 1, "train_loss": 1, "val_loss": 1, "val_accuracy": 0.5}]}, "increasing"),
    ({**history_document(), "best_epoch": 30}, "best_epoch 30 is not one of its epochs (1..8)"),
    ({**history_document(), "best_epoch": "5"}, "expected an integer"),
])
def test_bad_history_documents(tmp_path, document, message):
    out = tmp_path / "h.png"
    with pytest.raises(BptrainError) as info:
        plot.plot_history(document, out)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not out.exists()


def test_load_history_errors(tmp_path):
    with pytest.raises(BptrainError, match="no history file at"):
        history.load_history(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BptrainError, match="is not valid JSON"):
        history.load_history(bad)
    empty = tmp_path / "empty.json"
    empty.write_text('{"epochs": []}')
    with pytest.raises(BptrainError, match=f"{empty} has no epochs"):
        history.load_history(empty)


# ------------------------------------------------------------------- confusion
def test_plot_confusion(mpl, tmp_path):
    confusion = RNG.integers(0, 20, (10, 10)) + np.diag(RNG.integers(800, 1100, 10))
    out = tmp_path / "confusion.png"
    assert_sensible_png(out, plot.plot_confusion(confusion, out, title="test split"))


def test_plot_confusion_many_classes_and_empty_class(mpl, tmp_path):
    confusion = RNG.integers(0, 5, (30, 30))
    confusion[3] = 0  # a class with no samples must not divide by zero
    out = tmp_path / "c30.png"
    assert_sensible_png(out, plot.plot_confusion(confusion, out))


@pytest.mark.parametrize("confusion", [np.zeros((3, 4)), np.zeros(9), -np.eye(3), np.full((2, 2), np.nan)])
def test_plot_confusion_rejects_bad_matrices(tmp_path, confusion):
    with pytest.raises(BptrainError):
        plot.plot_confusion(confusion, tmp_path / "c.png")


# -------------------------------------------------------------------- mistakes
def test_most_confident_mistakes():
    probabilities = np.array([
        [0.9, 0.1, 0.0],   # right
        [0.2, 0.7, 0.1],   # wrong (label 0), confidence 0.7
        [0.05, 0.0, 0.95],  # wrong (label 1), confidence 0.95
        [0.1, 0.8, 0.1],   # right
        [0.3, 0.3, 0.4],   # wrong (label 0), confidence 0.4
        [0.15, 0.7, 0.15],  # wrong (label 2), confidence 0.7: ties keep data order
    ])
    labels = np.array([0, 0, 1, 1, 0, 2])
    assert most_confident_mistakes(probabilities, labels, 10).tolist() == [2, 1, 5, 4]
    assert most_confident_mistakes(probabilities, labels, 2).tolist() == [2, 1]
    assert most_confident_mistakes(probabilities, labels, 0).tolist() == []
    assert most_confident_mistakes(probabilities[[0, 3]], labels[[0, 3]], 5).tolist() == []


def test_most_confident_mistakes_checks_shapes():
    with pytest.raises(BptrainError):
        most_confident_mistakes(np.zeros((4, 10)), np.zeros(3, int), 5)


def test_plot_mistakes(mpl, tmp_path):
    images = RNG.random((25, 784)).astype(np.float32)
    labels = RNG.integers(0, 10, 25)
    predictions = (labels + 1) % 10
    confidences = np.linspace(0.9999, 0.5, 25)
    out = tmp_path / "mistakes.png"
    assert_sensible_png(out, plot.plot_mistakes(images, labels, predictions, confidences, out))


def test_plot_mistakes_few_and_none(mpl, tmp_path):
    images = RNG.random((3, 784))
    out = tmp_path / "three.png"
    assert_sensible_png(out, plot.plot_mistakes(images, [1, 2, 3], [7, 7, 7], [0.9, 0.8, 0.7], out))
    out = tmp_path / "none.png"
    png_size(plot.plot_mistakes(np.zeros((0, 784)), [], [], [], out))


def test_plot_mistakes_checks_inputs(tmp_path):
    with pytest.raises(BptrainError, match="perfect square"):
        plot.plot_mistakes(np.zeros((2, 100 + 1)), [1, 2], [3, 4], [0.5, 0.5], tmp_path / "m.png")
    with pytest.raises(BptrainError, match="2 images but 1 labels"):
        plot.plot_mistakes(np.zeros((2, 784)), [1], [3, 4], [0.5, 0.5], tmp_path / "m.png")


def test_percent_never_rounds_a_mistake_to_certainty():
    assert plot._percent(0.9996) == "99.9%"
    assert plot._percent(0.97) == "97%"


# --------------------------------------------------------------------- weights
def test_plot_weights(mpl, tmp_path):
    weights = RNG.normal(size=(784, 16)).astype(np.float32)
    out = tmp_path / "weights.png"
    assert_sensible_png(out, plot.plot_weights(weights, out))


def test_plot_weights_caps_units_and_other_square_widths(mpl, tmp_path):
    out = tmp_path / "w.png"
    weights = RNG.normal(size=(100, 30))
    weights[:, 0] = 0  # an all-zero unit must not divide by zero
    assert_sensible_png(out, plot.plot_weights(weights, out, max_units=10))


@pytest.mark.parametrize("weights, message", [
    (np.zeros((785, 4)), "width 785, not a perfect square"),
    (np.zeros(784), "must be (inputs, hidden units)"),
    (np.full((784, 2), np.nan), "finite"),
])
def test_plot_weights_rejects(tmp_path, weights, message):
    with pytest.raises(BptrainError) as info:
        plot.plot_weights(weights, tmp_path / "w.png")
    assert message in str(info.value)
    assert not (tmp_path / "w.png").exists()


# ----------------------------------------------------------------------- saving
def test_missing_directory_is_a_clear_error(mpl, tmp_path):
    with pytest.raises(BptrainError, match="does not exist"):
        plot.plot_weights(np.zeros((784, 1)), tmp_path / "nowhere" / "w.png")


def test_failed_save_leaves_nothing_and_keeps_old_file(mpl, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    out = tmp_path / "w.png"
    out.write_bytes(b"old picture")

    def broken_savefig(self, *args, **kwargs):
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError):
        plot.plot_weights(np.zeros((784, 1)), out)
    assert out.read_bytes() == b"old picture"
    assert [p.name for p in tmp_path.iterdir()] == ["w.png"]


def test_resumed_history_whose_best_is_the_starting_model_plots(tmp_path):
    # --resume m.npy --out m.npy where no new epoch beat the model: best_epoch is the resumed model's
    document = history_document()
    for record in document["epochs"]:
        record["epoch"] += 13
    document["best_epoch"] = 13
    assert history.validate_history(document)["best_epoch"] is None
    pytest.importorskip("matplotlib")
    path = plot.plot_history(document, tmp_path / "resumed.curves.png")
    assert path.read_bytes().startswith(b"\x89PNG")


# ------------------------------------------------------------------ distortions
def test_plot_distortions_draws_a_row_per_distortion(mpl, tmp_path):
    from bptrain.data.distort import PAPER_ELASTIC, SIMARD_AFFINE

    images = RNG.random((8, 784)).astype(np.float32)
    out = tmp_path / "d.png"
    width, height = assert_sensible_png(out, plot.plot_distortions(images, {"elastic": PAPER_ELASTIC,
                                                                            "affine": SIMARD_AFFINE}, out))
    assert width > height  # 8 digits across, 3 rows
    assert out.stat().st_size < 100_000


def test_plot_distortions_refuses_non_square_images(mpl, tmp_path):
    with pytest.raises(BptrainError, match="perfect square"):
        plot.plot_distortions(np.zeros((3, 20), np.float32), {}, tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()
