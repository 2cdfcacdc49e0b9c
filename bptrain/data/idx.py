"""MNIST in its original IDX format -> the three ``(x, y)`` splits.

The IDX files are what LeCun's site (and its mirrors) distribute: a tiny
big-endian header followed by raw uint8 values. Users who already have them
should not need the pickle, so ``--data DIR`` accepts a directory of them.

Only the IDX-specific checks live here (header, sizes, gzip, file pairing);
:func:`bptrain.data.loader.validate_splits` does the generic ones afterwards.
"""

from __future__ import annotations

import gzip
import math
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

#: The classic mnist.pkl.gz holds out the last 10,000 training images for validation.
VALIDATION_SIZE = 10_000
#: No MNIST-like file comes near this; a header claiming more is corrupt, and
#: believing it could make us try to allocate gigabytes.
MAX_BODY_BYTES = 2**31
#: Read in pieces so memory grows with the bytes actually present, not with
#: what a (possibly corrupt) header claims.
READ_CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
MAX_LABEL = 9


def load_idx_directory(directory: Path):
    """Read the four MNIST IDX files in ``directory`` into ``((x, y), (x, y), (x, y))``.

    The splits are (train, validation, test) like mnist.pkl.gz: validation is
    the last :data:`VALIDATION_SIZE` training images, or the last sixth (at
    least one) when the training file has no more than that, so that small
    files still give three non-empty splits. Images are float32 ``(N, rows*cols)``
    in [0, 1] (pixel / 255); labels are int64.
    """
    directory = Path(directory)
    paths = find_idx_files(directory)

    train_labels = _read_labels(paths[TRAIN_LABELS])
    train_images = _read_images(paths[TRAIN_IMAGES], expected_count=len(train_labels), labels_path=paths[TRAIN_LABELS])
    test_labels = _read_labels(paths[TEST_LABELS])
    test_images = _read_images(paths[TEST_IMAGES], expected_count=len(test_labels), labels_path=paths[TEST_LABELS])

    if train_images.shape[1] != test_images.shape[1]:
        raise DataError(
            f"{paths[TEST_IMAGES]} has {test_images.shape[1]} pixels per image "
            f"but {paths[TRAIN_IMAGES]} has {train_images.shape[1]}; the files do not belong together"
        )

    n_total = len(train_images)
    if n_total < 2:
        raise DataError(
            f"{paths[TRAIN_IMAGES]} holds {n_total} images; at least 2 are needed to make train and validation splits"
        )
    n_validation = validation_size(n_total)
    n_train = n_total - n_validation
    # Row slices of a C-contiguous array are contiguous views: no copies.
    return (
        (train_images[:n_train], train_labels[:n_train]),
        (train_images[n_train:], train_labels[n_train:]),
        (test_images, test_labels),
    )


def validation_size(n_training_images: int) -> int:
    """How many of the training images are held out for validation (see load_idx_directory)."""
    if n_training_images > VALIDATION_SIZE:
        return VALIDATION_SIZE
    return max(1, n_training_images // 6)


def find_idx_files(directory: Path) -> dict[str, Path]:
    """Map each IDX name to its file, plain or ``.gz`` (plain wins if both exist)."""
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory of MNIST IDX files")
    found = {}
    missing = []
    for name in IDX_NAMES:
        for candidate in (directory / name, directory / (name + ".gz")):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            missing.append(name + "[.gz]")
    if missing:
        raise DataError(
            f"{directory} is missing {', '.join(missing)} "
            "(an MNIST IDX directory needs all four files, each plain or .gz)"
        )
    return found


def _read_labels(path: Path) -> np.ndarray:
    labels = read_idx(path, expected_ndim=1)
    if len(labels) and int(labels.max()) > MAX_LABEL:
        raise DataError(f"{path} has label {int(labels.max())}; MNIST labels are digits 0..{MAX_LABEL}")
    return labels.astype(np.int64)


def _read_images(path: Path, expected_count: int, labels_path: Path) -> np.ndarray:
    """Images as float32 (N, rows*cols) in [0, 1], converted once from the uint8 bytes."""
    pixels = read_idx(path, expected_ndim=3)
    if len(pixels) != expected_count:
        raise DataError(f"{path} has {len(pixels)} images but {labels_path} has {expected_count} labels")
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
