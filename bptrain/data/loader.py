"""Data files -> arrays: the one place that tells the formats apart.

``--data`` names, recognised by content and name (each format has its own module):

* the classic ``mnist.pkl.gz`` (a gzip-compressed Python 2 pickle of three ``(x, y)`` splits), or a
  folder holding one;
* IDX files, or a folder of them (:mod:`.idx`: MNIST, Fashion-MNIST, KMNIST, EMNIST shown upright);
* a CSV of one image a row, its label in a column (:mod:`.csv_data`);
* a Keras ``.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``; :mod:`.npz_data`);
* a folder of images with one subfolder per class (:mod:`.image_folder`).

Each returns a :class:`Dataset` of float32 ``(N, n_features)`` images and int64 class numbers
0..n_classes-1: the classes are the distinct training labels in sorted order
(:mod:`.splits`), named by ``DataOptions.class_names``, a ``classes.txt`` beside the data, the image
folders, or else their label values. A set without a validation part holds out a sixth of its training
images; one without a test part is its own test part (``eval`` scores all of it).

Arrays read from a pickle are read-only views of the file's bytes (no second copy of the 157 MB
training images). The loader knows nothing about networks. It checks what it read and says precisely
what is wrong, because a bad data file otherwise surfaces much later as a baffling shape error deep
inside training. It never writes a data file.
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
from .csv_data import looks_like_csv, read_csv_set
from .idx import IDX_NAME, idx_sets, read_idx_set
from .image_folder import is_image_folder, read_image_folder
from .npz_data import ZIP_MAGIC, read_npz_set
from .regular import check_regular, open_regular
from .safe_pickle import PickleFormatError, UnsafePickleError, load_arrays
from .splits import (
    CLASSES_FILE,
    RawSet,
    check_class_names,
    class_values,
    classes_file_beside,
    hold_out,
    map_labels,
    read_class_names,
)

#: Where the data set is looked for when neither --data nor BPTRAIN_DATA says.
DEFAULT_DATA_PATH = Path("data") / "mnist.pkl.gz"
PICKLE_NAME = DEFAULT_DATA_PATH.name
DATA_ENV_VAR = "BPTRAIN_DATA"
SPLIT_NAMES = ("train", "validation", "test")
GZIP_MAGIC = b"\x1f\x8b"
IDX_MAGIC_START = b"\x00\x00"
FORMATS = ("an mnist.pkl.gz pickle, IDX files (train-images-idx3-ubyte[.gz] ...) or a folder of them, a .csv "
           "with a label column, a Keras .npz (x_train, y_train, x_test, y_test), or a folder of images with "
           "one subfolder per class")


class Split(NamedTuple):
    """One part of the data set: images ``x`` (N, n_features) and labels ``y`` (N,)."""

    x: np.ndarray
    y: np.ndarray


class Dataset(NamedTuple):
    """The three splits, where they came from, and what the classes are.

    ``class_names``: one per output unit; ``label_values``: the label each class had in the file;
    ``held_out``: how many training images were held out for validation (0: the set had a validation
    part); ``image_size``: (width, height) of an image folder's pictures, which predict reads alike.
    """

    train: Split
    validation: Split
    test: Split
    source: str = ""
    class_names: tuple = ()
    label_values: tuple = ()
    held_out: int = 0
    image_size: tuple | None = None

    @property
    def n_features(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes: the named ones, else one more than the largest label in any split."""
        if self.class_names:
            return len(self.class_names)
        return 1 + max(int(split.y.max()) for split in (self.train, self.validation, self.test) if len(split.y))

    @property
    def test_is_all(self) -> bool:
        """The set has no test part: its test split is all of its labelled images."""
        return len(self.test.x) > len(self.train.x) and np.may_share_memory(self.test.x, self.train.x)

    def split(self, name: str) -> Split:
        if name not in SPLIT_NAMES:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)

    def metadata(self) -> dict:
        """What a model trained on this data records of it: its class names, and the label values and
        image size when they are not the plain ones (so predict and eval need no data at hand)."""
        meta = {"class_names": list(self.class_names)} if self.class_names else {}
        if self.label_values and list(self.label_values) != list(range(len(self.label_values))):
            meta["label_values"] = list(self.label_values)
        if self.image_size is not None:
            meta["image_size"] = list(self.image_size)
        return meta


#: The longest side --resize may bring an image folder's images to.
MAX_IMAGE_SIDE = 1024


class DataOptions(NamedTuple):
    """How to read data the files do not describe themselves (each a command-line option)."""

    label_column: str | None = None  # a CSV's label column: a header name or a number from 0
    transposed: bool | None = None  # IDX images stored transposed (None: EMNIST's files, by name)
    resize: tuple[int, int] | None = None  # an image folder's images brought to (width, height)
    class_names: Path | None = None  # a file of class names, one a line (else classes.txt beside the data)


