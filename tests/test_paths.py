"""No command destroys a file the user gave it: outputs against inputs, each other, and files not ours.

Unit tests of bptrain.app.paths, then every clash between a command's files through the real command line, each checked
to be refused before any work (the data is never loaded) with one usage line naming both options.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bptrain.app.commands import common as cli_module
from bptrain.data.idx import IDX_NAMES
from bptrain.data.model_io import load_model, save_model
from bptrain.core.network import MLP
from bptrain.app.paths import (OutputDir, PathClash, check_no_clash, check_replaceable, data_files, is_history_file,
                           is_model_file, is_png_file, same_file)

from conftest import assert_clean_error, invoke, one_line_error

SIZES = "20,16,3"
FAST = ["--sizes", SIZES, "--epochs", "2", "--lr", "0.5", "--batch-size", "16", "-q"]


# ====================================================================== same_file
def test_same_file_sees_through_spelling_symlinks_and_hard_links(tmp_path, monkeypatch):
    data = tmp_path / "data.pkl.gz"
    data.write_bytes(b"x")
    (tmp_path / "link").symlink_to(data)
    os.link(data, tmp_path / "hard")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    assert same_file(Path("data.pkl.gz"), data)  # relative vs absolute
    assert same_file(Path("sub/../data.pkl.gz"), data)
    assert same_file(tmp_path / "link", data)
    assert same_file(tmp_path / "hard", data)
    assert not same_file(tmp_path / "other", data)


def test_same_file_for_files_not_yet_written(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    assert same_file(Path("alias/new.npy"), tmp_path / "real" / "new.npy")  # symlinked parent
    assert same_file(Path("./real/../real/new.npy"), Path("real/new.npy"))
    (tmp_path / "dangling").symlink_to(tmp_path / "real" / "target.npy")
    assert same_file(tmp_path / "dangling", tmp_path / "real" / "target.npy")
    assert not same_file(Path("real/a.npy"), Path("real/b.npy"))


# ====================================================================== check_no_clash
def test_output_equal_to_an_input_names_both_options(tmp_path):
    data = tmp_path / "d.pkl.gz"
    data.write_bytes(b"x")
    message = one_line_error(PathClash, check_no_clash, {"--data": [data]}, {"--out": [data]})
    assert message == f"--out {data} is the same file as --data {data}; choose another --out"


def test_allowed_pairs_and_absent_options(tmp_path):
    model = tmp_path / "m.npy"
    model.write_bytes(b"x")
    check_no_clash({"--resume": [model], "--config": [None]}, {"--out": [model]}, allow={("--out", "--resume")})
    with pytest.raises(PathClash, match="--history"):
        check_no_clash({"--resume": [model]}, {"--out": [model], "--history": [model]},
                       allow={("--out", "--resume")})


def test_outputs_clash_with_each_other_even_before_they_exist(tmp_path):
    message = one_line_error(PathClash, check_no_clash, {}, {"--out": [tmp_path / "x"], "--history": [tmp_path / "x"]})
    assert message == f"--history {tmp_path / 'x'} is the same file as --out {tmp_path / 'x'}; choose another --history"


def test_output_directory_with_known_names(tmp_path):
    history = tmp_path / "run.history.json"
    history.write_text("{}")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run.curves.png").symlink_to(history)
    pictures = OutputDir(tmp_path / "out", ("run.curves.png",))
    message = one_line_error(PathClash, check_no_clash, {"HISTORY": [history]}, {"--out-dir": [pictures]})
    assert message.startswith(f"--out-dir {tmp_path / 'out'} would write {tmp_path / 'out' / 'run.curves.png'}, "
                              f"which is the same file as HISTORY {history}")
    check_no_clash({"HISTORY": [history]}, {"--out-dir": [OutputDir(tmp_path, ("run.curves.png",))]})


def test_output_directory_whose_names_come_later(tmp_path):
    """A directory written with names decided during the work: no input may sit directly inside it."""
    images = tmp_path / "digits.npy"
    images.write_bytes(b"x")
    with pytest.raises(PathClash, match="is the directory of INPUT"):
        check_no_clash({"INPUT": [images]}, {"--save-preprocessed": [OutputDir(tmp_path)]})
    (tmp_path / "elsewhere").mkdir()
    check_no_clash({"INPUT": [images]}, {"--save-preprocessed": [OutputDir(tmp_path / "elsewhere")]})
    (tmp_path / "elsewhere" / "link.npy").symlink_to(images)  # the file it points to is what counts
    with pytest.raises(PathClash, match="is the directory of INPUT"):
        check_no_clash({"INPUT": [tmp_path / "elsewhere" / "link.npy"]}, {"--save-preprocessed": [OutputDir(tmp_path)]})
    with pytest.raises(PathClash, match="is inside --save-preprocessed"):
        check_no_clash({}, {"--save-preprocessed": [OutputDir(tmp_path)], "--out": [tmp_path / "m.npy"]})


def test_idx_directory_stands_for_all_its_files_plain_and_gz(tmp_path):
    (tmp_path / f"{IDX_NAMES[0]}.gz").write_bytes(b"x")
    files = data_files(tmp_path)
    assert set(files) == {tmp_path / (n + s) for n in IDX_NAMES for s in ("", ".gz")} | {tmp_path / "classes.txt"}
    assert data_files(tmp_path / "mnist.pkl.gz") == [tmp_path / "mnist.pkl.gz", tmp_path / "classes.txt"]
    # writing the plain file next to the .gz would change what is read: also a clash
    with pytest.raises(PathClash):
        check_no_clash({"--data": files}, {"--out": [tmp_path / IDX_NAMES[0]]})
    check_no_clash({"--data": files}, {"--out": [tmp_path / "model.npy"]})


# ====================================================================== check_replaceable
def test_existing_outputs_are_replaced_only_when_they_hold_what_the_option_writes(tmp_path):
    model = save_model(MLP((4, 3)), tmp_path / "m.npy")
    history = tmp_path / "h.json"
    history.write_text(json.dumps({"epochs": [], "best_epoch": 0}))
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    np.save(tmp_path / "array.npy", np.zeros(3))
    assert is_model_file(model) and not is_model_file(tmp_path / "array.npy") and not is_model_file(notes)
    assert is_history_file(history) and not is_history_file(model) and not is_history_file(notes)
    assert not is_png_file(notes)
    for path in (model, empty, tmp_path / "absent.npy"):
        check_replaceable("--out", path, is_model_file, "a bptrain model")
    message = one_line_error(PathClash, check_replaceable, "--history", model, is_history_file, "a bptrain history")
    assert message.startswith(f"--history {model} already exists and is not a bptrain history")
    with pytest.raises(PathClash, match="choose another --out"):
        check_replaceable("--out", tmp_path / "array.npy", is_model_file, "a bptrain model")


# ====================================================================== through the command line
@pytest.fixture
def data(tmp_path, synthetic_data, monkeypatch):
    """The synthetic data; with load_dataset made to fail, so a test sees whether any work began."""
    def no_work(*args, **kwargs):
        raise AssertionError("the data was loaded before the paths were checked")

    monkeypatch.setattr(cli_module, "load_dataset", no_work)
    monkeypatch.chdir(tmp_path)
    return synthetic_data


def refused(runner, *args, phrase):
    """Run `bptrain ARGS`, expect a usage error (exit 2) naming ``phrase``; return the line."""
    return assert_clean_error(invoke(runner, *args), phrase, exit_code=2)


def test_out_same_as_data_is_refused_and_the_data_kept(runner, data, tmp_path):
    before = data.read_bytes()
    line = refused(runner, "train", "--data", data, "--out", data, phrase="--out")
    assert f"--out {data} is the same file as --data {data}; choose another --out" in line
    assert data.read_bytes() == before


def test_out_spelled_differently_symlinked_or_hard_linked_to_the_data(runner, data, tmp_path):
    before = data.read_bytes()
    (tmp_path / "link.pkl.gz").symlink_to(data)
    os.link(data, tmp_path / "hard.pkl.gz")
    (tmp_path / "sub").mkdir()
    for out in (f"sub/../{data.name}", data.name, "link.pkl.gz", "hard.pkl.gz"):
        refused(runner, "train", "--data", data, "--out", out, phrase="is the same file as --data")
        refused(runner, "train", "--data", "link.pkl.gz", "--history", out, phrase="is the same file as --data")
    assert data.read_bytes() == before


def test_default_data_is_an_input_even_before_it_is_downloaded(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    refused(runner, "train", "--out", "data/../data/mnist.pkl.gz",
            phrase="is the same file as the default --data data/mnist.pkl.gz")
    monkeypatch.setenv("BPTRAIN_DATA", str(tmp_path / "mine.pkl.gz"))
    refused(runner, "train", "--out", "mine.pkl.gz", phrase="is the same file as $BPTRAIN_DATA")


def test_files_of_an_idx_directory_are_inputs(runner, data, tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    for name in IDX_NAMES:
        (idx / (name + ".gz")).write_bytes(b"data")
    refused(runner, "train", "--data", idx, "--out", idx / "t10k-images-idx3-ubyte.gz", phrase="--data")
    refused(runner, "train", "--data", idx, "--history", idx / "train-labels-idx1-ubyte", phrase="--data")
    assert all((idx / (name + ".gz")).read_bytes() == b"data" for name in IDX_NAMES)
    assert not (idx / "train-labels-idx1-ubyte").exists()


def test_out_same_as_config_is_refused(runner, data, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("epochs = 1\n")
    line = refused(runner, "train", "--config", "run.toml", "--data", data, "--out", "run.toml", phrase="--config")
    assert "--out run.toml is the same file as --config run.toml; choose another --out" in line
    refused(runner, "train", "--config", "run.toml", "--data", data, "--history", config, phrase="--config")
    assert config.read_text() == "epochs = 1\n"


def test_history_over_an_existing_model_is_refused(runner, data, tmp_path):
    """`--out new.npy --history old.npy`: old.npy is no input, but it is the user's model, not a history."""
    old = save_model(MLP((20, 16, 3)), tmp_path / "old.npy")
    before = old.read_bytes()
    line = refused(runner, "train", "--data", data, "--out", "new.npy", "--history", "old.npy",
                   phrase="--history old.npy already exists and is not a bptrain history JSON")
    assert "choose another --history" in line
    assert old.read_bytes() == before and not (tmp_path / "new.npy").exists()


