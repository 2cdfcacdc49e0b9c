"""A checkpoint's word is checked, not believed: everything read back against the plan and the network.

The checksums (:mod:`bptrain.data.checkpoint_io`) find a file changed by accident; a file written on
purpose (or by another program) carries checksums of its own. So each field is held to what a run of
this bptrain can have written: every setting as ``train`` would take it (:mod:`.options`), the network's
arrays of its shapes and dtype, the optimizer's state in the form its engine keeps, a random stream
NumPy can take, and counts that agree with the history the file holds (the epoch reached is its
first epoch plus its history's length, so no count can claim more than the file has).
"""

from __future__ import annotations

import math

import numpy as np

from ..core.network import ACTIVATIONS, DTYPES, LOSSES
from ..core.training import EpochRecord, TrainSettings
from ..data.loader import MAX_IMAGE_SIDE, DataOptions
from ..engines import ENGINES
from .options import OPTIONS_BY_NAME

#: What the run record holds: the keys read back and what each must be.
RUN_CHOICES = {"loss": LOSSES, "activation": ACTIVATIONS, "dtype": tuple(DTYPES), "engine": ENGINES}


class Untrusted(ValueError):
    """A field of a checkpoint that no run of this bptrain writes."""


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _integer(value, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Untrusted(f"{what} {_shown(value)} is not an integer in {low}..{high}")
    return value


def _number(value, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise Untrusted(f"{what} {_shown(value)} is not a number in [{low:g}, {high:g}]")
    return float(value)


def check_run(run) -> None:
    """The run record: the network, the engine and every setting as ``train`` would take them."""
    if not isinstance(run, dict):
        raise Untrusted("its run record is not a table")
    for key, options in RUN_CHOICES.items():
        if not isinstance(run.get(key), str) or run[key] not in options:
            raise Untrusted(f"its {key} {_shown(run.get(key))} is not one of {', '.join(options)}")
    sizes = run.get("sizes")
    if not isinstance(sizes, list) or len(sizes) < 2 or len(sizes) > 1000:
        raise Untrusted(f"its sizes {_shown(sizes)} are not a network's layer widths")
    for width in sizes:
        _integer(width, "a layer width", 1, 2**31 - 1)
    settings = run.get("settings")
    if not isinstance(settings, dict):
        raise Untrusted("its settings are not a table")
    try:
        TrainSettings(**settings)
    except (TypeError, ValueError) as exc:
        raise Untrusted(f"its settings are not a run's ({exc})") from None
    for name, value in settings.items():
        kind = OPTIONS_BY_NAME[name].kind  # TrainSettings took it: an option of train
        problem = None if kind.has_type(value) else f"is not {kind.expected}"
        problem = problem or kind.check(value)
        if problem:
            raise Untrusted(f"its setting {name} {_shown(value)} {problem}")
    _integer(run.get("first_epoch"), "its first epoch", 1, 2**53)
    out, history = run.get("out"), run.get("history")  # absent where a program wrote it with no files
    if "out" in run and (not isinstance(out, str) or out.replace("\\", "/").rstrip("/").split("/")[-1] in
                         ("", ".", "..")):
        raise Untrusted(f"its model file {_shown(out)} is not a file name")
    if "history" in run and (not isinstance(history, str) or not history):
        raise Untrusted(f"its history file {_shown(history)} is not a path")
    for key in ("run_id", "initial_sha256", "init", "data", "cwd"):
        if run.get(key) is not None and not isinstance(run[key], str):
            raise Untrusted(f"its {key} {_shown(run[key])} is not text")
    check_data_options(run.get("data_options", {}))


def check_data_options(options) -> None:
    """The data options the run was given: each of train's, of its kind."""
    if not isinstance(options, dict) or not set(options) <= set(DataOptions._fields):
        raise Untrusted(f"its data options {_shown(options)} are not train's")
    for key in ("label_column", "class_names"):
        if key in options and (not isinstance(options[key], str) or not options[key] or "\0" in options[key]):
            raise Untrusted(f"its {key} {_shown(options[key])} is not text")
    if "transposed" in options and not isinstance(options["transposed"], bool):
        raise Untrusted(f"its transposed {_shown(options['transposed'])} is not true or false")
    if "resize" in options:
        resize = options["resize"]
        if not isinstance(resize, list) or len(resize) != 2:
            raise Untrusted(f"its resize {_shown(resize)} is not an image size")
        for side in resize:
            _integer(side, "a resize side", 1, MAX_IMAGE_SIDE)


def check_arrays(run, arrays, optimizer_arrays: int) -> None:
    """The parameters (current and best) of the network's shapes and dtype, finite."""
    sizes, dtype = run["sizes"], np.dtype(run["dtype"])
    shapes = [(m, n) for m, n in zip(sizes[:-1], sizes[1:])] + [(n,) for n in sizes[1:]]
    if len(arrays) != 2 * len(shapes) + optimizer_arrays:
        raise Untrusted(f"it holds {len(arrays)} arrays, not the {2 * len(shapes) + optimizer_arrays} its network "
                        "and optimizer have")
    for i, array in enumerate(arrays[:2 * len(shapes)]):
        expected = shapes[i % len(shapes)]
        if array.shape != expected or array.dtype != dtype:
            raise Untrusted(f"its array {i} is {array.dtype.name} {array.shape}, not the network's {dtype.name} "
                            f"{expected}")
        if not np.all(np.isfinite(array)):
            raise Untrusted(f"its array {i} holds values that are not finite")


def check_optimizer(run, optimizer, arrays) -> None:
    """The optimizer's state in the form the run's engine keeps it: its numbers, and its arrays' sizes,
    shapes and dtype (the reference engine's per layer as the parameters; the fast engine's SGD per layer
    in any shape of that size, or none without momentum; its Adam as two flat buffers)."""
    settings, engine, dtype = run["settings"], run["engine"], np.dtype(run["dtype"])
    if not isinstance(optimizer, dict):
        raise Untrusted("its optimizer state is not a table")
    sizes = run["sizes"]
    shapes = [(m, n) for m, n in zip(sizes[:-1], sizes[1:])] + [(n,) for n in sizes[1:]]
    n_parameters = sum(math.prod(shape) for shape in shapes)
    if settings["optimizer"] == "adam":
        _integer(optimizer.get("t"), "its optimizer's step count", 0, 2**62)
        _number(optimizer.get("beta1"), "its optimizer's beta1", 0.0, math.nextafter(1.0, 0.0))
        if engine == "fast":
            if optimizer.get("lr") is not None:
                _number(optimizer["lr"], "its optimizer's lr", math.ulp(0.0), math.inf)
            expected = [(n_parameters,), (n_parameters,)]
        else:
            expected = shapes * 2
    else:
        momentum = _number(optimizer.get("momentum"), "its optimizer's momentum", 0.0, math.nextafter(1.0, 0.0))
        if engine == "fast":
            if not isinstance(optimizer.get("split"), bool):
                raise Untrusted(f"its optimizer's split {_shown(optimizer.get('split'))} is not true or false")
            expected = shapes if momentum else []
        else:
            expected = shapes
    if len(arrays) != len(expected):
        raise Untrusted(f"its optimizer state has {len(arrays)} arrays, not the {len(expected)} its "
                        f"{engine} engine keeps")
    rows = engine == "fast" and settings["optimizer"] == "sgd"  # it keeps a bias's velocity as a row
    for array, shape in zip(arrays, expected):
        same = array.shape == shape or (rows and len(shape) == 1 and array.shape == (1, *shape))
        if not same or array.dtype != dtype:
            raise Untrusted(f"its optimizer state holds a {array.dtype.name} {array.shape} array where the network "
                            f"needs {dtype.name} {shape}")


def check_rng(rng) -> None:
    """A state NumPy's PCG64 takes (the generator every run draws from)."""
    if not isinstance(rng, dict) or rng.get("bit_generator") != "PCG64":
        raise Untrusted("its random stream's state is not a PCG64 generator's")
    try:
        np.random.default_rng().bit_generator.state = rng
    except (TypeError, ValueError, KeyError, OverflowError, AttributeError) as exc:
        raise Untrusted(f"its random stream's state is not one NumPy takes ({exc})") from None


def check_progress(run, meta) -> list:
    """Where the run stands agrees with its history and plan; returns the history's records."""
    first, epochs = run["first_epoch"], run["settings"]["epochs"]
    history = meta.get("history")
    if not isinstance(history, list):
        raise Untrusted("its history is not a list of epochs")
    epoch = _integer(meta.get("epoch"), "its epoch", first - 1, first + epochs - 1)
    if len(history) != epoch - first + 1:
        raise Untrusted(f"its history holds {len(history)} epochs, but it says it stands after epoch {epoch} of a "
                        f"run that started at epoch {first}")
    records = []
    for number, record in enumerate(history, start=first):
        if not isinstance(record, dict):
            raise Untrusted("its history holds an entry that is not an epoch's record")
        try:
            record = EpochRecord(**record)
        except TypeError as exc:
            raise Untrusted(f"its history holds an entry that is not an epoch's record ({exc})") from None
        _integer(record.epoch, "an epoch of its history", number, number)
        _number(record.val_accuracy, f"epoch {number}'s validation accuracy", 0.0, 1.0)
        _number(record.lr, f"epoch {number}'s learning rate", 0.0, math.inf)
        records.append(record)
    best = _integer(meta.get("best_epoch"), "its best epoch", 0, epoch)
    if best and best < first - 1:
        raise Untrusted(f"its best epoch {best} is before the run's start (epoch {first})")
    accuracy = meta.get("best_val_accuracy")
    if accuracy is not None:
        _number(accuracy, "its best validation accuracy", 0.0, 1.0)
    if best >= first and accuracy != records[best - first].val_accuracy:
        raise Untrusted(f"its best validation accuracy {_shown(accuracy)} is not its best epoch's ({best})")
    since = epoch - best if best else epoch
    _integer(meta.get("epochs_without_improvement"), "its count of epochs without improvement", since, since)
    if meta.get("initial_speed") is not None and not isinstance(meta["initial_speed"], dict):
        raise Untrusted("its initial learning speed is not a table")
    _integer(meta.get("optimizer_arrays"), "its count of optimizer arrays", 0, 4 * len(run["sizes"]))
    return records


def check(meta: dict, arrays: list) -> None:
    """Raise :class:`Untrusted` (one line) for the first field no run of this bptrain could have written."""
    run = meta.get("run")
    check_run(run)
    check_progress(run, meta)
    check_arrays(run, arrays, meta["optimizer_arrays"])
    n_layers = len(run["sizes"]) - 1
    check_optimizer(run, meta.get("optimizer"), arrays[4 * n_layers:])
    check_rng(meta.get("rng"))

