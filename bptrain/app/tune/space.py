"""A study's search space: a TOML file of ``train``'s settings, each a range or a list of choices.

::

    lr = {low = 1e-3, high = 1.0, log = true}     # a number drawn from a range (log: on a log scale)
    batch_size = {low = 8, high = 128, log = true} # an integer setting: an integer range
    momentum = {low = 0.0, high = 0.95, step = 0.05}
    sizes = ["784,30,10", "784,100,10"]           # choices; sizes also as [[784, 30, 10], ...]
    activation = ["sigmoid", "relu"]

The keys are ``train``'s options, spelled as in a config; every bound and choice is checked by the
option's own rule (:func:`bptrain.app.config.check_config`), so a space never proposes a run that
``train`` would refuse. This module does not import Optuna: :func:`suggest` asks any object with
Optuna's ``suggest_float``/``suggest_int``/``suggest_categorical``.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import BptrainError, ConfigError
from ...data.regular import read_small
from ..config import check_config
from ..options import PATH
from ..sweep.grid import SWEEP_OPTIONS, is_sweepable

#: The largest space file read: a space is a few lines; anything bigger is not one.
MAX_SPACE_BYTES = 1 << 20

#: The settings a space may search: train's options but the files and the plain flags.
SEARCHABLE = {option.name: option for option in SWEEP_OPTIONS if is_sweepable(option) and option.kind is not PATH}

RANGE_KEYS = ("low", "high", "log", "step")


class SpaceError(BptrainError):
    """A search space that cannot be used."""


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (``low``..``high``, ``log``, ``step``) or ``choices``."""

    name: str
    kind: str  # "float", "int" or "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def to_dict(self) -> dict:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        entry = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            entry["step"] = self.step
        return entry


def read_space(path: Path) -> dict[str, Param]:
    """The space in ``path``, checked; {setting: Param} in the file's order."""
    path = Path(path)
    text = read_small(path, SpaceError, "the space", MAX_SPACE_BYTES)
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpaceError(f"the space {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"the space {path} is not valid TOML: {exc}") from None
    return check_space(raw, str(path))


def check_space(raw: dict, where: str) -> dict[str, Param]:
    space: dict[str, Param] = {}
    spelled: dict[str, str] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name in spelled:
            raise SpaceError(f"{where}: {spelled[name]!r} and {key!r} are the same setting; give it once")
        spelled[name] = key
        if name not in SEARCHABLE:
            raise SpaceError(f"{where}: unknown setting {key!r} (a space searches train's options: "
                             f"{', '.join(sorted(SEARCHABLE))})")
        if isinstance(value, list):
            space[name] = _choices(name, key, value, where)
        elif isinstance(value, dict):
            space[name] = _range(name, key, value, where)
        else:
            raise SpaceError(f"{where}: {key} must be a range like {{low = 0.01, high = 1, log = true}} or a list "
                             f"of choices, got {value!r}")
    if not space:
        raise SpaceError(f"{where}: nothing to search; give settings like lr = {{low = 0.01, high = 1, log = true}}")
    return space


def _choices(name: str, key: str, values: list, where: str) -> Param:
    if not values:
        raise SpaceError(f"{where}: {key} is an empty list; give at least one choice")
    choices = []
    for value in values:
        checked = check_config({name: value}, f"{where}: {key}")[name]
        if name == "sizes":
            checked = ",".join(str(n) for n in checked)  # Optuna's choices are plain values
        if checked in choices:
            raise SpaceError(f"{where}: {key} lists {value!r} twice")
        choices.append(checked)
    return Param(name, "choice", choices=tuple(choices))


def _range(name: str, key: str, table: dict, where: str) -> Param:
    option = SEARCHABLE[name]
    expected = option.kind.expected
    if expected not in ("a number", "an integer"):
        raise SpaceError(f"{where}: {key} takes no range; list its choices, e.g. {key} = [...]")
    unknown = [k for k in table if k not in RANGE_KEYS]
    if unknown:
        raise SpaceError(f"{where}: {key} has unknown key {unknown[0]!r} (a range has {', '.join(RANGE_KEYS)})")
    for bound in ("low", "high"):
        if bound not in table:
            raise SpaceError(f"{where}: {key} needs both low and high")
    log = table.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: {key}'s log must be true or false, got {log!r}")
    kind = "int" if expected == "an integer" else "float"
    numbers = {}
    for part in ("low", "high", "step"):
        if part not in table:
            continue
        value = table[part]
        number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
            raise SpaceError(f"{where}: {key} is an integer setting; its {part} must be an integer, got {value!r}")
        if not number_ok or not math.isfinite(value):
            raise SpaceError(f"{where}: {key}'s {part} must be a finite number, got {value!r}")
        numbers[part] = value if kind == "int" else float(value)
    low, high, step = numbers["low"], numbers["high"], numbers.get("step")
    for bound in (low, high):
        check_config({name: bound}, f"{where}: {key}")
    if low > high:
        raise SpaceError(f"{where}: {key} has low {low:g} above high {high:g}")
    if log and low <= 0:
        raise SpaceError(f"{where}: {key} on a log scale needs low above 0, got {low:g}")
    if step is not None:
        if step <= 0:
            raise SpaceError(f"{where}: {key}'s step must be above 0, got {step:g}")
        if log:
            raise SpaceError(f"{where}: {key} cannot have both log and step (Optuna draws one or the other)")
    return Param(name, kind, low=low, high=high, log=log, step=step)


def space_record(space: dict[str, Param]) -> str:
    """The space as the study records it (canonical JSON): the same space gives the same text."""
    return json.dumps({name: param.to_dict() for name, param in space.items()}, sort_keys=True)


def suggest(trial, space: dict[str, Param]) -> dict:
    """One point of the space from ``trial`` (Optuna's define-by-run): {setting: value as train takes it}."""
    values = {}
    for name, param in space.items():
        if param.kind == "choice":
            value = trial.suggest_categorical(name, list(param.choices))
        elif param.kind == "int":
            value = trial.suggest_int(name, param.low, param.high, step=param.step or 1, log=param.log)
        else:
            value = trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
        values[name] = value
    return settings_of(values)


def settings_of(params: dict) -> dict:
    """A trial's params as train's settings (sizes back to a tuple of widths)."""
    return {name: tuple(int(n) for n in value.split(",")) if name == "sizes" else value
            for name, value in params.items()}


def refuse_searched_and_given(space: dict[str, Param], given: dict) -> None:
    both = [name for name in space if name in given]
    if both:
        option = SEARCHABLE[both[0]]
        raise ConfigError(f"{option.cli_name} is given and also searched in the space; give one or the other")
