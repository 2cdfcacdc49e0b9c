"""A folder of images with one subfolder per class (torchvision's ``ImageFolder`` layout).

``root/cat/1.png``, ``root/dog/7.png``, ...: the class names are the folder names, sorted. A root with
``train/`` and ``test/`` folders, each laid out so, has a test part. Every file in a class folder must be
an image (files and folders whose names start with a dot are skipped); each is read as luminance in
[0, 1] (1 = white) and flattened row by row. All images must have one size (the first image's), unless
``resize`` (width, height) says to bring every image to that size: another size is never silently
accepted. A class folder without images, an unreadable file, a folder name that is not printable text:
one line each.

``read_image(path) -> float32 (H, W)`` decodes one file: ``bptrain`` passes the decoder ``predict``
uses (:func:`bptrain.app.image_files.load_grayscale`), so the data and a predicted image are read alike;
:func:`pillow_luminance` is the plain one used otherwise. Pillow is the ``images`` extra.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.errors import BptrainError, DataError
from .npyfile import format_bytes
from .splits import RawSet

MISSING_PILLOW = "reading a folder of images needs Pillow: pip install 'bptrain[images]'"
SPLIT_FOLDERS = ("train", "test")


def is_image_folder(path: Path) -> bool:
    """A folder whose entries (other than hidden ones and a classes.txt) include a folder."""
    try:
        return any(entry.is_dir() for entry in _entries(path))
    except DataError:
        return False


def read_image_folder(root: Path, read_image=None, resize: tuple[int, int] | None = None,
                      max_bytes: int | None = None) -> RawSet:
    """The images under ``root`` as a :class:`RawSet` whose labels are the class folders' positions."""
    read_image = read_image or pillow_luminance
    folders = {entry.name: entry for entry in _entries(root) if entry.is_dir()}
    split = set(SPLIT_FOLDERS) <= folders.keys()
    train_root = folders["train"] if split else root
    names = sorted(entry.name for entry in _entries(train_root) if entry.is_dir())
    if not names:
        raise DataError(f"{train_root} holds no class folders; expected one folder of images per class")
    files = {"train": _class_files(train_root, names)}
    if split:
        test_names = sorted(entry.name for entry in _entries(folders["test"]) if entry.is_dir())
        unknown = [name for name in test_names if name not in names]
        if unknown:
            raise DataError(f"{folders['test'] / unknown[0]} is a class that {train_root} does not have")
        files["test"] = _class_files(folders["test"], test_names, allow_empty=True)
    size = resize or _size(read_image(files["train"][0][0]))
    count = sum(len(listed) for listed in files.values())
    if max_bytes is not None and count * size[0] * size[1] * 4 * 2 > max_bytes:
        raise DataError(f"{root}: {count:,} images of {size[0]}x{size[1]} pixels need about "
                        f"{format_bytes(count * size[0] * size[1] * 8)} to read; more than the "
                        f"{format_bytes(max_bytes)} of memory available")
    parts = {}
    for part, listed in files.items():
        x = np.empty((len(listed), size[0] * size[1]), np.float32)
        first = files["train"][0][0]
        for row, (path, _) in enumerate(listed):
            x[row] = _read_sized(path, read_image, size, resize is not None, first).ravel()
        labels = np.array([names.index(name) for _, name in listed], np.int64)
        parts[part] = (x, labels)
    return RawSet(parts["train"], None, parts.get("test"), class_names=names, interleave=True, image_size=size)


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted((entry for entry in folder.iterdir() if not entry.name.startswith(".")),
                      key=lambda entry: entry.name)
    except OSError as exc:
        raise DataError(f"cannot read the folder {folder}: {exc.strerror or exc}") from None


def _class_files(root: Path, names: list[str], allow_empty: bool = False) -> list[tuple[Path, str]]:
    """Every (file, class name) under ``root``'s class folders, class by class, files sorted by name."""
    listed = []
    for name in names:
        folder = root / name
        if not name.isprintable() or "\ufffd" in name:
            raise DataError(f"the class folder {os.fsencode(folder)!r} has a name that is not printable text; "
                            "rename it")
        inside = [entry for entry in _entries(folder) if entry.name != "classes.txt"]
        for entry in inside:
            if not entry.is_file():
                raise DataError(f"{entry} is not an image file; a class folder holds only images")
        if not inside and not allow_empty:
            raise DataError(f"the class {name!r} has no images ({folder} is empty); remove the folder or add images")
        listed += [(entry, name) for entry in inside]
    if not listed:
        raise DataError(f"{root} holds no images")
    return listed


def _size(image: np.ndarray) -> tuple[int, int]:
    return int(image.shape[1]), int(image.shape[0])


def _read_sized(path: Path, read_image, size: tuple[int, int], resize: bool, first: Path) -> np.ndarray:
    image = read_image(path)
    if _size(image) == size:
        return image
    if not resize:
        raise DataError(f"{path} is {image.shape[1]}x{image.shape[0]} pixels but {first} is {size[0]}x{size[1]}; "
                        f"give --resize {size[0]}x{size[1]} to resize every image to one size")
    return resized(image, size)


def require_pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImagesMissing(MISSING_PILLOW) from None
    return Image


class ImagesMissing(BptrainError):
    """Pillow is not installed."""


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Luminance resized to ``size`` (width, height) with Pillow's area-averaging filter."""
    Image = require_pillow()
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))  # mode "F"
    return np.clip(np.asarray(picture.resize(size, Image.Resampling.BOX if min(size) < min(image.shape)
                                             else Image.Resampling.BILINEAR), np.float32), 0, 1)


def pillow_luminance(path: Path) -> np.ndarray:
    """An image file as float32 (H, W) luminance in [0, 1], its EXIF orientation applied."""
    Image = require_pillow()
    from PIL import ImageOps
    try:
        with Image.open(path) as picture:
            picture = ImageOps.exif_transpose(picture).convert("L")
            return np.asarray(picture, np.float32) / np.float32(255)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path} is not a readable image ({str(exc).splitlines()[0] if str(exc) else exc})") \
            from None
