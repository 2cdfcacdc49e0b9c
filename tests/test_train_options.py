"""`bptrain train --activation/--optimizer/--beta1/--beta2/--eps/--init auto`, end to end on the synthetic set,
the commands that read such models, and the config keys."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bptrain.app.config import check_config
from bptrain.core.errors import ConfigError
from bptrain.data.model_io import load_model

from conftest import assert_clean_error, invoke, make_blobs, write_py2_pickle

SIZES = "20,16,3"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_py2_pickle(tmp_path_factory.mktemp("data") / "synthetic.pkl.gz", make_blobs())


def train_ok(runner, data, out, *args):
    result = invoke(runner, "train", "--data", data, "--out", out, "--sizes", SIZES, "--epochs", 3,
                    "--batch-size", 16, *args)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("activation, init", [("relu", "he"), ("tanh", "xavier"), ("sigmoid", "xavier")])
def test_train_each_activation_end_to_end(runner, data, tmp_path, activation, init):
    out = tmp_path / "m.npy"
    result = train_ok(runner, data, out, "--activation", activation)
    assert f"({activation} hidden, ce, float32)" in result.stdout
    model, meta = load_model(out)
    assert model.activation == meta["activation"] == activation
    assert meta["init"] == init  # --init auto, resolved and recorded
    assert meta["val_accuracy"] > 0.95

    evaluated = invoke(runner, "eval", out, "--data", data, "--json")
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["accuracy"] > 0.95
    info = invoke(runner, "info", out)
    assert f"({activation} hidden, softmax output)" in info.stdout
    images = tmp_path / "x.npy"
    np.save(images, make_blobs()[2][0][:5])
    predicted = invoke(runner, "predict", out, images, "--json")
    assert predicted.exit_code == 0 and len(json.loads(predicted.stdout)["predictions"]) == 5


def test_train_adam_end_to_end(runner, data, tmp_path):
    out = tmp_path / "adam.npy"
    result = train_ok(runner, data, out, "--optimizer", "adam", "--lr", "0.01", "--beta1", "0.85", "--eps", "1e-7")
    assert "adam, lr 0.01" in result.stdout
    _, meta = load_model(out)
    settings = meta["settings"]
    assert (settings["optimizer"], settings["lr"], settings["beta1"], settings["beta2"], settings["eps"]) == \
        ("adam", 0.01, 0.85, 0.999, 1e-7)
    assert meta["val_accuracy"] > 0.95


def test_default_learning_rate_follows_the_optimizer(runner, data, tmp_path):
    train_ok(runner, data, tmp_path / "a.npy", "--optimizer", "adam", "-q")
    train_ok(runner, data, tmp_path / "s.npy", "-q")
    assert load_model(tmp_path / "a.npy")[1]["settings"]["lr"] == 0.001
    assert load_model(tmp_path / "s.npy")[1]["settings"]["lr"] == 0.1


def test_help_says_how_the_defaults_follow(runner):
    text = " ".join(invoke(runner, "train", "--help").stdout.split())
    assert "0.1 for sgd, 0.001 for adam" in text
    assert "auto: follows --activation" in text
    assert "decoupled (AdamW" in text


def test_options_of_the_other_optimizer_get_a_note(runner, data, tmp_path):
    result = train_ok(runner, data, tmp_path / "m.npy", "--optimizer", "adam", "--momentum", "0.5", "-q")
    assert "--momentum does not apply to --optimizer adam" in result.stderr
    result = train_ok(runner, data, tmp_path / "m.npy", "--beta2", "0.99", "-q")
    assert "--beta2 does not apply to --optimizer sgd" in result.stderr


def test_resume_keeps_the_activation_and_refuses_another(runner, data, tmp_path):
    out = tmp_path / "m.npy"
    train_ok(runner, data, out, "--activation", "tanh", "-q")
    train_ok(runner, data, out, "--resume", out, "-q")
    assert load_model(out)[0].activation == "tanh"
    result = invoke(runner, "train", "--data", data, "--out", out, "--resume", out, "--activation", "relu")
    assert_clean_error(result, "conflicts with the resumed model's hidden units tanh", exit_code=2)


@pytest.mark.parametrize("option, value", [("--activation", "softplus"), ("--optimizer", "adagrad"),
                                           ("--beta1", "1"), ("--beta2", "-0.5"), ("--eps", "0"),
                                           ("--init", "glorot")])
def test_bad_values_are_usage_errors(runner, data, tmp_path, option, value):
    result = invoke(runner, "train", "--data", data, "--out", tmp_path / "m.npy", option, value)
    assert_clean_error(result, option, exit_code=2)
    assert not (tmp_path / "m.npy").exists()


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_gradcheck_every_activation(runner, activation):
    result = invoke(runner, "gradcheck", "--sizes", "12,6,5,3", "--activation", activation, "--max-entries", 0,
                    "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["activation"] == activation and len(report["rows"]) == 6


# ====================================================================== configs
def test_config_accepts_the_new_keys():
    settings = check_config({"activation": "relu", "optimizer": "adam", "beta1": 0.8, "beta2": 0.99,
                             "eps": 1e-6, "init": "auto"})
    assert settings == {"activation": "relu", "optimizer": "adam", "beta1": 0.8, "beta2": 0.99, "eps": 1e-6,
                        "init": "auto"}
    assert check_config({"init": "scaled-normal"}) == {"init": "scaled-normal"}


@pytest.mark.parametrize("raw, phrase", [({"activation": "swish"}, "activation must be one of"),
                                          ({"optimizer": 1}, "optimizer must be a string"),
                                          ({"beta1": 1.0}, "beta1 must be in [0, 1)"),
                                          ({"eps": -1.0}, "eps must be a finite number above 0")])
def test_config_rejects_bad_new_values(raw, phrase):
    with pytest.raises(ConfigError, match=phrase.replace("[", r"\[").replace(")", r"\)")):
        check_config(raw)


def test_config_trains_relu_with_adam(runner, data, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('activation = "relu"\noptimizer = "adam"\nlr = 0.01\nepochs = 2\nbatch-size = 16\n'
                      f'sizes = "{SIZES}"\n')
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--config", config, "--data", data, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    model, meta = load_model(out)
    assert model.activation == "relu" and meta["settings"]["optimizer"] == "adam" and meta["init"] == "he"


def test_shipped_default_config_leaves_the_learning_rate_to_the_optimizer(runner, data, tmp_path):
    from conftest import REPO_ROOT

    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--config", REPO_ROOT / "configs" / "default.toml", "--data", data,
                    "--out", out, "--sizes", SIZES, "--epochs", 1, "--optimizer", "adam", "--augment", 0, "-q")
    assert result.exit_code == 0, result.output
    assert load_model(out)[1]["settings"]["lr"] == 0.001
    assert "does not apply" not in result.stderr  # the config lists momentum; only flags get the note
