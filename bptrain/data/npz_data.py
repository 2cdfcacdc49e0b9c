"""Keras's ``mnist.npz`` (and any ``.npz`` laid out like it): ``x_train``, ``y_train``, ``x_test``, ``y_test``.

Images are ``(N, rows, cols)`` or ``(N, n_features)``, uint8 0-255 (Keras's) or floats in [0, 1]; labels
are integers. ``x_val`` / ``y_val`` (or ``x_validation`` / ``y_validation``) are the validation part when
present; otherwise the last sixth of ``x_train`` is held out, as mnist.pkl.gz does with the same images.
Opened with ``allow_pickle=False``: an array that needs pickle is refused, and each array's size is
checked against the memory the caller allows before it is read.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from .npyfile import format_bytes
from .splits import RawSet

ZIP_MAGIC = b"PK\x03\x04"
EXPECTED = "x_train, y_train, x_test, y_test (Keras's mnist.npz), optionally x_val, y_val"
PARTS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
VALIDATION_NAMES = (("x_val", "y_val"), ("x_validation", "y_validation"))
MAX_PIXEL = 255


def read_npz_set(path: Path, max_bytes: int | None = None) -> RawSet:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz archive ({_first_line(exc)})") from None
    with archive:
        names = set(archive.files)
        _check_size(path, max_bytes)
        parts = {}
        for part, pair in [*PARTS.items(), *(("validation", pair) for pair in VALIDATION_NAMES)]:
            present = [name for name in pair if name in names]
            if not present:
                if part == "train":
                    raise DataError(f"{path} has no x_train and y_train arrays (it has {_listed(names)}); "
                                    f"expected {EXPECTED}")
                continue
            if len(present) == 1:
                missing = next(name for name in pair if name not in names)
                raise DataError(f"{path} has {present[0]} but no {missing} array; expected {EXPECTED}")
            parts[part] = _pair(archive, path, *pair)
    widths = {len(x[0]) for x, _ in parts.values()}
    if len(widths) > 1:
        raise DataError(f"{path}: its image arrays have different sizes ({', '.join(map(str, sorted(widths)))} "
                        "pixels); they do not belong together")
    return RawSet(parts["train"], parts.get("validation"), parts.get("test"))


def _pair(archive, path: Path, x_name: str, y_name: str):
    try:
        x, y = archive[x_name], archive[y_name]
    except ValueError as exc:
        raise DataError(f"{path}: {x_name} or {y_name} cannot be read without pickle ({_first_line(exc)}); "
                        "bptrain refuses that") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is truncated or corrupt ({_first_line(exc)})") from None
    if x.ndim not in (2, 3) or len(x) == 0:
        raise DataError(f"{path}: {x_name} has shape {x.shape}; expected (N, rows, cols) or (N, features)")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{path}: {x_name} holds {len(x)} images but {y_name} has shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {y_name} has dtype {y.dtype}; labels must be integers")
    return _scale(x.reshape(len(x), -1), path, x_name), y.astype(np.int64)


def _scale(x: np.ndarray, path: Path, name: str) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer):
        low, high = int(x.min()), int(x.max())
        if low < 0 or high > MAX_PIXEL:
            raise DataError(f"{path}: {name} holds integers {low} to {high}; pixels are 0-255")
        return np.divide(x, np.float32(MAX_PIXEL), dtype=np.float32)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{path}: {name} has dtype {x.dtype}; expected uint8 0-255 or floats 0-1")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all() or float(x.min()) < 0 or float(x.max()) > 1:
        raise DataError(f"{path}: {name} holds floats outside [0, 1] (or not finite); float pixels must be 0-1")
    return x


def _check_size(path: Path, max_bytes: int | None) -> None:
    """The arrays as they will be held (float32: four times uint8) fit in ``max_bytes``: refused before reading."""
    if max_bytes is None:
        return
    try:
        with zipfile.ZipFile(path) as archive:
            stored = sum(info.file_size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz archive ({_first_line(exc)})") from None
    if stored * 5 > max_bytes:
        raise DataError(f"{path} holds {format_bytes(stored)} of arrays, about {format_bytes(stored * 5)} to read "
                        f"as float32; more than the {format_bytes(max_bytes)} of memory available")


def _listed(names) -> str:
    return ", ".join(sorted(names)[:8]) or "no arrays"


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__
