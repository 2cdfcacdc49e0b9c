"""Data files -> arrays.

Reads the classic `mnist.pkl.gz` (a gzip-compressed Python 2 pickle of three
``(x, y)`` splits) or a directory of the four original IDX files, and returns a
:class:`Dataset` of float32 ``(N, n_features)`` images and int64 labels.

Arrays read from a pickle are read-only views of the file's bytes (no second
copy of the 157 MB training images); ``np.array(x)`` gives a writable copy.
The loader knows nothing about networks. It checks what it read and says
precisely what is wrong, because a bad data file otherwise surfaces much later
as a baffling shape error deep inside training.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.errors import DataError
from .idx import load_idx_directory
from .regular import open_regular
from .safe_pickle import PickleFormatError, UnsafePickleError, load_arrays

#: Where the data set is looked for when neither --data nor BPTRAIN_DATA says.
DEFAULT_DATA_PATH = Path("data") / "mnist.pkl.gz"
DATA_ENV_VAR = "BPTRAIN_DATA"
SPLIT_NAMES = ("train", "validation", "test")
GZIP_MAGIC = b"\x1f\x8b"

class Split(NamedTuple):
    """One part of the data set: images ``x`` (N, n_features) and labels ``y`` (N,)."""

    x: np.ndarray
    y: np.ndarray


class Dataset(NamedTuple):
    """The three splits of the classic MNIST layout, plus where they came from."""

    train: Split
    validation: Split
    test: Split
    source: str = ""

    @property
    def n_features(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes: one more than the largest label in any split."""
        return 1 + max(int(split.y.max()) for split in self if isinstance(split, Split) and len(split.y))

    def split(self, name: str) -> Split:
        if name not in SPLIT_NAMES:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)


def resolve_data_path(path: str | os.PathLike | None = None) -> Path:
    """The data path to use: the explicit one, else $BPTRAIN_DATA, else data/mnist.pkl.gz."""
    if path is not None:
        return Path(path)
    from_env = os.environ.get(DATA_ENV_VAR)
    if from_env:
        return Path(from_env)
    return DEFAULT_DATA_PATH


def load_dataset(path: str | os.PathLike | None = None, n_classes: int | None = None) -> Dataset:
    """Load and validate a data set from a ``.pkl.gz`` file or an IDX directory.

    ``n_classes``, when given, is the number of classes labels must fit in.
    Raises :class:`DataError` with a one-line explanation for anything wrong.
    """
    path = resolve_data_path(path)
    if path.is_dir():
        splits = load_idx_directory(path)
    elif not path.exists():
        raise DataError(missing_data_message(path))
    else:
        splits = _read_pickle_splits(path)
    return validate_splits(splits, source=str(path), n_classes=n_classes)


def missing_data_message(path: Path) -> str:
    return (
        f"no data at {path} (looked relative to {Path.cwd()}); "
        f"run `bptrain download` to fetch mnist.pkl.gz into data/, "
        f"or point --data or ${DATA_ENV_VAR} at an mnist.pkl.gz file or a directory of MNIST IDX files"
    )


def _read_pickle_splits(path: Path):
    with open_regular(path, DataError) as raw:  # a FIFO or a device: refused, not waited on
        head = raw.read(2)
    if not head:
        raise DataError(f"{path} is empty; delete it and run `bptrain download` again")
    if head != GZIP_MAGIC:
        raise DataError(f"{path} is not a gzip file (expected a gzip-compressed pickle like mnist.pkl.gz)")
    try:
        with gzip.open(path, "rb") as stream:
            return load_arrays(io.BufferedReader(stream, 1 << 20))
    except UnsafePickleError as exc:
        raise DataError(f"refusing to load {path}: {exc}") from None
    except PickleFormatError as exc:
        raise DataError(f"{path} is not a readable pickle of numpy arrays: {exc}") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path} is truncated or corrupt ({_describe(exc)}); delete it and download it again") from None
    except MemoryError:
        raise DataError(f"{path} asks for more memory than this machine has; it is not a valid data file") from None
    except Exception as exc:  # a malformed pickle can raise almost anything
        raise DataError(f"{path} is not a readable pickle of numpy arrays ({_describe(exc)})") from None


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def validate_splits(splits, source: str = "", n_classes: int | None = None) -> Dataset:
    """Check the structure ``((x, y), (x, y), (x, y))`` and return a float32 :class:`Dataset`."""
    where = source or "the data"
    if not isinstance(splits, (tuple, list)) or len(splits) != 3:
        found = f"a {type(splits).__name__}"
        if isinstance(splits, (tuple, list)):
            found += f" of {len(splits)} items"
        raise DataError(f"{where}: expected 3 splits (train, validation, test), found {found}")
    checked = []
    width = None
    for name, split in zip(SPLIT_NAMES, splits):
        if not isinstance(split, (tuple, list)) or len(split) != 2:
            raise DataError(f"{where}: the {name} split must be a pair (x, y)")
        x, y = split
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise DataError(f"{where}: the {name} split must hold numpy arrays (x, y)")
        if x.ndim != 2:
            raise DataError(f"{where}: {name} x must be 2-D (samples, features), got shape {x.shape}")
        if y.ndim != 1:
            raise DataError(f"{where}: {name} y must be 1-D (samples,), got shape {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{where}: {name} has {len(x)} images but {len(y)} labels")
        if len(x) == 0:
            raise DataError(f"{where}: the {name} split is empty")
        if width is None:
            width = x.shape[1]
        elif x.shape[1] != width:
            raise DataError(f"{where}: {name} images have {x.shape[1]} features but train images have {width}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise DataError(f"{where}: {name} x has dtype {x.dtype}, expected numbers")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: {name} labels have dtype {y.dtype}; labels must be integers")
        with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf, refused next
            x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{where}: {name} x contains NaN or infinite values")
        low, high = int(y.min()), int(y.max())
        if low < 0:
            raise DataError(f"{where}: {name} has a negative label ({low}); labels must be 0..n_classes-1")
        if n_classes is not None and high >= n_classes:
            raise DataError(f"{where}: {name} has label {high}, outside 0..{n_classes - 1}")
        checked.append(Split(x, np.ascontiguousarray(y, dtype=np.int64)))
    return Dataset(*checked, source=source)
