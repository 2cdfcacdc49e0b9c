"""What a learner reads first on the command line: the words, the columns and the pictures of train,
explain, info and plot. Each test failed before its fix (``1 epochs``, a drifting ``lr`` column, glued
numbers, ``--unit unit 4,1``, Adam's settings listed for an SGD model, ``no model file`` for a folder)."""

from __future__ import annotations

import re

import numpy as np

from bptrain.app.commands.explain import ASCII_SHADES, digit_picture, format_explanation
from bptrain.app.explain import explain
from bptrain.core.network import MLP
from bptrain.data.model_io import save_model

from conftest import N_CLASSES, N_FEATURES, assert_clean_error, invoke, make_blobs, write_py2_pickle

SIZES = f"{N_FEATURES},8,{N_CLASSES}"


def ok(result):
    assert result.exit_code == 0, f"exit {result.exit_code}:\n{result.output}\n{result.stderr}\n{result.exception!r}"
    return result


def test_one_epoch_is_one_epoch_and_the_lr_column_keeps_its_width(runner, tmp_path, synthetic_data):
    one = ok(invoke(runner, "train", "--data", synthetic_data, "--out", tmp_path / "a.npy", "--sizes", SIZES,
                    "--epochs", 1)).stdout
    assert ": 1 epoch, batch" in one.splitlines()[0], one
    # a cosine schedule gives each epoch a learning rate of another length: 0.1, 0.075, 0.025, ...
    many = ok(invoke(runner, "train", "--data", synthetic_data, "--out", tmp_path / "b.npy", "--sizes", SIZES,
                     "--epochs", 4, "--schedule", "cosine")).stdout
    assert ": 4 epochs, batch" in many.splitlines()[0]
    lines = [line for line in many.splitlines() if line.startswith("epoch ")]
    rates = [re.search(r"lr (\S+)", line).group(1) for line in lines]
    assert len(lines) == 4 and len(set(map(len, rates))) > 1, rates  # rates of different lengths ...
    ends = {re.search(r"\d+\.\ds", line).end() for line in lines}
    assert len(ends) == 1, many  # ... and the seconds still end in one column


def test_explain_unit_out_of_range_names_the_option_once(runner, tmp_path, synthetic_data):
    model = save_model(MLP((N_FEATURES, 8, N_CLASSES), "ce", seed=0), tmp_path / "m.npy", {})
    line = assert_clean_error(invoke(runner, "explain", model, "--index", 0, "--data", synthetic_data, "--unit", "4,1"))
    assert "--unit 4,1: the layers are 1..2" in line and "unit unit" not in line


def test_explain_output_columns_never_touch(tmp_path):
    """Numbers that fill the whole field ("-0.000493", "3.28e-10") stay apart at any batch size."""
    x, y = make_blobs()[0]
    model = MLP((N_FEATURES, 8, N_CLASSES), "ce", seed=0)
    doc = explain(model, x[:3], y[:3], lr=0.1, arrays="all", source={"kind": "input"})
    crafted = [3.28e-10, -0.000493, -1.23e-05]
    doc["layers"][-1]["A"]["values"][0] = crafted
    doc["output"]["error"]["values"][0] = crafted
    text = format_explanation(doc)
    start = text.splitlines().index("output and loss (first digit of the batch)")
    for row in text.splitlines()[start + 1:start + 6]:
        name, numbers = row[:18], row[18:]
        if name.strip() in ("A_2", "A_2 − Y"):
            assert numbers.split() == ["3.28e-10", "-0.000493", "-1.23e-05"], row
        assert len(numbers.split()) == N_CLASSES, row


def test_explain_shows_the_digit_above_its_matrices(runner, tmp_path):
    """A square input (here 4 x 4) is drawn as shaded characters, two per pixel, before the forward pass."""
    rng = np.random.default_rng(0)
    splits = []
    for n in (60, 20, 20):
        labels = np.arange(n) % 2
        pictures = np.zeros((n, 4, 4), np.float32)
        pictures[labels == 0, :, 0] = 1.0   # class 0: a bar on the left, class 1: on the right
        pictures[labels == 1, :, 3] = 1.0
        pictures += rng.uniform(0, 0.1, pictures.shape).astype(np.float32)
        splits.append((np.clip(pictures, 0, 1).reshape(n, 16), labels.astype(np.int64)))
    data = write_py2_pickle(tmp_path / "bars.pkl.gz", splits)
    model = save_model(MLP((16, 4, 2), "ce", seed=0), tmp_path / "m.npy", {})
    out = ok(invoke(runner, "explain", model, "--index", 0, "--data", data)).stdout.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("the input A_0 as the network sees it"))
    rows = out[header + 1:header + 5]
    assert all(re.fullmatch(r"  \|.{8}\|", row) for row in rows), rows
    assert [row[3:5] for row in rows] == ["██"] * 4 and [row[9:11] for row in rows] == ["  "] * 4  # a bar on the left
    assert header < out.index("forward pass   Z_l = A_{l-1} W_l + b_l,   A_l = f(Z_l)")
    # a terminal that cannot show the shades gets ASCII; a picture that is not square gets none
    ascii_rows = digit_picture(splits[0][0][0], "ascii")
    assert len(ascii_rows) == 4 and set("".join(ascii_rows)) <= set(ASCII_SHADES)
    assert digit_picture(np.zeros(20), "utf-8") is None


def test_info_lists_only_the_settings_of_the_optimizer_used(runner, tmp_path, synthetic_data):
    for optimizer, unused, used in (("sgd", ("beta1=", "beta2=", "eps="), "momentum="),
                                    ("adam", ("momentum=", "nesterov="), "beta1=")):
        out = tmp_path / f"{optimizer}.npy"
        ok(invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", SIZES, "--epochs", 1,
                  "--optimizer", optimizer, "-q"))
        settings = next(line for line in ok(invoke(runner, "info", out)).stdout.splitlines()
                        if line.startswith("settings"))
        assert used in settings and f"optimizer={optimizer}" in settings
        assert not any(name in settings for name in unused), settings


def test_plot_of_nothing_says_what_plot_takes(runner, tmp_path):
    (tmp_path / "runs").mkdir()
    line = assert_clean_error(invoke(runner, "plot", tmp_path / "runs" / "nothing"))
    assert "nothing at" in line and "folder" in line and "no model file" not in line
