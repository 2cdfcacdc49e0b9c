"""Images a user gives ``bptrain predict`` -> float32 ``(N, width)`` arrays in [0, 1].

Accepted inputs, recognised by their content (not their name):

* an image file (PNG, JPEG, BMP, GIF, WebP), or a directory of them: each is brought into MNIST's
  form by :mod:`bptrain.app.images` (needs Pillow); see :func:`expand_inputs` and :func:`read_inputs`;

* a ``.npy`` array, read with ``allow_pickle=False`` (a file that needs pickle
  is refused: loading it could run code), shaped

  - ``(N, width)``        N flattened images, e.g. (N, 784);
  - ``(N, rows, cols)``   N images, flattened row by row, e.g. (N, 28, 28);
  - ``(width,)``          one flattened image;
  - ``(rows, cols)``      one image, when ``rows * cols`` is the expected width
                          and ``cols`` is not (a (28, 28) array is one digit,
                          not 28 rows of 28 features);

  with pixel values either

  - integers 0..255 (any integer dtype: uint8 as MNIST stores them, but also
    the int64 that ``np.array([[0, 255, ...]])`` makes), divided by 255; or
  - floats in [0, 1] (float16/32/64), finite, used as they are.

  Floats outside [0, 1] (0–255 data saved as float, say), integers outside
  0..255, and other dtypes (bool, complex, strings, structured records) are
  refused with a message that says what was found;

* an IDX image file as distributed with MNIST (``*-idx3-ubyte``), plain or
  gzip-compressed: magic bytes ``00 00 08 03``, uint8 (N, rows, cols);

* a CSV of one image a row without labels (Kaggle's ``test.csv``), 0-255 or 0-1, an optional header.

Every problem is one line of :class:`~bptrain.core.errors.DataError`.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..data.csv_data import looks_like_csv, read_csv
from ..data.idx import read_idx
from ..data.image_folder import resized
from ..data.npyfile import load_npy
from ..data.regular import check_regular, open_regular
from .image_files import load_grayscale, looks_like_image
from .images import image_to_input

#: The input width of an MNIST model; the default for ``expected_width``.
MNIST_WIDTH = 784
NPY_MAGIC = b"\x93NUMPY"
GZIP_MAGIC = b"\x1f\x8b"
#: The first two bytes of every IDX file are zero; the third is the element
#: type (0x08 unsigned byte ... 0x0E double), the fourth the number of dims.
IDX_TYPE_CODES = frozenset({0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E})
IDX_IMAGES_MAGIC = b"\x00\x00\x08\x03"
MAX_PIXEL = 255
#: The image files ``bptrain predict`` accepts besides arrays (see bptrain.app.image_files.FORMATS), for messages.
IMAGE_KINDS = "PNG, JPEG, BMP, GIF or WebP"


def read_images(path: str | os.PathLike, expected_width: int | None = MNIST_WIDTH) -> np.ndarray:
    """Read the images in ``path`` as C-contiguous float32 ``(N, width)`` in [0, 1].

    ``expected_width`` is the model's input width (``model.sizes[0]``); images
    of another width are an error. ``None`` skips that check, and then a 2-D
    array is always read as ``(N, width)``.
    """
    path = Path(path)
    head = _read_head(path)
    if head.startswith(NPY_MAGIC):
        array = _load_npy(path)
    elif _looks_like_idx(head):
        array = _load_idx(path)
    elif head.startswith(GZIP_MAGIC):
        inner = _gzip_head(path)
        if not _looks_like_idx(inner):
            raise DataError(f"{path} is gzip-compressed but does not hold an IDX image file "
                            f"(expected a .npy array or an IDX image file such as t10k-images-idx3-ubyte[.gz])")
        array = _load_idx(path)
    elif path.suffix.lower() == ".csv" or looks_like_csv(head):
        array, _ = read_csv(path, labelled=False)  # one image a row, 0-255 or 0-1, scaled to [0, 1]
    else:
        raise DataError(f"{path} is neither a .npy array nor an IDX image file, nor a {IMAGE_KINDS} image "
                        f"(it starts with bytes {head[:8].hex(' ')})")
    return images_from_array(array, source=str(path), expected_width=expected_width)


def images_from_array(array: np.ndarray, source: str = "the input", expected_width: int | None = MNIST_WIDTH):
    """Check and convert an in-memory array exactly as :func:`read_images` does a file's."""
    array = np.asarray(array)
    _check_dtype(array.dtype, source)
    images = _as_rows(array, source, expected_width)
    return _scale(images, source)


