"""MNIST in its original IDX format -> the three ``(x, y)`` splits.

The IDX files are what LeCun's site (and its mirrors) distribute: a tiny
big-endian header followed by raw uint8 values. Users who already have them
should not need the pickle, so ``--data DIR`` accepts a directory of them: MNIST's,
Fashion-MNIST's, KMNIST's (the same names) or EMNIST's (``emnist-letters-train-images-idx3-ubyte.gz``,
its images stored transposed).

Only the IDX-specific checks live here (header, sizes, gzip, file pairing);
:func:`bptrain.data.loader.validate_splits` does the generic ones afterwards.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from .regular import open_regular

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)
UNSIGNED_BYTE = 0x08
TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int", 0x0D: "float", 0x0E: "double"}

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
IDX_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
#: Any IDX set's file names: an optional prefix (EMNIST's "emnist-letters-"), the part (MNIST's t10k or
#: EMNIST's test), the kind; plain or .gz.
IDX_NAME = re.compile(r"^(?P<prefix>.*?)(?P<part>train|t10k|test)-(?P<kind>images-idx3|labels-idx1)-ubyte(?:\.gz)?$")
#: EMNIST stores each image transposed (its columns as rows); its files are named emnist-*.
TRANSPOSED_NAME = "emnist"

#: No MNIST-like file comes near this; a header claiming more is corrupt, and
#: believing it could make us try to allocate gigabytes.
MAX_BODY_BYTES = 2**31
#: Read in pieces so memory grows with the bytes actually present, not with
#: what a (possibly corrupt) header claims.
READ_CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


def load_idx_directory(directory: Path):
    """Read an IDX set's train and t10k files in ``directory`` into ``((x, y), (x, y), (x, y))``.

    The splits are (train, validation, test) like mnist.pkl.gz: validation is the last sixth of the
    training images (at least one; MNIST's 10,000 of 60,000). Images are float32 ``(N, rows*cols)`` in
    [0, 1] (pixel / 255); labels are int64.
    """
    train, test, _ = read_idx_set(Path(directory))
    if test is None:
        raise DataError(f"{directory} has no t10k (test) files")
    images, labels = train
    n_validation = validation_size(len(images))
    n_train = len(images) - n_validation
    return (images[:n_train], labels[:n_train]), (images[n_train:], labels[n_train:]), test


def read_idx_set(path: Path, transposed: bool | None = None):
    """``(train, test or None, files)`` of the IDX set ``path`` names: a directory holding one set, or
    one of a set's files (a folder of several EMNIST sets names the one it means by a file).

    ``transposed`` (None: from the names, EMNIST's files are) turns each image upright. Without a
    train part, the test part is all there is and comes back as ``train``.
    """
    paths = find_idx_files(path)
    if transposed is None:
        transposed = any(TRANSPOSED_NAME in p.name.lower() for p in paths.values())
    parts = []
    for images_name, labels_name in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        if images_name not in paths:
            parts.append(None)
            continue
        labels = _read_labels(paths[labels_name])
        images = _read_images(paths[images_name], expected_count=len(labels), labels_path=paths[labels_name],
                              transposed=transposed)
        parts.append((images, labels))
    train, test = parts
    if train is not None and test is not None and train[0].shape[1] != test[0].shape[1]:
        raise DataError(
            f"{paths[TEST_IMAGES]} has {test[0].shape[1]} pixels per image "
            f"but {paths[TRAIN_IMAGES]} has {train[0].shape[1]}; the files do not belong together"
        )
    if train is None:
        train, test = test, None
    if len(train[0]) < 2:
        raise DataError(f"{paths[TRAIN_IMAGES if TRAIN_IMAGES in paths else TEST_IMAGES]} holds {len(train[0])} "
                        "images; at least 2 are needed to make train and validation splits")
    return train, test, list(paths.values())


def validation_size(n_training_images: int) -> int:
    """How many of the training images are held out for validation: a sixth (at least one)."""
    return max(1, n_training_images // 6)


def idx_sets(directory: Path) -> dict[str, dict[str, Path]]:
    """The IDX files in ``directory`` by set (their name's prefix) and by standard name (plain wins over .gz)."""
    sets: dict[str, dict[str, Path]] = {}
    try:
        entries = sorted(directory.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise DataError(f"cannot read the directory {directory}: {exc.strerror or exc}") from None
    for entry in entries:
        match = IDX_NAME.match(entry.name)
        if match is None or not entry.is_file():
            continue
        part = "t10k" if match["part"] == "test" else match["part"]
        name = f"{part}-{match['kind']}-ubyte"
        found = sets.setdefault(match["prefix"], {})
        if name not in found or not entry.name.endswith(".gz"):
            found[name] = entry
    return sets


def find_idx_files(path: Path) -> dict[str, Path]:
    """Map each IDX name of one set to its file: train and t10k pairs, each pair whole (either may be absent,
    not both)."""
    path = Path(path)
    if path.is_dir():
        directory, sets = path, idx_sets(path)
        if len(sets) > 1:
            names = ", ".join(f"{prefix or '(no prefix)'}" for prefix in sets)
            first = next(iter(sets.values()))
            example = first.get(TRAIN_IMAGES) or next(iter(first.values()))
            raise DataError(f"{path} holds several IDX sets ({names}); name one of its files as --data, "
                            f"e.g. {example}")
        found = next(iter(sets.values()), {})
    else:
        match = IDX_NAME.match(path.name)
        if match is None or not path.is_file():
            raise DataError(f"{path} is not a directory of IDX files or an IDX file named like "
                            "train-images-idx3-ubyte[.gz]")
        directory = path.parent
        found = idx_sets(directory).get(match["prefix"], {})
    missing = []
    for images_name, labels_name in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        if (images_name in found) != (labels_name in found) or (not found and images_name == TRAIN_IMAGES):
            missing += [name + "[.gz]" for name in (images_name, labels_name) if name not in found]
    if missing:
        raise DataError(
            f"{directory} is missing {', '.join(missing)} "
            "(an IDX set needs its images and labels files together, each plain or .gz)"
        )
    return found


def _read_labels(path: Path) -> np.ndarray:
    return read_idx(path, expected_ndim=1).astype(np.int64)


def _read_images(path: Path, expected_count: int, labels_path: Path, transposed: bool = False) -> np.ndarray:
    """Images as float32 (N, rows*cols) in [0, 1], converted once from the uint8 bytes (upright)."""
    pixels = read_idx(path, expected_ndim=3)
    if len(pixels) != expected_count:
        raise DataError(f"{path} has {len(pixels)} images but {labels_path} has {expected_count} labels")
    if transposed:
        pixels = np.ascontiguousarray(pixels.transpose(0, 2, 1))
    count, rows, cols = pixels.shape
    pixels = pixels.reshape(count, rows * cols)
    # Division (not multiplication by 1/255) is exactly rounded, so 255 -> 1.0 exactly.
    return np.divide(pixels, np.float32(255), dtype=np.float32)


def read_idx(path: Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzip) as a uint8 array shaped like its header says.

    ``expected_ndim`` (3 for images, 1 for labels) rejects a file of the other
    kind early with a clear message instead of a shape error later.
    Every problem, including gzip and OS errors, becomes a one-line DataError.
    """
    path = Path(path)
    try:
        with _open_maybe_gzip(path) as stream:
            dims = _read_header(stream, path, expected_ndim)
            expected_bytes = math.prod(dims)
            body = _read_body(stream, path, expected_bytes)
    except DataError:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path} is a truncated or corrupt gzip file ({_first_line(exc)})") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or _first_line(exc)}") from None
    except MemoryError:
        raise DataError(f"{path} holds more data than fits in memory; it is not an MNIST-sized file") from None
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _open_maybe_gzip(path: Path):
    """Open by content, not by name: a valid IDX file never starts with the gzip magic."""
    with open_regular(path, DataError) as raw:  # a FIFO or a device: refused, not waited on
        head = raw.read(2)
    if head == GZIP_MAGIC:
        return gzip.open(path, "rb")
    if path.suffix == ".gz":
        raise DataError(f"{path} is named .gz but is not gzip-compressed")
    return open(path, "rb")


def _read_header(stream, path: Path, expected_ndim: int | None) -> tuple[int, ...]:
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(head)} bytes)")
    if head[0] != 0 or head[1] != 0:
        raise DataError(f"{path} is not an IDX file (magic number 0x{head.hex()} does not start with two zero bytes)")
    type_code, ndim = head[2], head[3]
    if type_code != UNSIGNED_BYTE:
        type_name = TYPE_NAMES.get(type_code, "unknown")
        raise DataError(
            f"{path} holds IDX data type 0x{type_code:02X} ({type_name}); only unsigned byte (0x08) is supported"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        kind = "an image" if expected_ndim == 3 else "a label"
        expected_magic = UNSIGNED_BYTE << 8 | expected_ndim
        raise DataError(
            f"{path} has {ndim} dimensions (magic 0x{head.hex()}) but {kind} file has {expected_ndim} "
            f"(magic 0x{expected_magic:08x}); is it the right file?"
        )
    if ndim == 0:
        raise DataError(f"{path} has an IDX header with 0 dimensions")
    dims_bytes = stream.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(f"{path} ends inside its IDX header (expected {ndim} dimension sizes)")
    dims = tuple(int(d) for d in np.frombuffer(dims_bytes, dtype=">u4"))
    if math.prod(dims) > MAX_BODY_BYTES:
        shape = "x".join(str(d) for d in dims)
        raise DataError(f"{path} claims a {shape} array, over {MAX_BODY_BYTES:,} bytes; the header is corrupt")
    return dims


def _read_body(stream, path: Path, expected_bytes: int) -> bytearray:
    body = bytearray()
    while len(body) < expected_bytes:
        chunk = stream.read(min(READ_CHUNK, expected_bytes - len(body)))
        if not chunk:
            raise DataError(
                f"{path} is truncated: its header promises {expected_bytes:,} bytes of data, found {len(body):,}"
            )
        body += chunk
    extra = 0
    while chunk := stream.read(READ_CHUNK):
        extra += len(chunk)
    if extra:
        raise DataError(
            f"{path} is too long: its header promises {expected_bytes:,} bytes of data, "
            f"found {expected_bytes + extra:,}"
        )
    return body


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__