def test_out_over_a_file_that_is_not_a_model_is_refused(runner, data, tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    refused(runner, "train", "--data", data, "--out", "notes.txt", phrase="is not a bptrain model")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_outputs_clashing_with_each_other(runner, data, tmp_path):
    refused(runner, "train", "--data", data, "--out", "x.npy", "--history", "./x.npy",
            phrase="--history x.npy is the same file as --out x.npy; choose another --history")


def test_resume_history_over_the_resumed_model_is_refused(runner, data, tmp_path):
    model = save_model(MLP((20, 16, 3)), tmp_path / "m.npy")
    refused(runner, "train", "--data", data, "--resume", model, "--out", model, "--history", model,
            phrase="--history")


def test_resume_in_place_is_allowed(runner, tmp_path, synthetic_data):
    """--resume m.npy --out m.npy continues the model in place (written atomically, only when better)."""
    model = tmp_path / "m.npy"
    assert invoke(runner, "train", "--data", synthetic_data, "--out", model, *FAST).exit_code == 0
    result = invoke(runner, "train", "--data", synthetic_data, "--resume", model, "--out", model, "--epochs", "1",
                    "-q")
    assert result.exit_code == 0, result.output
    done = load_model(model)[1]["epochs_trained"]
    assert done >= 1 and json.loads((tmp_path / "m.history.json").read_text())["epochs"][0]["epoch"] > 1
    # ... and so is retraining over a model bptrain wrote, and over its history
    assert invoke(runner, "train", "--data", synthetic_data, "--out", model, *FAST).exit_code == 0


def test_plot_refuses_to_replace_an_input_or_a_file_that_is_not_a_png(runner, tmp_path, synthetic_data):
    pytest.importorskip("matplotlib")
    model = tmp_path / "m.npy"
    assert invoke(runner, "train", "--data", synthetic_data, "--out", model, *FAST).exit_code == 0
    history = tmp_path / "m.history.json"
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "m.curves.png").symlink_to(history)
    refused(runner, "plot", history, "--out-dir", pictures,
            phrase=f"--out-dir {pictures} would write {pictures / 'm.curves.png'}, which is the same file as "
                   f"MODEL_OR_HISTORY {history}")
    refused(runner, "plot", model, "--data", synthetic_data, "--out-dir", pictures,
            phrase="is the same file as the history")
    (pictures / "m.curves.png").unlink()
    (pictures / "m.curves.png").write_text("my drawing")
    refused(runner, "plot", history, "--out-dir", pictures,
            phrase=f"{pictures / 'm.curves.png'}, which --out-dir {pictures} would write, already exists and is not "
                   f"a PNG picture; bptrain replaces only its own files: choose another --out-dir")
    assert (pictures / "m.curves.png").read_text() == "my drawing"
    assert json.loads(history.read_text())["epochs"]
