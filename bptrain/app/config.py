"""TOML config files -> the same settings the ``train`` command takes.

A config is a flat table whose keys are the long option names of ``bptrain
train`` with dashes or underscores (``batch_size = 10`` or ``batch-size =
10``, not both). Values are checked here, so a typo or a wrong type is one clear line
naming the file and the key, not a surprise later. Explicit CLI flags win.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from ..core.errors import ConfigError
from ..data.regular import open_regular
from .options import CONFIG_OPTIONS, parse_sizes  # noqa: F401  (parse_sizes is part of this module's API)


def load_config(path: str | Path) -> dict:
    """Read and check a config file; return {option_name: value} with underscores in names."""
    path = Path(path)
    try:
        with open_regular(path, ConfigError, "config ") as handle:  # a FIFO or a device: refused, not waited on
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


def check_config(raw: dict, where: str | None = "config") -> dict:
    """Check every key and value with the option's own rules (bptrain.app.options); names with underscores.

    Each message starts with ``where`` ("FILE: lr must be ..."); ``where=None`` leaves it out (the page's
    form shows the message beside the field).
    """
    settings, spelled = {}, {}
    where = f"{where}: " if where else ""
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name in spelled:  # TOML refuses a key said twice, but not the same key in two spellings
            raise ConfigError(f"{where}{spelled[name]!r} and {key!r} are the same setting; keep one of them")
        spelled[name] = key
        option = CONFIG_OPTIONS.get(name)
        if option is None:
            raise ConfigError(f"{where}unknown key {key!r} (known keys: {', '.join(sorted(CONFIG_OPTIONS))})")
        kind = option.kind
        if name == "sizes":
            value = _check_sizes(value, where)
        elif not kind.has_type(value):
            raise ConfigError(f"{where}{key} must be {kind.expected}, got {value!r}")
        elif (problem := kind.check(value)) is not None:
            raise ConfigError(f"{where}{key} {problem}, got {value!r}")
        if kind.expected == "a number":
            value = float(value)
        settings[name] = value
    return settings


def _check_sizes(value, where: str) -> tuple[int, ...]:  # where: "FILE: " or ""
    if isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in value):
        value = ",".join(str(n) for n in value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}sizes must be a list of integers like [784, 128, 10], got {value!r}")
    try:
        return parse_sizes(value)
    except ValueError as exc:
        raise ConfigError(f"{where}sizes: {exc}") from None
