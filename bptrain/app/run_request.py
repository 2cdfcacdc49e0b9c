"""What the user asked of a training run, typed: the options of `train` (and the page) as one value.

The rules of a run (:mod:`.runs`) read a :class:`RunRequest`, never the raw dict of options: a
reader sees which settings a rule looks at, and a workbook or a checkpoint that decides a setting
hands on a changed copy (:meth:`RunRequest.with_values`) instead of a dict edited along the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core.network import AUTO_INIT
from ..core.training import TrainSettings
from ..data.loader import DataOptions
from .options import SETTINGS_FIELDS


@dataclass(frozen=True)
class RunRequest:
    """A run as asked: how to train (``settings``), the network, the engine and the files."""

    settings: TrainSettings  # as asked: the batch size and the shift before the data says what it allows
    sizes: tuple[int, ...]
    loss: str = "ce"
    activation: str = "sigmoid"
    init: str = AUTO_INIT
    dtype: str = "float32"
    engine: str = "fast"
    data: Path | None = None
    out: Path | None = None
    history: Path | None = None
    resume: Path | None = None
    workbook: Path | None = None
    data_options: DataOptions = DataOptions()  # how to read the data, those given (None: not given)
    given: frozenset[str] = field(default_factory=frozenset)  # what the user set (a config counts), by name

    @classmethod
    def from_options(cls, values: dict, given=(), data_options: DataOptions = DataOptions()) -> RunRequest:
        """The request of ``values`` (every option by name; the page's lack the files)."""
        settings = TrainSettings(**{name: values[name] for name in SETTINGS_FIELDS & values.keys()})
        network = {name: values[name] for name in ("loss", "activation", "init", "dtype", "engine")
                   if values.get(name) is not None}
        files = {name: Path(values[name]) for name in ("data", "out", "history", "resume", "workbook")
                 if values.get(name) is not None}
        return cls(settings, tuple(values["sizes"]), **network, **files, data_options=data_options,
                   given=frozenset(given))

    def value(self, name: str):
        """A setting by its option's name, as asked."""
        return getattr(self.settings, name) if name in SETTINGS_FIELDS else getattr(self, name)

    def with_values(self, changes: dict) -> RunRequest:
        """A copy with ``changes`` (settings by their option's name) made; what the user gave stays given."""
        learning = {name: value for name, value in changes.items() if name in SETTINGS_FIELDS}
        own = {name: value for name, value in changes.items() if name not in SETTINGS_FIELDS}
        if "optimizer" in learning and "lr" not in learning and "lr" not in self.given:
            learning["lr"] = None  # the other optimizer's default rate
        if "sizes" in own:
            own["sizes"] = tuple(own["sizes"])
        return replace(self, settings=replace(self.settings, **learning) if learning else self.settings, **own)
