"""The page's training form and the settings it refuses, over real HTTP on a free port."""

from __future__ import annotations

import json

import pytest

from bptrain.app.config import check_config
from bptrain.app.options import FORM_OPTIONS, TRAIN_OPTIONS
from bptrain.core.errors import ConfigError
from conftest import assert_clean_error, invoke
from live_client import call, live_server, one_line_error, request, start, state
from live_client import digits, digits_path, trainer  # noqa: F401  (fixtures)


# ------------------------------------------------------------------ the form
def test_the_form_is_the_options_table_without_the_files(trainer):
    port, _ = trainer
    status, form = call(port, "GET", "/api/train/form")
    assert status == 200
    names = [field["name"] for field in form["options"]]
    assert names == [option.name for option in FORM_OPTIONS]
    assert not {"data", "out", "history", "resume", "no_download", "quiet"} & set(names)
    assert {"sizes", "activation", "loss", "optimizer", "lr", "momentum", "batch_size", "epochs", "augment",
            "elastic_alpha", "affine_rotate"} <= set(names)
    fields = {field["name"]: field for field in form["options"]}
    table = {option.name: option for option in TRAIN_OPTIONS}
    for name, field in fields.items():  # the same defaults as `bptrain train`
        expected = table[name].default_value()
        assert field["value"] == expected, name
    assert fields["augment"]["value"] == 1 and fields["sizes"]["value"] == "784,128,64,10"
    assert fields["optimizer"]["choices"] == ["sgd", "adam"] and fields["batch_size"]["min"] == 1
    assert form["can_train"] and form["reason"] is None and form["continue"] is None
    assert form["data"] == {"train": 600, "validation": 200, "features": 784, "classes": 10, "name": "digits.pkl.gz"}
    assert "/" not in json.dumps(form["data"])  # no file paths in the API


def test_presets_fill_the_form(digits, tmp_path):
    with live_server(digits, presets={"epochs": 3, "lr": 0.05, "sizes": (784, 30, 10), "data": "x"}) as (port, _):
        fields = {f["name"]: f["value"] for f in call(port, "GET", "/api/train/form")[1]["options"]}
        assert (fields["epochs"], fields["lr"], fields["sizes"]) == (3, 0.05, "784,30,10")
        run = start(port, sizes="784,30,10")  # presets are defaults: what the request leaves out
        assert run["settings"]["epochs"] == 3 and run["settings"]["lr"] == 0.05


# ------------------------------------------------------------------ bad settings
def cli_config_message(runner, tmp_path, key, value) -> str:
    """What `bptrain train --config` says about ``key = value``, without the file's name."""
    config = tmp_path / "bad.toml"
    config.write_text(f"{key} = {json.dumps(value)}\n")
    line = assert_clean_error(invoke(runner, "train", "--config", config, "--out", tmp_path / "m.npy"))
    return line.split(f"{config}: ", 1)[1].rstrip(")").split(" (see ")[0]


@pytest.mark.parametrize("key, value", [("lr", 0), ("lr", -0.5), ("epochs", 0), ("batch_size", 1.5),
                                        ("momentum", 1.0), ("optimizer", "rmsprop"), ("augment", 9),
                                        ("sizes", "784,x,10"), ("sizes", "784"), ("affine_rotate", 400),
                                        ("weight_decay", "lots"), ("nesterov", "yes")])
def test_a_bad_setting_is_400_with_the_clis_message_beside_its_field(trainer, runner, tmp_path, key, value):
    port, _ = trainer
    status, answer = call(port, "POST", "/api/train", {key: value})
    assert status == 400 and answer["field"] == key
    with pytest.raises(ConfigError) as cli_error:
        check_config({key: value}, None)
    assert answer["error"] == str(cli_error.value)
    assert cli_config_message(runner, tmp_path, key, value) in str(cli_error.value)  # the CLI's own words
    assert state(port)["status"] == "idle"


@pytest.mark.parametrize("document, phrase, status", [
    ({"data": "/etc/passwd"}, "requests carry no file paths", 400),
    ({"out": "model.npy"}, "requests carry no file paths", 400),
    ({"history": "h.json"}, "requests carry no file paths", 400),
    ({"resume": "m.npy"}, "requests carry no file paths", 400),
    ({"bogus": 1}, "unknown setting 'bogus'", 400),
    ({"sizes": "20,5,10"}, "input width 20 but the images have 784 features", 400),
    ({"sizes": "784,5,3"}, "3 output classes but the data has labels for 10 classes", 400),
    ({"batch_size": 601}, "batch_size 601 is larger than the 600 training samples", 400),
    ({"sizes": "784,8000,8000,10"}, "the page trains networks of at most 50,000,000", 400),
    ({"epochs": 5000}, "more than the page runs at once", 400),
    ({"sizes": ",".join(["784"] + ["2"] * 40 + ["10"])}, "the page trains at most 32", 400),
    ({"nesterov": True, "momentum": 0.0}, "Nesterov momentum needs a momentum above 0", 400),
    ({"continue": True}, "no model to continue", 400),
    ({"continue": "yes"}, '"continue" must be true or false', 400),
    ([1, 2], "expected a JSON object of settings", 400),
])
def test_settings_the_page_may_not_ask_for_are_400(trainer, document, phrase, status):
    port, _ = trainer
    message = one_line_error(call(port, "POST", "/api/train", document), status)
    assert phrase in message, message


def test_malformed_or_untyped_bodies_are_refused(trainer):
    port, _ = trainer
    status, _, body = request(port, "POST", "/api/train", b"{nope", {"Content-Type": "application/json"})
    assert status == 400 and "malformed JSON" in json.loads(body)["error"]
    status, _, body = request(port, "POST", "/api/train", b"epochs=3", {"Content-Type": "text/plain"})
    assert status == 415
    status, _, _ = request(port, "POST", "/api/train", b"x" * (3 << 20), {"Content-Type": "application/json"})
    assert status == 413
    assert request(port, "PUT", "/api/train")[0] == 405 and request(port, "GET", "/api/train/start")[0] == 404