def resolve_data_path(path: str | os.PathLike | None = None) -> Path:
    """The data path to use: the explicit one, else $BPTRAIN_DATA, else data/mnist.pkl.gz."""
    if path is not None:
        return Path(path)
    from_env = os.environ.get(DATA_ENV_VAR)
    if from_env:
        return Path(from_env)
    return DEFAULT_DATA_PATH


def load_dataset(path: str | os.PathLike | None = None, n_classes: int | None = None, *,
                 options: DataOptions | None = None, label_values=None, class_names=None,
                 max_bytes: int | None = None, read_image=None) -> Dataset:
    """Load and validate a data set in any of the formats (see the module's docstring).

    ``label_values`` (a model's classes: the label each output stands for) map the labels instead of the
    training data's own; ``n_classes``: labels must be below it. ``class_names`` (a
    model's) name the classes. ``max_bytes``: the memory a CSV, npz or image folder may take, checked
    before it is read. ``read_image``: how an image folder's files are decoded. Raises
    :class:`DataError` with a one-line explanation for anything wrong.
    """
    path = resolve_data_path(path)
    options = options or DataOptions()
    raw = read_raw(path, options, max_bytes=max_bytes, read_image=read_image)
    train, validation, test, held_out = hold_out(raw)
    dataset = validate_splits((train, validation, test), source=str(path), n_classes=n_classes)
    own = label_values is None
    values = class_values(dataset.train.y, dataset.validation.y, str(path)) if own \
        else np.asarray(label_values, np.int64)
    whose = "the training data's classes" if own else "the model's classes"
    splits = [Split(split.x, map_labels(split.y, values, f"{path}: the {name} split", whose))
              for name, split in zip(SPLIT_NAMES, dataset[:3])]
    if class_names is None:
        class_names, where = _class_names(path, options, raw, values)
    else:
        where = "the model"
    names = check_class_names(class_names, len(values), where)
    return Dataset(*splits, source=str(path), class_names=names, label_values=tuple(int(v) for v in values),
                   held_out=held_out, image_size=raw.image_size)


def _class_names(path: Path, options: DataOptions, raw: RawSet, values: np.ndarray):
    """The names and where they came from: the option's file, a classes.txt beside the data, the image
    folders, else the label values themselves."""
    named = options.class_names or classes_file_beside(path)
    if options.class_names is not None or named.is_file():
        return read_class_names(named), str(named)
    if raw.class_names is not None:
        return [raw.class_names[int(v)] for v in values], f"the class folders of {path}"
    return [str(int(v)) for v in values], str(path)


def read_raw(path: Path, options: DataOptions, max_bytes: int | None = None, read_image=None) -> RawSet:
    """Tell the format by content and name, and read it."""
    if path.is_dir():
        if idx_sets(path):
            return _idx(path, options)
        if (path / PICKLE_NAME).is_file():
            return _read_pickle_splits(path / PICKLE_NAME)
        if is_image_folder(path):
            return read_image_folder(path, read_image=read_image, resize=options.resize, max_bytes=max_bytes)
        raise DataError(f"{path} holds no data bptrain reads; expected {FORMATS}")
    if not path.exists():
        raise DataError(missing_data_message(path))
    check_regular(path, DataError)  # a FIFO or a device: said as what it is
    if not path.is_file():
        raise DataError(f"{path} is not a regular file; expected {FORMATS}")
    if path.name.endswith((".pkl.gz", ".pkl")):
        return _read_pickle_splits(path)
    if path.name.lower().endswith((".csv.gz", ".npz.gz")):
        raise DataError(f"{path} is compressed; unpack it first (gunzip -k {path.name}): bptrain reads "
                        f"{path.name[:-3]} as it is")
    try:
        with open(path, "rb") as raw:
            head = raw.read(8192)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise DataError(f"{path} is empty; expected {FORMATS}")
    if IDX_NAME.match(path.name):
        return _idx(path, options)
    if head.startswith(ZIP_MAGIC):
        return read_npz_set(path, max_bytes=max_bytes)
    if head.startswith(GZIP_MAGIC):
        return _read_pickle_splits(path)
    if path.suffix.lower() == ".csv" or looks_like_csv(head):
        return read_csv_set(path, label_column=options.label_column, max_bytes=max_bytes)
    raise DataError(f"{path} is none of the data formats bptrain reads; expected {FORMATS}")


def _idx(path: Path, options: DataOptions) -> RawSet:
    train, test, _ = read_idx_set(path, transposed=options.transposed)
    return RawSet(train, None, test)


def missing_data_message(path: Path) -> str:
    where = "" if path.is_absolute() else f" (looked relative to {Path.cwd()})"
    return (
        f"no data at {path}{where}; "
        f"run `bptrain download` to fetch mnist.pkl.gz into data/, "
        f"or point --data or ${DATA_ENV_VAR} at your data: {FORMATS}"
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
            splits = load_arrays(io.BufferedReader(stream, 1 << 20))
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
    checked = validate_splits(splits, source=str(path))
    return RawSet(*((split.x, split.y) for split in checked[:3]))


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
