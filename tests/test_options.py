"""The option table is the one source of the train command's options, the config keys and the defaults."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from bptrain.app.commands import cli
from bptrain.app.config import check_config
from bptrain.core.errors import ConfigError
from bptrain.app.options import CLI_AUGMENT, CONFIG_OPTIONS, DATA_FORMAT_OPTIONS, GROUPS, OPTIONS_BY_NAME, TRAIN_OPTIONS
from bptrain.core.training import TrainSettings


def test_every_training_setting_is_an_option():
    missing = {f.name for f in fields(TrainSettings)} - OPTIONS_BY_NAME.keys()
    assert not missing, f"TrainSettings fields without an option: {missing}"


def test_train_command_takes_exactly_the_table():
    params = {p.name for p in cli.commands["train"].params} - {"config", "help"}
    assert params == set(OPTIONS_BY_NAME) | set(DATA_FORMAT_OPTIONS)  # and how to read the data


def test_cli_defaults_are_the_settings_defaults():
    params = {p.name: p for p in cli.commands["train"].params}
    for f in fields(TrainSettings):  # the declared defaults: lr is None, "the optimizer's own"
        expected = CLI_AUGMENT if f.name == "augment" else f.default
        assert params[f.name].default == expected, f.name


def test_help_lists_options_under_their_groups(runner):
    result = runner.invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    positions = [result.output.index(f"\n{group}:\n") for group in GROUPS]
    assert positions == sorted(positions)
    for option in TRAIN_OPTIONS:  # each option sits in its own group's section
        spelling = option.cli_name if option.flag is None else option.flag.split(",")[-1].split("/")[0]
        at = re.search(rf"^ +(-q, )?{spelling}\b", result.output, re.MULTILINE).start()
        group_at = result.output.index(f"\n{option.group}:\n")
        later = [result.output.index(f"\n{g}:\n") for g in GROUPS if result.output.index(f"\n{g}:\n") > group_at]
        assert group_at < at < min(later, default=len(result.output)), option.name


@pytest.mark.parametrize("name", sorted(n for n, o in CONFIG_OPTIONS.items() if o.default_value() is not None))
def test_every_config_key_accepts_its_default(name):
    value = CONFIG_OPTIONS[name].default_value()
    assert name in check_config({name: str(value) if isinstance(value, Path) else value})


def test_config_and_command_line_refuse_the_same_values(runner, tmp_path):
    # one rule, two doors: a config value and a flag that break it are both refused
    for name, bad in (("batch_size", 0), ("momentum", 1.0), ("lr", -1.0), ("augment", 5)):
        with pytest.raises(ConfigError):
            check_config({name: bad})
        result = runner.invoke(cli, ["train", OPTIONS_BY_NAME[name].cli_name, str(bad),
                                     "--out", str(tmp_path / "m.npy"), "--no-download", "--data", "nowhere"])
        assert result.exit_code == 2, (name, result.output)


@pytest.mark.parametrize("typed, ours", [("--learning-rate", "--lr"), ("--learning_rate=0.1", "--lr"),
                                         ("--num-epochs", "--epochs"), ("--batch_size", "--batch-size")])
def test_another_trainers_name_for_an_option_suggests_ours(runner, typed, ours):
    """click's nearest spelling of --learning-rate is --affine-rotate; a user means --lr."""
    from conftest import assert_clean_error, invoke

    line = assert_clean_error(invoke(runner, "train", typed, "3"), exit_code=2)
    assert f"Did you mean '{ours}'?" in line and "affine" not in line, line
    # a command without that option: no suggestion of an option it does not have
    assert "'--lr'" not in assert_clean_error(invoke(runner, "info", "m.npy", "--learning-rate", "3"))
