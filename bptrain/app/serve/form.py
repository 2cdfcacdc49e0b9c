"""The page's training form: which settings it shows, their presets, how a request's settings are read,
and the limits of what a page may start (beyond `bptrain train`'s own rules, :mod:`bptrain.app.runs`)."""

from __future__ import annotations

from pathlib import Path

from ...core.errors import BptrainError, ConfigError, SettingError
from ...core.training import DISTORTION_SETTINGS, TrainSettings
from .. import memory
from ..config import check_config
from ..options import FORM_OPTIONS, OPTIONS_BY_NAME, SETTINGS_FIELDS, TRAIN_OPTIONS
from .snapshots import MAX_SNAPSHOTS, SNAPSHOT_BYTES

#: The settings of the page's form (the options table's FORM_OPTIONS); the files are options of `serve`.
FILE_OPTIONS = frozenset(option.name for option in TRAIN_OPTIONS if option.group == "Files")
PAGE_OPTIONS = FORM_OPTIONS
PAGE_NAMES = frozenset(option.name for option in PAGE_OPTIONS)
#: The form's first row; the other settings fold away under their group's heading.
MAIN_OPTIONS = ("sizes", "activation", "loss", "optimizer", "lr", "momentum", "beta1", "batch_size", "epochs",
                "augment")

#: What a page may ask for (checked by :func:`check_run_fits`).
MAX_PARAMETERS = 50_000_000
MAX_LAYERS = 32
MAX_EPOCHS = 1000


def check_run_fits(sizes, settings: TrainSettings, n_train: int, data=None, engine: str = "fast") -> None:
    """Refuse, in one line, a run this server should not start: the one place a page's run is checked
    against the machine before anything is allocated. Raises :class:`~bptrain.core.errors.SettingError` or
    :class:`.memory.MemoryLimitError` naming the field.

    The cheap bounds first (a page request must not ask for an absurd network, batch or number of
    epochs), then the memory the run needs in this process (which holds the data already), the kept
    replay snapshots included, against what the machine has available (:mod:`bptrain.app.memory`).
    """
    n_parameters = sum(m * n + n for m, n in zip(sizes[:-1], sizes[1:]))
    if n_parameters > MAX_PARAMETERS:
        raise SettingError(f"sizes {','.join(map(str, sizes))} make {n_parameters:,} parameters; the page trains "
                           f"networks of at most {MAX_PARAMETERS:,} (use `bptrain train` for bigger ones)",
                           field="sizes")
    if len(sizes) - 1 > MAX_LAYERS:
        raise SettingError(f"sizes has {len(sizes) - 1} layers; the page trains at most {MAX_LAYERS}", field="sizes")
    if settings.batch_size > n_train:
        raise SettingError(f"batch_size {settings.batch_size} is larger than the {n_train} training samples",
                           field="batch_size")
    if settings.epochs > MAX_EPOCHS:
        raise SettingError(f"epochs {settings.epochs} is more than the page runs at once ({MAX_EPOCHS}); "
                           "continue the model for more", field="epochs")
    snapshot_bytes = 4 * n_parameters
    # float32 copies of the parameters: the kept epochs, the live copy the drawing pad reads, and the copies of
    # the parameters and the optimizer's state that let a stop be continued (the networks that read drawings
    # share these arrays: they add none)
    kept = min(MAX_SNAPSHOTS, max(1, SNAPSHOT_BYTES // max(1, snapshot_bytes))) + 3
    needs = memory.estimate(sizes, settings.batch_size, engine=engine, optimizer=settings.optimizer,
                            momentum=settings.momentum, augment=settings.augment,
                            distorts=any(getattr(settings, name) for name in DISTORTION_SETTINGS),
                            data=None if data is None else memory.DataShape.of(data),
                            kept_snapshots=kept, in_process=True)
    message = memory.refusal(needs)
    if message is not None:
        raise memory.MemoryLimitError(message, field="sizes")




def page_form(presets: dict, dataset, base) -> dict:
    """The form of the page: every setting with its kind, limits, help and preset value; the data it trains
    on; the model a run would continue (``base``: (model, epochs trained, init) or None)."""
    fields = []
    for option in PAGE_OPTIONS:
        click_type = option.kind.click_type()
        value = presets.get(option.name)
        if option.name == "sizes" and value is not None and not isinstance(value, str):
            value = ",".join(map(str, value))
        entry = {"name": option.name, "flag": option.cli_name, "group": option.group, "help": option.help,
                 "kind": {"an integer": "integer", "a number": "number", "true or false": "flag",
                          "sizes": "sizes"}.get(option.kind.expected, "choice"),
                 "value": value, "main": option.name in MAIN_OPTIONS}
        if hasattr(click_type, "choices"):
            entry["choices"] = list(click_type.choices)
        for bound in ("min", "max"):
            if getattr(click_type, bound, None) is not None:
                entry[bound] = getattr(click_type, bound)
        fields.append(entry)
    data = None
    if dataset is not None:
        data = {"train": len(dataset.train.x), "validation": len(dataset.validation.x),
                "features": dataset.n_features, "classes": dataset.n_classes, "name": Path(dataset.source).name}
    return {"options": fields, "data": data, "groups": list(dict.fromkeys(o.group for o in PAGE_OPTIONS)),
            "continue": None if base is None else {"sizes": list(base[0].sizes), "loss": base[0].loss,
                                                   "activation": base[0].activation, "epochs_trained": base[1]},
            "limits": {"parameters": MAX_PARAMETERS, "layers": MAX_LAYERS, "epochs": MAX_EPOCHS}}


def read_settings(document, presets: dict) -> tuple[dict, bool, set]:
    """(every setting of the run, whether it continues the last model, the names the request gave) of a
    POST /api/train body; each value is checked by the options table's rules, as a config's are."""
    if not isinstance(document, dict):
        raise BptrainError('expected a JSON object of settings, like {"epochs": 5, "lr": 0.1}')
    raw = dict(document)
    continuing = raw.pop("continue", False)
    if not isinstance(continuing, bool):
        raise SettingError(f'"continue" must be true or false, got {continuing!r}', field="continue")
    checked = {}
    for key, value in raw.items():
        name = key.replace("-", "_") if isinstance(key, str) else key
        if name in FILE_OPTIONS or name in ("resume", "no_download", "quiet"):
            flag = OPTIONS_BY_NAME[name].cli_name
            raise SettingError(f"{key} is not a setting of the page: the files are `bptrain serve`'s own options "
                               f"({flag}, --out-dir); requests carry no file paths", field=name)
        if name not in PAGE_NAMES:
            raise SettingError(f"unknown setting {key!r} (known: {', '.join(sorted(PAGE_NAMES))})")
        try:
            checked.update(check_config({key: value}, None))
        except ConfigError as exc:
            raise SettingError(str(exc), field=name) from None
    values = {**presets, **checked}
    if isinstance(values["sizes"], str):
        values["sizes"] = tuple(int(n) for n in values["sizes"].split(","))
    return values, continuing, set(checked)


def train_settings(values: dict) -> TrainSettings:
    """The run's :class:`~bptrain.core.training.TrainSettings` from the form's values."""
    return TrainSettings(**{name: values[name] for name in SETTINGS_FIELDS & values.keys()})
