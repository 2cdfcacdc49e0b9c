"""What every data format hands the loader, and what the loader makes of it: splits and classes.

A format reads its files into a :class:`RawSet`: images float32 ``(N, n_features)`` in [0, 1] and the
labels as the file has them. :func:`hold_out` gives a set without a validation part one (a sixth of its
training images, the same ones every time, as MNIST's 10,000 of 60,000); :func:`class_values` and
:func:`map_labels` turn the labels into output units: the distinct training labels in sorted order are
classes 0..n-1 (EMNIST letters' 1..26 are 26 classes). :func:`read_class_names` reads a ``classes.txt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.errors import DataError

#: The file beside the data that names its classes, one name a line in class order.
CLASSES_FILE = "classes.txt"
#: A class name longer than this is not a name (it would not fit a table, or a line).
MAX_NAME_LENGTH = 64
#: More classes than this are not classes (an MLP's output layer of one unit each).
MAX_CLASSES = 1000
#: classes.txt is a short text; a bigger file is not one.
MAX_CLASSES_FILE_BYTES = 1 << 20


class RawSet(NamedTuple):
    """A data set as its format holds it: ``(x, y)`` pairs, with ``validation`` and ``test`` when it has them."""

    train: tuple
    validation: tuple | None = None
    test: tuple | None = None
    class_names: list | None = None  # the format's own names (an image folder's folder names)
    interleave: bool = False  # rows sorted by class: hold out every sixth row, not the last sixth
    image_size: tuple | None = None  # (width, height) of an image folder's pictures: predict reads alike


def validation_size(n: int) -> int:
    """How many of ``n`` training images are held out for validation: a sixth (at least one)."""
    return max(1, n // 6)


def hold_out(raw: RawSet):
    """``(train, validation, test, held_out)``: the validation part the set has, or a sixth of its training
    images. Without a test part, the test part is all of the labelled data (``eval`` scores every row).

    The held-out sixth is the last sixth (MNIST's files, Keras's npz: already in random order), or, for rows
    sorted by class (an image folder, a CSV), every sixth row, so that every class is held out alike. The
    arrays come back as [train rows; validation rows] of one array, so the whole is a view too.
    """
    if raw.validation is not None:
        return raw.train, raw.validation, raw.test if raw.test is not None else raw.train, 0
    x, y = raw.train
    n = len(x)
    if n < 2:
        raise DataError(f"the data holds {n} labelled images; at least 2 are needed to hold out a validation part")
    n_validation = validation_size(n)
    if raw.interleave and n >= 6:
        rows = np.arange(n)
        order = np.concatenate([rows[rows % 6 != 5], rows[rows % 6 == 5]])
        x, y = x[order], y[order]
        n_validation = int(np.count_nonzero(rows % 6 == 5))
    n_train = n - n_validation
    train, validation = (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])
    return train, validation, raw.test if raw.test is not None else (x, y), n_validation


def class_values(train_labels: np.ndarray, validation_labels: np.ndarray, where: str = "the data") -> np.ndarray:
    """The classes: the distinct labels of the training data (train and validation), sorted; more than
    :data:`MAX_CLASSES` is a column that is not labels (a CSV's pixels taken for them, say)."""
    values = np.union1d(train_labels, validation_labels).astype(np.int64)
    if len(values) > MAX_CLASSES:
        raise DataError(f"{where} has {len(values):,} different labels, more than {MAX_CLASSES:,} classes; "
                        "are the labels the right column?")
    return values


def map_labels(labels: np.ndarray, values: np.ndarray, where: str, whose: str) -> np.ndarray:
    """Labels -> their class numbers (positions in ``values``); a label that is no class is refused."""
    if len(values) and np.array_equal(values, np.arange(len(values))):
        outside = labels[(labels < 0) | (labels >= len(values))]
        if len(outside):
            raise DataError(f"{where} has label {int(outside[0])}, outside {whose} 0..{len(values) - 1}")
        return labels
    positions = np.clip(np.searchsorted(values, labels), 0, max(len(values) - 1, 0))
    wrong = values[positions] != labels
    if wrong.any():
        shown = ", ".join(map(str, values[:12])) + (", ..." if len(values) > 12 else "")
        raise DataError(f"{where} has label {int(labels[wrong][0])}, which is not one of {whose} ({shown})")
    return positions.astype(np.int64)


def check_class_names(names, n_classes: int, where: str) -> tuple[str, ...]:
    """Names, one per class: strings of printable characters, not empty, not too long, all different."""
    names = tuple(names)
    if len(names) != n_classes:
        raise DataError(f"{where} names {len(names)} classes but the data has {n_classes}")
    for name in names:
        if not isinstance(name, str) or not name.strip() or not name.isprintable() or len(name) > MAX_NAME_LENGTH:
            raise DataError(f"{where}: class name {name!r} is not a name (printable text of 1 to "
                            f"{MAX_NAME_LENGTH} characters)")
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise DataError(f"{where} names the class {twice!r} twice")
    return names


def read_class_names(path: Path) -> list[str]:
    """The names in a ``classes.txt``: one a line, in class order (blank lines at the end ignored)."""
    try:
        if not path.is_file():
            raise DataError(f"{path} is not a file of class names (one name a line)")
        if path.stat().st_size > MAX_CLASSES_FILE_BYTES:
            raise DataError(f"{path} is over {MAX_CLASSES_FILE_BYTES >> 20} MB: not a file of class names")
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text (class names, one a line)") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [line.strip() for line in text.rstrip("\r\n").splitlines()]


def classes_file_beside(path: Path) -> Path:
    """Where a ``classes.txt`` for the data at ``path`` would be: inside a folder, beside a file."""
    return (path if path.is_dir() else path.parent) / CLASSES_FILE
