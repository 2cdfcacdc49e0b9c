"""A CSV of images, one a row: Kaggle's Digit Recognizer ``train.csv`` (``label,pixel0,...,pixel783``).

The label is a column (the first, or the one named by ``label_column``: a header name or a 0-based
number); a CSV without labels (Kaggle's ``test.csv``) is images only, for ``predict``. A first line that is
not all numbers is a header. Pixels are 0-255 (divided by 255) or 0-1 (used as they are), decided by the
largest value in the file. Every row must have as many values as the first; labels must be integers.

The file is measured before it is read: a CSV whose values would not fit in the memory the caller allows
(``max_bytes``) is refused up front, not half-read.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from .npyfile import format_bytes
from .splits import RawSet

#: Lines sampled from the start of the file to estimate how many values it holds.
SAMPLE_LINES = 64
MAX_PIXEL = 255
#: Values are read as float32, which holds every integer below this exactly.
MAX_EXACT_LABEL = 2**24
NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def looks_like_csv(head: bytes) -> bool:
    """Comma-separated numbers on the first or second line of ``head`` (the first may be a header): what
    ``--data`` recognises a CSV by, beside a .csv name."""
    for line in head.split(b"\n")[:2]:
        fields = line.split(b",")[:-1]  # the last may be cut off by the end of head
        if fields and all(NUMBER.match(field.decode("ascii", "replace")) for field in fields):
            return True
    return False


def read_csv_set(path: Path, label_column: str | None = None, max_bytes: int | None = None) -> RawSet:
    """A labelled CSV as a :class:`RawSet` (all of it training data; rows in file order, interleaved
    hold-out since a CSV may be sorted by label)."""
    x, y = read_csv(path, label_column=label_column, labelled=True, max_bytes=max_bytes)
    return RawSet((x, y), interleave=True)


def read_csv(path: Path, label_column: str | None = None, labelled: bool = True, max_bytes: int | None = None):
    """``(x, y)`` of a CSV (``y`` None when not ``labelled``): x float32 (N, n_features) in [0, 1]."""
    header, n_columns, skip = _first_line(path)
    column = _label_index(path, header, n_columns, label_column) if labelled else None
    _check_size(path, n_columns, max_bytes)
    try:
        values = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float32, ndmin=2, encoding="utf-8")
    except ValueError as exc:
        raise DataError(_explain(path, exc, column, header, skip)) from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; a CSV of pixel values was expected") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except MemoryError:
        raise DataError(f"{path} does not fit in memory as float32 values") from None
    if len(values) == 0:
        raise DataError(f"{path} has no rows of values")
    if values.shape[1] != n_columns:  # np.loadtxt says so itself when a later row differs; this is the first
        raise DataError(f"{path}: line {skip + 1} has {values.shape[1]} values, the header {n_columns}")
    if not np.isfinite(values).all():
        raise DataError(f"{path} holds NaN or infinite values")
    labels = None
    if column is not None:
        raw = values[:, column]
        if (raw != np.round(raw)).any():
            row = int(np.flatnonzero(raw != np.round(raw))[0])
            raise DataError(f"{path}: the label column {_column_name(header, column)} holds {raw[row]:g} on line "
                            f"{row + skip + 1}; labels must be integers")
        if np.abs(raw).max() >= MAX_EXACT_LABEL:
            raise DataError(f"{path}: the label column {_column_name(header, column)} holds {np.abs(raw).max():g}; "
                            f"labels must be integers below {MAX_EXACT_LABEL:,}")
        labels = raw.astype(np.int64)
        values = np.delete(values, column, axis=1)
    if values.shape[1] == 0:
        raise DataError(f"{path} has a label column but no pixel columns")
    return _scale(values, path), labels


def _first_line(path: Path):
    """``(header names or None, number of columns, lines to skip)``."""
    try:
        with open(path, "rb") as handle:
            line = handle.readline(1 << 20)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = line.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; a CSV of pixel values was expected") from None
    if not text:
        raise DataError(f"{path} is empty or starts with a blank line; a CSV of pixel values was expected")
    fields = [field.strip().strip('"') for field in text.split(",")]
    if all(NUMBER.match(field) for field in fields):
        return None, len(fields), 0
    return fields, len(fields), 1


def _label_index(path: Path, header, n_columns: int, label_column: str | None) -> int:
    if label_column is None:
        return 0
    if header is not None and label_column in header:
        return header.index(label_column)
    if label_column.isdigit() and int(label_column) < n_columns:
        return int(label_column)
    has = f"its header has {', '.join(header[:5])}{', ...' if len(header) > 5 else ''}" if header is not None \
        else f"it has no header and {n_columns} columns"
    raise DataError(f"{path} has no label column {label_column!r} ({has}); give a header name or a column "
                    "number from 0")


def _column_name(header, column: int) -> str:
    return repr(header[column]) if header is not None else f"{column}"


def _check_size(path: Path, n_columns: int, max_bytes: int | None) -> None:
    """Refuse, before reading it, a CSV whose values would not fit: rows estimated from the size of the file
    and of its first lines, each value held as float32 (and once more while the label column is removed)."""
    if max_bytes is None:
        return
    size = path.stat().st_size
    with open(path, "rb") as handle:
        sample = [handle.readline(1 << 20) for _ in range(SAMPLE_LINES)]
    sample = [line for line in sample if line]
    line_bytes = max(1.0, sum(map(len, sample)) / max(1, len(sample)))
    needs = int(size / line_bytes) * n_columns * 4 * 2
    if needs > max_bytes:
        raise DataError(f"{path} ({format_bytes(size)}) holds about {int(size / line_bytes):,} rows of {n_columns} "
                        f"values: about {format_bytes(needs)} to read, more than the {format_bytes(max_bytes)} of "
                        "memory available; use a part of it")


def _explain(path: Path, exc: ValueError, column, header, skip: int) -> str:
    text = str(exc).splitlines()[0]
    changed = re.search(r"number of columns changed from (\d+) to (\d+) at row (\d+)", text)
    if changed:
        first, found, row = changed.groups()
        return (f"{path}: line {int(row) + skip} has {found} values, the first line {first}; every row must have "
                "as many values")
    bad = re.search(r"could not convert string '(.*)' to \w+ at row (\d+), column (\d+)", text)
    if bad:
        value, row, col = bad.group(1), int(bad.group(2)), int(bad.group(3)) - 1
        line = row + skip + 1
        if column is not None and col == column:
            return (f"{path}: the label column {_column_name(header, column)} holds {value!r} on line {line}; "
                    "labels must be integers")
        return f"{path}: line {line} holds {value!r} in column {col}; pixel values must be numbers"
    return f"{path} is not a CSV of numbers ({text})"


def _scale(values: np.ndarray, path: Path) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > MAX_PIXEL:
        raise DataError(f"{path} holds pixel values from {low:g} to {high:g}; expected 0-255 or 0-1")
    if high > 1:
        values /= np.float32(MAX_PIXEL)
    return np.ascontiguousarray(values)