# ------------------------------------------------------------------ reading
def _read_head(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"no input file at {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a .npy array or an IDX image file")
    try:
        with open_regular(path, DataError) as handle:
            head = handle.read(16)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise DataError(f"{path} is empty; expected a .npy array or an IDX image file")
    return head


def _looks_like_idx(head: bytes) -> bool:
    return len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in IDX_TYPE_CODES and 1 <= head[3] <= 4


def _gzip_head(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read(4)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise DataError(f"{path} is a truncated or corrupt gzip file ({_first_line(exc)})") from None


def _load_npy(path: Path) -> np.ndarray:
    array = load_npy(path, DataError, memory_advice="; split the images into smaller files")
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load of .npy always gives an ndarray
        raise DataError(f"{path} is not a single .npy array")
    return array


def _load_idx(path: Path) -> np.ndarray:
    return read_idx(path, expected_ndim=3)


# --------------------------------------------------------------- checking
def _as_rows(array: np.ndarray, source: str, expected_width: int | None) -> np.ndarray:
    """Reshape to (N, width), checking the number of dimensions and the width."""
    shape = array.shape
    what = None  # how the images were shaped, for the width message
    if array.ndim == 1:
        rows = array.reshape(1, -1)
    elif array.ndim == 2:
        n, width = shape
        single = (expected_width is not None and width != expected_width and n * width == expected_width)
        if single:
            rows = array.reshape(1, -1)
            what = f"one {n}x{width} image"
        else:
            rows = array
    elif array.ndim == 3:
        n, height, width = shape
        rows = array.reshape(n, height * width)
        what = f"{height}x{width} images"
    else:
        raise DataError(f"{source} has shape {shape}; expected (N, width), (N, rows, cols), "
                        f"or one image (width,) or (rows, cols)")
    if len(rows) == 0 or rows.shape[1] == 0:
        raise DataError(f"{source} holds no images (shape {shape})")
    if expected_width is not None and rows.shape[1] != expected_width:
        found = f"{what} ({rows.shape[1]} features per image)" if what else f"{rows.shape[1]} features per image"
        raise DataError(f"{source} has {found} but the model expects {expected_width}")
    return rows


def _check_dtype(dtype: np.dtype, source: str) -> None:
    if dtype.names is not None or dtype.kind not in "uif":
        raise DataError(f"{source} has dtype {dtype}; expected pixel values as uint8 (0-255) or float (0-1)")


def _scale(images: np.ndarray, source: str) -> np.ndarray:
    """Pixel values -> float32 in [0, 1]: integers 0..255 divided by 255, floats checked."""
    if images.dtype.kind in "ui":
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > MAX_PIXEL:
            raise DataError(f"{source} holds integer pixel values from {low} to {high}; integer images must be "
                            f"within 0..{MAX_PIXEL}")
        # Division (not multiplication by 1/255) is exactly rounded, so 255 -> 1.0 exactly.
        return np.ascontiguousarray(np.divide(images, np.float32(MAX_PIXEL), dtype=np.float32))
    finite = np.isfinite(images)
    if not finite.all():
        bad = int(np.argmin(finite.all(axis=1)))
        raise DataError(f"{source} contains NaN or infinite pixel values (first in image {bad})")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        hint = "; divide 0-255 data by 255 or save it as uint8" if high > 1 and low >= 0 else ""
        raise DataError(f"{source} holds float pixel values from {low:g} to {high:g}; float images must be "
                        f"within [0, 1]{hint}")
    return np.ascontiguousarray(images, dtype=np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


# ======================================================= many inputs, image files among them
@dataclass
class InputBatch:
    """The images read from one input file, in the model's input form.

    ``images`` is float32 (N, width). ``is_image`` is True for an image file (then N == 1 and
    ``images[0]`` is the preprocessed picture); False for a .npy array or an IDX file. ``error`` is the
    one-line reason a file could not be read (then N == 0), when the caller asked to go on past it.
    """

    path: Path
    images: np.ndarray
    is_image: bool
    error: str | None = None


def expand_inputs(paths, note=None) -> list[Path]:
    """The files named by ``paths``: files as given, directories replaced by the image files in them.

    A directory contributes its image files (recognised by content, not name) sorted by name; anything
    else in it (other files, subdirectories) is skipped, and ``note(message)`` is told. A directory
    without any image is an error (and then no notes), as is a path that does not exist.
    """
    files = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"no input file or directory at {path}")
        if not path.is_dir():
            check_regular(path, DataError)  # a FIFO would block the reading, a device never end it
            files.append(path)
            continue
        found, skipped = [], []
        try:
            entries = sorted(path.iterdir(), key=lambda p: p.name)
        except OSError as exc:
            raise DataError(f"cannot read the directory {path}: {exc.strerror or exc}") from None
        for entry in entries:
            if entry.is_file() and _is_image_file(entry):
                found.append(entry)
            else:
                what = "a directory" if entry.is_dir() else f"not a {IMAGE_KINDS} image"
                skipped.append(f"skipping {entry}: {what}")
        if not found:
            count = f"{len(skipped)} other entr{'y' if len(skipped) == 1 else 'ies'}"
            others = f" ({count})" if skipped else " (it is empty)"
            raise DataError(f"{path} holds no {IMAGE_KINDS} images{others}")
        for message in skipped if note is not None else ():
            note(message)
        files.extend(found)
    return files


def read_inputs(files, expected_width: int, ink: str = "auto", keep_going: bool = False,
                on_file=None, image_size: tuple[int, int] | None = None) -> list[InputBatch]:
    """Read every file (images preprocessed to the model's square input; arrays as :func:`read_images`).

    Everything is read before anything is returned. A file that cannot be read (unreadable, truncated,
    no ink, ...) stops the reading with its :class:`DataError`, or, with ``keep_going``, becomes a batch
    of no images carrying that error, so that one bad file in a folder costs only its own prediction.
    Image files need a model whose input is a square image, and Pillow (without either, the reading
    stops whatever ``keep_going`` says). ``ink`` (auto, dark or light) says which side of the paper the ink of image files is
    on; see :func:`bptrain.app.images.preprocess`. ``on_file()`` is called after each file (a progress bar).
    ``image_size`` (width, height): the model learned from a folder of images, read as they are; image files
    are then read the same way (resized to that size).
    """
    batches = []
    for path in map(Path, files):
        is_image = _is_image_file(path)
        if is_image and image_size is None:
            side = _square_side(expected_width, path)
        try:
            if is_image and image_size is not None:
                images = pixels_input(path, image_size).reshape(1, -1)
            elif is_image:
                images = image_to_input(path, str(path), side, ink=ink).reshape(1, -1)
            else:
                images = read_images(path, expected_width)
        except DataError as exc:
            if not keep_going:
                raise
            batches.append(InputBatch(path, np.empty((0, expected_width), np.float32), is_image, str(exc)))
        else:
            batches.append(InputBatch(path, images, is_image))
        if on_file is not None:
            on_file()
    return batches


def pixels_input(source, image_size: tuple[int, int], name: str | None = None) -> np.ndarray:
    """An image file (a path, or its bytes) as a model trained on a folder of images saw its data:
    luminance, at its size."""
    gray = load_grayscale(source, name or str(source))
    return pixels_at(gray, image_size)


def pixels_at(gray: np.ndarray, image_size) -> np.ndarray:
    """Luminance (H, W) at ``image_size`` (width, height): as it is, or resized."""
    size = tuple(image_size)
    return gray if (gray.shape[1], gray.shape[0]) == size else resized(gray, size)


def _is_image_file(path: Path) -> bool:
    try:
        with open_regular(path, DataError) as handle:
            return looks_like_image(handle.read(16))
    except (OSError, DataError):
        return False  # read_images then says why it cannot be read


def _square_side(width: int, path: Path) -> int:
    side = math.isqrt(width)
    if side * side != width:
        raise DataError(f"{path} is an image, but the model takes {width} inputs, not a square image "
                        f"(such as 784 = 28 x 28); give it arrays of {width} values instead")
    return side


def preprocessed_paths(batches_or_files, out_dir: Path) -> dict[Path, Path]:
    """Where ``--save-preprocessed`` writes each image file's picture: ``OUT_DIR/<name>.preprocessed.png``.

    Checked before any work: an existing file is never overwritten, and two inputs that would share a
    name (``a/7.png`` and ``b/7.png``, or ``7.png`` and ``7.jpg``) are refused rather than one silently
    replacing the other. Arrays (.npy, IDX) are not images from the outside world and get no picture.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--save-preprocessed {out_dir} is not a directory")
    targets: dict[Path, Path] = {}
    owners: dict[Path, Path] = {}
    for path in map(Path, batches_or_files):
        if not _is_image_file(path):
            continue
        target = out_dir / f"{path.stem}.preprocessed.png"
        if target in owners:
            raise DataError(f"{owners[target]} and {path} would both be saved as {target}; rename one or "
                            "predict them separately")
        if target.exists():
            raise DataError(f"{target} already exists; bptrain never overwrites it: remove it or choose another "
                            "--save-preprocessed directory")
        owners[target] = path
        targets[path] = target
    return targets
