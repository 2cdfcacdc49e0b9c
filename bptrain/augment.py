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

from .errors import BptrainError


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
    side = image_side(images.shape[1])
    squares = images.reshape(len(images), side, side)
    choices = 2 * max_shift + 1
    for code in range(choices * choices):
        dy, dx = divmod(code, choices)
        dy, dx = dy - max_shift, dx - max_shift
        if dy == 0 and dx == 0:
            continue
        rows = np.flatnonzero(codes == code)
        if len(rows) == 0:
            continue
        block = squares[rows]
        shifted = np.zeros_like(block)
        shifted[:, _dest(dy, side), _dest(dx, side)] = block[:, _source(dy, side), _source(dx, side)]
        squares[rows] = shifted


def _dest(shift: int, side: int) -> slice:
    return slice(max(shift, 0), side + min(shift, 0))


def _source(shift: int, side: int) -> slice:
    return slice(max(-shift, 0), side - max(shift, 0))
