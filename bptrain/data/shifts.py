"""Random small translations of the training images, drawn anew every epoch.

A digit moved by a pixel is still the same digit, but to a fully connected
network every pixel is a separate input: it cannot know that from the fixed
training set. Showing it shifted copies teaches it, and is the cheapest way
past the accuracy ceiling of a small MLP on MNIST (the validation and test
images are never shifted).
"""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import BptrainError


def is_square_image(n_features: int) -> bool:
    """Whether ``n_features`` pixels can be a square image (784 = 28 x 28)."""
    return math.isqrt(n_features) ** 2 == n_features


def image_side(n_features: int) -> int:
    """The side of a square image with ``n_features`` pixels, or an error if it is not square."""
    if not is_square_image(n_features):
        raise BptrainError(f"--augment shifts square images, but the inputs have {n_features} features "
                           "(not a perfect square)")
    return math.isqrt(n_features)


def shift_images(images: np.ndarray, rng: np.random.Generator, max_shift: int) -> None:
    """Move each row of ``images`` (N, side²), in place, by its own random (dy, dx) in [-max_shift, max_shift]².

    Pixels shifted in from outside the image are 0 (background). Work is
    grouped by shift, so it is a few whole-array copies, not a loop over images.
    """
    if max_shift <= 0:
        return
    image_side(images.shape[1])
    apply_shifts(images, draw_shifts(rng, len(images), max_shift), max_shift)


def draw_shifts(rng: np.random.Generator, n_images: int, max_shift: int) -> np.ndarray:
    """One random shift per image, coded as (dy + max_shift) · (2·max_shift + 1) + (dx + max_shift)."""
    choices = 2 * max_shift + 1
    return rng.integers(0, choices * choices, size=n_images)


def apply_shifts(images: np.ndarray, codes: np.ndarray, max_shift: int) -> None:
    """Shift each row of ``images`` in place by its coded shift (see :func:`draw_shifts`)."""
    if max_shift <= 0:
        return
    gather_shifted(images, np.arange(len(images)), codes, max_shift, images)


def gather_shifted(images: np.ndarray, order: np.ndarray, codes: np.ndarray, max_shift: int, out: np.ndarray,
                   scratch: np.ndarray | None = None) -> None:
    """``out[i]`` = ``images[order[i]]`` moved by shift ``codes[i]``: a shuffle and the shifts in one go.

    Work is grouped by shift: each group's images are gathered into ``scratch``
    (rows enough for the largest group; made here if not given), then written
    to their rows of ``out`` moved by one flat offset (see :func:`_write_shifted`).
    Two passes over the images, where a gather followed by shifting in place takes five.
    ``out`` may be ``images`` itself only when ``order`` is the identity.
    """
    side = image_side(images.shape[1])
    choices = 2 * max_shift + 1
    groups = [np.flatnonzero(codes == code) for code in range(choices * choices)]
    if scratch is None:
        scratch = np.empty((max(len(rows) for rows in groups), images.shape[1]), images.dtype)
    for code, rows in enumerate(groups):
        if len(rows) == 0:
            continue
        dy, dx = divmod(code, choices)
        group = scratch[:len(rows)]
        np.take(images, order[rows], axis=0, out=group, mode="clip")  # "clip": no hidden copy (see epochs.py)
        _write_shifted(out, rows, group, dy - max_shift, dx - max_shift, side)


def _write_shifted(out: np.ndarray, rows: np.ndarray, group: np.ndarray, dy: int, dx: int, side: int) -> None:
    """``out[rows]`` = ``group`` moved down ``dy`` and right ``dx`` pixels, background 0 shifted in.

    In a flattened image the move is one offset, out[p] = in[p − (dy·side + dx)]:
    a pixel whose source row is off the image reads outside the flat range and
    is zeroed with it; one whose source column is off the image reads the
    neighbouring row's edge instead, so those |dx| columns are zeroed after.
    """
    offset = dy * side + dx
    if offset > 0:
        out[rows, offset:] = group[:, :-offset]
        out[rows, :offset] = 0
    elif offset < 0:
        out[rows, :offset] = group[:, -offset:]
        out[rows, offset:] = 0
    else:
        out[rows] = group
    if dx:
        columns = slice(0, dx) if dx > 0 else slice(side + dx, side)
        out.reshape(len(out), side, side)[rows, :, columns] = 0
