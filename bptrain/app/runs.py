"""What a training run must satisfy before it starts: each rule written once, for `train`, the page and `sweep`.

The files (each output writable, none of them an input or someone else's file),
the network against the data and against the model it continues, the settings
that go together only on square images, the optimizer's settings, the
initialisation, the memory (:mod:`.memory`). Every rule raises a
:class:`~bptrain.core.errors.BptrainError` naming the setting it is about
(``field``): a :class:`~bptrain.core.errors.SettingError` for settings that do not
go together, a :class:`~bptrain.core.errors.DataError` for a network that does not
fit the data, a :class:`.memory.MemoryLimitError` for a run the machine cannot
hold. The command line and the HTTP layer translate them at their edge.

A message names settings as its reader knows them: ``--batch-size`` on the command
line (:func:`flag`), ``batch_size`` on the page (:func:`plain`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..core.errors import DataError, SettingError
from ..core.network import AUTO_INIT, DTYPES, MLP, default_init
from ..core.optimizers import check_adam, check_sgd
from ..core.training import DISTORTION_SETTINGS
from ..data.shifts import is_square_image
from .memory import MemoryLimitError
from .paths import check_no_clash, check_replaceable

#: What a continued network keeps: (setting, how a message names it).
KEPT_BY_A_CONTINUED_MODEL = (("sizes", "sizes"), ("loss", "loss"), ("activation", "hidden units"))


def flag(name: str) -> str:
    """How the command line spells a setting: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def plain(name: str) -> str:
    """How the page and a config spell a setting: as its name."""
    return name


# ------------------------------------------------------------------ files
def check_writable(path: Path, what: str, field: str | None = None) -> None:
    """Fail before any work if ``path`` cannot be written (a directory, a missing or read-only folder)."""
    if path.is_dir():
        raise SettingError(f"{what} {path} is a directory; give a file name like model.npy", field=field)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise SettingError(f"cannot write {what} {path}: directory {directory} does not exist", field=field)
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise SettingError(f"cannot write {what} {path}: directory {directory} is not writable "
                           f"({exc.strerror or exc})", field=field) from None


def check_files(inputs: dict, outputs: dict, allow=(), replaceable=(), show=str) -> None:
    """No output may be an input or another output, and an existing output is replaced only if it holds what
    its option writes (:mod:`.paths`). ``replaceable``: :func:`.paths.check_replaceable`'s arguments, each;
    ``show``: how a message names a path."""
    check_no_clash(inputs, outputs, allow, show)
    for replaced in replaceable:
        check_replaceable(*replaced)


# ------------------------------------------------------------------ the network
def check_continued_model(model: MLP, values: dict, given, spell=flag, resuming: bool = True) -> None:
    """A run that continues ``model`` keeps its sizes, loss and hidden units: a setting the user gave
    (its name in ``given``) that says otherwise is refused."""
    how = ("resumed", "drop {} when resuming") if resuming else ("continued", "leave {} out when continuing")
    for name, words in KEPT_BY_A_CONTINUED_MODEL:
        value, kept = values.get(name), getattr(model, name)
        if name == "sizes" and value is not None:
            value = tuple(value)
        if name in given and value != kept:
            shown = (lambda v: ",".join(map(str, v))) if name == "sizes" else str
            raise SettingError(f"{spell(name)} {shown(value)} conflicts with the {how[0]} model's {words} "
                               f"{shown(kept)}; {how[1].format(spell(name))}", field=name)


def check_model_fits_data(sizes, dataset, source: str) -> None:
    """The network's input width is the images' and its outputs are the data's classes (``source``: what
    the message calls the network: a model file, or the sizes setting)."""
    data = Path(str(dataset.source)).name
    if sizes[0] != dataset.n_features:
        raise DataError(f"{source} has input width {sizes[0]} but the images have {dataset.n_features} features "
                        f"(in {data})", field="sizes")
    if sizes[-1] != dataset.n_classes:
        raise DataError(f"{source} has {sizes[-1]} output classes but the data has labels for "
                        f"{dataset.n_classes} classes (in {data})", field="sizes")


def initialisation(activation: str, init: str) -> str:
    """The initialisation a new network gets: ``auto`` is the one that suits its hidden units."""
    return default_init(activation) if init == AUTO_INIT else init


def new_network(sizes, loss: str, activation: str, init: str, dtype: str, seed: int) -> MLP:
    """A new network with its initial parameters; a network too big to create is one line, not a traceback."""
    try:
        return MLP(sizes, loss, dtype=DTYPES[dtype], init=initialisation(activation, init), seed=seed,
                   activation=activation)
    except MemoryError:
        raise MemoryLimitError(f"out of memory creating a {'-'.join(map(str, sizes))} network; try a smaller "
                               "network", field="sizes") from None


# ------------------------------------------------------------------ settings
def augment_for(values: dict, n_features: int, given, spell=flag) -> int:
    """The shift (``augment``) the run uses: shifts and distortions move square images.

    Distortions asked for on other inputs are refused; a shift the user gave is refused too, while the
    default shift is turned off (0 is returned; the caller may say so).
    """
    if is_square_image(n_features):
        return values.get("augment", 0)
    used = [name for name in DISTORTION_SETTINGS if values.get(name)]
    if used:
        raise SettingError(f"{', '.join(map(spell, used))} distort square images, but the inputs have "
                           f"{n_features} features", field=used[0])
    if values.get("augment") and "augment" in given:
        raise SettingError(f"{spell('augment')} shifts square images, but the inputs have {n_features} features; "
                           f"use {spell('augment')} 0", field="augment")
    return 0


def check_optimizer(values: dict) -> None:
    """The optimizer's settings go together (e.g. Nesterov needs a momentum): :func:`~bptrain.core.optimizers.check_sgd`
    or :func:`~bptrain.core.optimizers.check_adam`."""
    if values.get("optimizer", "sgd") == "sgd":
        check_sgd(values["momentum"], values["nesterov"], values["weight_decay"])
    else:
        check_adam(values["beta1"], values["beta2"], values["eps"], values["weight_decay"])
