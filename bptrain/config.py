"""TOML config files -> the same settings the ``train`` command takes.

A config is a flat table whose keys are the long option names of ``bptrain
train`` with dashes or underscores (``batch_size = 10`` or ``batch-size =
10``). Values are checked here, so a typo or a wrong type is one clear line
naming the file and the key, not a surprise later. Explicit CLI flags win.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from .errors import ConfigError
from .network import DTYPES, INITS, LOSSES
from .optim import SCHEDULES

# key -> (what it must be, check). Checks return an error text or None.
_NUMBER = "a number"
_INTEGER = "an integer"


def _positive_int(value):
    return None if value >= 1 else "must be at least 1"


def _non_negative_int(value):
    return None if value >= 0 else "must be 0 or more"


def _positive_float(value):
    return None if math.isfinite(value) and value > 0 else "must be a finite number above 0"


def _non_negative_float(value):
    return None if math.isfinite(value) and value >= 0 else "must be a finite number, 0 or more"


def _fraction(value):
    return None if 0 <= value < 1 else "must be in [0, 1)"


def _choice(options):
    return lambda value: None if value in options else f"must be one of {', '.join(options)}"


KEYS = {
    "sizes": ("sizes", None),
    "lr": (_NUMBER, _positive_float),
    "epochs": (_INTEGER, _positive_int),
    "batch_size": (_INTEGER, _positive_int),
    "seed": (_INTEGER, _non_negative_int),
    "loss": ("a string", _choice(LOSSES)),
    "init": ("a string", _choice(INITS)),
    "dtype": ("a string", _choice(tuple(DTYPES))),
    "momentum": (_NUMBER, _fraction),
    "nesterov": ("true or false", None),
    "weight_decay": (_NUMBER, _non_negative_float),
    "schedule": ("a string", _choice(SCHEDULES)),
    "step_size": (_INTEGER, _positive_int),
    "gamma": (_NUMBER, _positive_float),
    "min_lr": (_NUMBER, _non_negative_float),
    "early_stopping": (_INTEGER, _non_negative_int),
    "augment": (_INTEGER, lambda value: None if 0 <= value <= 4 else "must be 0..4 pixels"),
    # distortions (bptrain.distort), same ranges as the CLI options
    "elastic_alpha": (_NUMBER, _non_negative_float),
    "elastic_sigma": (_NUMBER, _positive_float),
    "affine_rotate": (_NUMBER, lambda value: None if 0 <= value <= 180 else "must be 0..180 degrees"),
    "affine_scale": (_NUMBER, _fraction),
    "affine_shear": (_NUMBER, lambda value: None if 0 <= value <= 1 else "must be in [0, 1]"),
    "affine_shift": (_NUMBER, lambda value: None if 0 <= value <= 4 else "must be 0..4 pixels"),
    "data": ("a string", None),
    "out": ("a string", None),
    "history": ("a string", None),
}


def load_config(path: str | Path) -> dict:
    """Read and check a config file; return {option_name: value} with underscores in names."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config {path} is a directory, not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    return check_config(raw, str(path))


def check_config(raw: dict, where: str = "config") -> dict:
    settings = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in KEYS:
            raise ConfigError(f"{where}: unknown key {key!r} (known keys: {', '.join(sorted(KEYS))})")
        expected, check = KEYS[name]
        if name == "sizes":
            value = _check_sizes(value, where)
        elif not _has_type(value, expected):
            raise ConfigError(f"{where}: {key} must be {expected}, got {value!r}")
        elif check is not None and (problem := check(value)) is not None:
            raise ConfigError(f"{where}: {key} {problem}, got {value!r}")
        if expected == _NUMBER:
            value = float(value)
        settings[name] = value
    return settings


def _has_type(value, expected: str) -> bool:
    if isinstance(value, bool):
        return expected == "true or false"
    if expected == _NUMBER:
        return isinstance(value, (int, float))
    if expected == _INTEGER:
        return isinstance(value, int)
    if expected == "a string":
        return isinstance(value, str)
    return False


def _check_sizes(value, where: str) -> tuple[int, ...]:
    if isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in value):
        value = ",".join(str(n) for n in value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: sizes must be a list of integers like [784, 128, 10], got {value!r}")
    try:
        return parse_sizes(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: sizes: {exc}") from None


def parse_sizes(text: str) -> tuple[int, ...]:
    """"784,128,10" -> (784, 128, 10); at least two positive widths. Raises ValueError."""
    parts = [part.strip() for part in text.split(",")]
    if any(part == "" for part in parts):
        raise ValueError(f"{text!r} has an empty entry; write widths like 784,128,10")
    try:
        sizes = tuple(int(part) for part in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of integers like 784,128,10") from None
    if len(sizes) < 2:
        raise ValueError(f"{text!r} needs at least two widths (input and classes), like 784,10")
    if min(sizes) < 1:
        raise ValueError(f"{text!r}: every width must be at least 1")
    return sizes
