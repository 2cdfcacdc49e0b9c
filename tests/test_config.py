"""TOML config files: good ones, unknown keys, wrong types; CLI flags override the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bptrain.app.commands import cli
from bptrain.app.config import check_config, load_config, parse_sizes
from bptrain.core.errors import ConfigError

from conftest import REPO_ROOT, one_line_error


def write(tmp_path: Path, text: str, name="config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(path) -> str:
    return one_line_error(ConfigError, load_config, path)


# ====================================================================== good files
def test_good_config_with_dashes_and_underscores(tmp_path):
    path = write(tmp_path, """
        sizes = [784, 30, 10]
        lr = 3            # an integer is a fine number
        epochs = 5
        batch-size = 12
        loss = "mse"
        init = "normal"
        dtype = "float64"
        momentum = 0.9
        nesterov = true
        weight-decay = 1e-4
        schedule = "cosine"
        min_lr = 0.001
        early_stopping = 3
        seed = 7
        data = "somewhere/mnist.pkl.gz"
        out = "m.npy"
    """.replace("\n        ", "\n"))
    settings = load_config(path)
    assert settings["sizes"] == (784, 30, 10)
    assert settings["lr"] == 3.0 and isinstance(settings["lr"], float)
    assert settings["epochs"] == 5 and settings["batch_size"] == 12
    assert settings["loss"] == "mse" and settings["init"] == "normal" and settings["dtype"] == "float64"
    assert settings["momentum"] == 0.9 and settings["nesterov"] is True
    assert settings["weight_decay"] == 1e-4 and settings["schedule"] == "cosine"
    assert settings["early_stopping"] == 3 and settings["seed"] == 7
    assert settings["data"] == "somewhere/mnist.pkl.gz" and settings["out"] == "m.npy"
    assert "batch-size" not in settings  # names come back with underscores


def test_sizes_as_string():
    assert check_config({"sizes": "784, 64,10"})["sizes"] == (784, 64, 10)


def test_empty_config_is_fine(tmp_path):
    assert load_config(write(tmp_path, "# nothing\n")) == {}


def shipped_configs():
    return sorted((REPO_ROOT / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    settings = load_config(path)
    assert settings, f"{path.name} sets nothing"


def test_best_config_holds_the_settings_it_names():
    """configs/best.toml is a copy of the config whose results it claims; the two must not drift apart."""
    best = load_config(REPO_ROOT / "configs" / "best.toml")
    named = load_config(REPO_ROOT / "configs" / "ciresan-1000-500.toml")
    assert {k: v for k, v in best.items() if k != "seed"} == named
    assert best.get("seed", 0) == 0  # the seed its first result was measured with, and train's default


def test_seed_article_config_has_the_seed_articles_settings():
    path = REPO_ROOT / "configs" / "seed-article.toml"
    if not path.exists():
        pytest.skip("configs/seed-article.toml not written yet")
    settings = load_config(path)
    assert settings["sizes"] == (784, 128, 64, 10)
    assert settings["loss"] == "mse" and settings["init"] == "normal"
    assert settings["lr"] == 0.1 and settings["batch_size"] == 10


# ====================================================================== bad files
def test_missing_file(tmp_path):
    assert "does not exist" in config_error(tmp_path / "nope.toml")


def test_directory(tmp_path):
    assert "is a directory" in config_error(tmp_path)


def test_invalid_toml(tmp_path):
    message = config_error(write(tmp_path, "lr = = 0.1\n"))
    assert "is not valid TOML" in message and "config.toml" in message


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.toml"
    path.write_bytes(b'loss = "\xe9"\n')
    config_error(path)


def test_unknown_key(tmp_path):
    message = config_error(write(tmp_path, "epochs = 2\nlearning_rate = 0.1\n"))
    assert "unknown key 'learning_rate'" in message and "config.toml" in message
    assert "lr" in message  # the known keys are listed


def test_nested_table_is_unknown(tmp_path):
    assert "unknown key 'train'" in config_error(write(tmp_path, "[train]\nlr = 0.1\n"))


@pytest.mark.parametrize("line, phrase", [
    ('epochs = "3"', "epochs must be an integer"),
    ("epochs = 2.5", "epochs must be an integer"),
    ("epochs = true", "epochs must be an integer"),
    ("batch_size = 0", "batch_size must be at least 1"),
    ('lr = "fast"', "lr must be a number"),
    ("lr = 0", "lr must be a finite number above 0"),
    ("lr = -0.1", "lr must be a finite number above 0"),
    ("lr = nan", "lr must be a finite number above 0"),
    ("lr = inf", "lr must be a finite number above 0"),
    ("lr = true", "lr must be a number"),
    ("momentum = 1.0", "momentum must be in [0, 1)"),
    ("nesterov = 1", "nesterov must be true or false"),
    ('loss = "hinge"', "loss must be one of ce, mse"),
    ("loss = 1", "loss must be a string"),
    ('schedule = "linear"', "schedule must be one of"),
    ('dtype = "float16"', "dtype must be one of"),
    ("seed = -1", "seed must be 0..9223372036854775807"),
    ("weight_decay = -1.0", "weight_decay must be a finite number, 0 or more"),
    ("data = 3", "data must be a string"),
    ('sizes = "784,,10"', "has an empty entry"),
    ("sizes = [784]", "needs at least two widths"),
    ("sizes = [784, 0, 10]", "every width must be at least 1"),
    ('sizes = [784, "a", 10]', "sizes must be a list of integers"),
    ("sizes = 784", "sizes must be a list of integers"),
], ids=lambda v: v if " = " in str(v) else "")
def test_wrong_types_and_values(tmp_path, line, phrase):
    message = config_error(write(tmp_path, line + "\n"))
    assert phrase in message, message
    assert "config.toml" in message


@pytest.mark.parametrize("text", ["784,,10", "abc", "784", "0,10", "-5,10", "", "784, 10.5", "1e3,10"])
def test_parse_sizes_rejects(text):
    with pytest.raises(ValueError):
        parse_sizes(text)


def test_parse_sizes_accepts_spaces():
    assert parse_sizes(" 784 , 128,10 ") == (784, 128, 10)


# ====================================================================== through the CLI
def train_with_config(runner, tmp_path, config_text, *flags):
    config = write(tmp_path, config_text)
    return runner.invoke(cli, ["train", "--config", str(config), *flags])


def test_config_settings_are_used_and_flags_win(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    text = (f'sizes = [20, 12, 3]\nepochs = 3\nlr = 0.7\nbatch_size = 16\nseed = 5\nloss = "mse"\n'
            f'data = "{synthetic_data}"\nout = "{out}"\n')
    result = train_with_config(runner, tmp_path, text, "--epochs", "1", "--seed", "6", "--quiet")
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "m.history.json").read_text())
    assert len(history["epochs"]) == 1                      # the flag, not the config's 3
    settings = history["settings"]
    assert settings["epochs"] == 1 and settings["seed"] == 6  # flags win
    assert settings["lr"] == 0.7 and settings["batch_size"] == 16  # the rest from the config
    record = np.load(out, allow_pickle=False)
    meta = json.loads(bytes(record["meta"]))
    assert meta["sizes"] == [20, 12, 3] and meta["loss"] == "mse"


def test_flag_overrides_config_sizes(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    text = f'sizes = [20, 12, 3]\nepochs = 1\ndata = "{synthetic_data}"\n'
    result = train_with_config(runner, tmp_path, text, "--sizes", "20,5,3", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    meta = json.loads(bytes(np.load(out, allow_pickle=False)["meta"]))
    assert meta["sizes"] == [20, 5, 3]


@pytest.mark.parametrize("text, phrase", [
    ("learning_rate = 0.1\n", "unknown key 'learning_rate'"),
    ('epochs = "many"\n', "epochs must be an integer"),
    ("epochs = [\n", "not valid TOML"),
])
def test_bad_config_is_one_clean_error(runner, tmp_path, synthetic_data, text, phrase):
    out = tmp_path / "m.npy"
    result = train_with_config(runner, tmp_path, text, "--data", str(synthetic_data), "--out", str(out))
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and phrase in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_missing_config_file_via_cli(runner, tmp_path, synthetic_data):
    result = runner.invoke(cli, ["train", "--config", str(tmp_path / "nope.toml"), "--data", str(synthetic_data)])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
