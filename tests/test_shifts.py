"""Random shifts of training images: each image moves as a whole, by at most max_shift, zeros fill in."""

from __future__ import annotations

import numpy as np
import pytest

from bptrain.data.shifts import apply_shifts, draw_shifts, gather_shifted, image_side, shift_images
from bptrain.core.errors import BptrainError


def find_shift(original: np.ndarray, shifted: np.ndarray, max_shift: int):
    """The (dy, dx) that turns ``original`` into ``shifted``, or None."""
    side = original.shape[0]
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            expected = np.zeros_like(original)
            expected[max(dy, 0):side + min(dy, 0), max(dx, 0):side + min(dx, 0)] = \
                original[max(-dy, 0):side - max(dy, 0), max(-dx, 0):side - max(dx, 0)]
            if np.array_equal(expected, shifted):
                return dy, dx
    return None


@pytest.mark.parametrize("max_shift", [1, 2])
def test_every_image_is_a_shifted_copy_and_all_shifts_occur(max_shift):
    rng = np.random.default_rng(0)
    images = rng.random((300, 49), dtype=np.float32) + 0.5  # no zeros, so each shift is recognisable
    shifted = images.copy()
    shift_images(shifted, np.random.default_rng(1), max_shift)
    seen = set()
    for before, after in zip(images, shifted):
        shift = find_shift(before.reshape(7, 7), after.reshape(7, 7), max_shift)
        assert shift is not None
        seen.add(shift)
    assert len(seen) == (2 * max_shift + 1) ** 2


def test_zero_shift_leaves_images_alone():
    images = np.random.default_rng(0).random((10, 16), dtype=np.float32)
    copy = images.copy()
    shift_images(copy, np.random.default_rng(0), 0)
    np.testing.assert_array_equal(copy, images)


def test_same_seed_same_shifts():
    images = np.random.default_rng(0).random((50, 16), dtype=np.float32)
    a, b = images.copy(), images.copy()
    shift_images(a, np.random.default_rng(7), 1)
    shift_images(b, np.random.default_rng(7), 1)
    np.testing.assert_array_equal(a, b)


def test_non_square_images_are_refused():
    assert image_side(784) == 28
    with pytest.raises(BptrainError, match="not a perfect square"):
        image_side(20)


def shifted_by_hand(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Pixel by pixel: out(r, c) = in(r − dy, c − dx), 0 where that is off the image."""
    side = image.shape[0]
    out = np.zeros_like(image)
    for r in range(side):
        for c in range(side):
            if 0 <= r - dy < side and 0 <= c - dx < side:
                out[r, c] = image[r - dy, c - dx]
    return out


@pytest.mark.parametrize("side,max_shift", [(5, 1), (7, 2), (6, 3), (28, 1)])
def test_shuffle_and_shifts_in_one_gather_match_the_pixelwise_definition(side, max_shift):
    """The flat-offset shifts (augment._write_shifted) against the definition, pixel by pixel,
    for every shift: zeros come in at the edges, nothing wraps into the next row."""
    rng = np.random.default_rng(side)
    images = rng.random((200, side * side), dtype=np.float32) + 0.5
    codes = draw_shifts(rng, 200, max_shift)
    order = rng.permutation(200)
    out = np.full_like(images, np.nan)
    gather_shifted(images, order, codes, max_shift, out)
    choices = 2 * max_shift + 1
    assert len(np.unique(codes)) == choices * choices
    for i in range(200):
        dy, dx = divmod(int(codes[i]), choices)
        expected = shifted_by_hand(images[order[i]].reshape(side, side), dy - max_shift, dx - max_shift)
        np.testing.assert_array_equal(out[i].reshape(side, side), expected)
    in_place = images[order].copy()
    apply_shifts(in_place, codes, max_shift)  # the same shifts without the shuffle, in place
    np.testing.assert_array_equal(in_place, out)
