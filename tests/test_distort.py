"""Elastic and affine distortions: the math checked on known cases, and digits kept recognisable.

- the Gaussian kernel and smoothing matrix sum to 1; identity parameters leave images alone exactly;
- bilinear sampling of an integer displacement equals a shift with zeros coming in (np.roll + zeroing);
- shapes, dtype and the [0, 1] range are kept; the same generator state gives the same images;
- ink moves but stays inside the image (a centred digit's border stays empty), and its amount is kept;
- on the real MNIST (skipped without it): a model trained on plain digits still reads distorted ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from bptrain.data.distort import BLOCK, Distorter, Distortion, gaussian_kernel, smoothing_matrix
from bptrain.core.errors import BptrainError

ELASTIC = Distortion(elastic_alpha=34.0, elastic_sigma=4.0)  # the paper's MNIST values
AFFINE = Distortion(rotate=10.0, scale=0.1, shear=0.2, shift=1.0)
BOTH = Distortion(elastic_alpha=34.0, rotate=10.0, scale=0.1, shear=0.2, shift=1.0)
KINDS = {"elastic": ELASTIC, "affine": AFFINE, "both": BOTH}


def centred_digits(n: int, seed: int = 0, side: int = 28, margin: int = 8) -> np.ndarray:
    """Digit-like images: random strokes (blurred dots) inside a centred box, nothing within ``margin`` px of the edge."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, side, side), np.float32)
    inner = side - 2 * margin
    for image in images:
        strokes = np.zeros((inner, inner), np.float32)
        strokes[rng.integers(1, inner - 1, 12), rng.integers(1, inner - 1, 12)] = 1
        blurred = strokes.copy()
        for axis in (0, 1):
            blurred[1:-1] = np.maximum(blurred[1:-1], 0.6 * (np.roll(blurred, 1, axis) + np.roll(blurred, -1, axis))[1:-1])
        image[margin:side - margin, margin:side - margin] = np.clip(blurred, 0, 1)
    return images.reshape(n, side * side)


def shifted_with_zeros(images: np.ndarray, dy: int, dx: int, side: int) -> np.ndarray:
    """out[i, j] = in[i + dy, j + dx], 0 where that is outside: np.roll, then the wrapped rows/columns zeroed."""
    if abs(dy) >= side or abs(dx) >= side:
        return np.zeros_like(images)
    squares = np.roll(images.reshape(-1, side, side), (-dy, -dx), axis=(1, 2)).copy()
    if dy > 0:
        squares[:, side - dy:, :] = 0
    elif dy < 0:
        squares[:, :-dy, :] = 0
    if dx > 0:
        squares[:, :, side - dx:] = 0
    elif dx < 0:
        squares[:, :, :-dx] = 0
    return squares.reshape(len(images), -1)


# ====================================================================== the pieces
@pytest.mark.parametrize("sigma", [0.5, 1.0, 4.0, 9.0])
def test_gaussian_kernel_sums_to_one_and_is_a_symmetric_bell(sigma):
    g = gaussian_kernel(sigma)
    assert g.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(g, g[::-1])
    assert np.argmax(g) == len(g) // 2 and np.all(np.diff(g[: len(g) // 2 + 1]) > 0)
    k = np.arange(len(g)) - len(g) // 2
    if sigma >= 1:  # sampled at whole pixels, a narrower bell is narrower than σ
        assert np.sqrt(np.sum(g * k ** 2)) == pytest.approx(sigma, rel=0.05)  # its spread is σ


@pytest.mark.parametrize("side,sigma", [(28, 4.0), (7, 4.0), (28, 0.5)])
def test_smoothing_matrix_rows_sum_to_at_most_one_and_to_one_where_the_kernel_fits(side, sigma):
    g, radius = smoothing_matrix(side, sigma), len(gaussian_kernel(sigma)) // 2
    sums = g.sum(axis=1)
    assert np.all(sums <= 1 + 1e-12) and np.all(g >= 0)
    np.testing.assert_allclose(sums[radius:side - radius], 1.0, atol=1e-12)
    np.testing.assert_allclose(g, g.T)  # zero outside: the same weights both ways
    assert sums[side // 2] >= sums[0]  # weaker at the edge


def test_smoothing_matrix_is_the_convolution_away_from_the_edges():
    side, sigma = 60, 2.0
    g, kernel = smoothing_matrix(side, sigma), gaussian_kernel(sigma)
    radius = len(kernel) // 2
    i = side // 2
    np.testing.assert_allclose(g[i, i - radius:i + radius + 1], kernel)
    assert g[i].sum() - g[i, i - radius:i + radius + 1].sum() == pytest.approx(0.0, abs=1e-15)


# ====================================================================== identity and exact cases
def test_identity_parameters_leave_images_unchanged():
    images = centred_digits(50)
    for identity in (Distortion(), Distortion(elastic_alpha=0.0, elastic_sigma=7.0)):
        copy = images.copy()
        Distorter(784, identity)(copy, np.random.default_rng(0))
        np.testing.assert_array_equal(copy, images)


@pytest.mark.parametrize("n", [1, 9, BLOCK + 3])
def test_zero_displacement_through_the_sampler_is_exact(n):
    images = np.random.default_rng(1).random((n, 784), dtype=np.float32)
    copy = images.copy()
    zero = np.zeros((n, 28, 28), np.float32)
    Distorter(784, ELASTIC).displace(copy, zero, zero)
    np.testing.assert_array_equal(copy, images)


@pytest.mark.parametrize("dy,dx", [(0, 1), (2, -3), (-1, 0), (5, 5), (-27, 0), (0, 30)])
def test_integer_displacement_is_a_shift_with_zeros_coming_in(dy, dx):
    images = np.random.default_rng(2).random((20, 784), dtype=np.float32)
    moved = images.copy()
    Distorter(784, ELASTIC).displace(moved, np.full((20, 28, 28), dx, np.float32),
                                     np.full((20, 28, 28), dy, np.float32))
    np.testing.assert_array_equal(moved, shifted_with_zeros(images, dy, dx, 28))


def test_half_pixel_displacement_averages_neighbours():
    images = np.random.default_rng(3).random((4, 49), dtype=np.float32)
    moved = images.copy()
    Distorter(49, ELASTIC).displace(moved, np.full((4, 7, 7), 0.5, np.float32), np.zeros((4, 7, 7), np.float32))
    expected = 0.5 * (images + shifted_with_zeros(images, 0, 1, 7))
    np.testing.assert_allclose(moved, expected, atol=1e-6)


# ====================================================================== random distortions
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 7, BLOCK, 2 * BLOCK + 5])
def test_shape_dtype_and_range_are_kept(kind, n):
    images = np.random.default_rng(4).random((n, 784), dtype=np.float32)
    Distorter(784, KINDS[kind])(images, np.random.default_rng(0))
    assert images.shape == (n, 784) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_same_generator_state_same_images_and_another_seed_differs(kind):
    images = centred_digits(300)
    a, b, c = images.copy(), images.copy(), images.copy()
    Distorter(784, KINDS[kind])(a, np.random.default_rng(11))
    Distorter(784, KINDS[kind])(b, np.random.default_rng(11))
    Distorter(784, KINDS[kind])(c, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", KINDS)
def test_ink_moves_but_stays_inside_and_keeps_its_amount(kind):
    images = centred_digits(400)
    distorted = images.copy()
    Distorter(784, KINDS[kind])(distorted, np.random.default_rng(5))
    squares = distorted.reshape(-1, 28, 28)
    # every image changed, by a visible amount
    assert np.all(np.abs(distorted - images).max(axis=1) > 0.2)
    # the centred strokes (margin 8) do not reach the 2-pixel border
    border = np.ones((28, 28), bool)
    border[2:-2, 2:-2] = False
    assert squares[:, border].max() == 0.0
    # ink is moved, not created or lost: over all within 5%; per image it stretches and shrinks
    # locally (sparse strokes: within 0.35..2.5, 3 in 4 of them within 0.7..1.4)
    ratio = distorted.sum(axis=1) / images.sum(axis=1)
    assert np.all((ratio > 0.35) & (ratio < 2.5)), (ratio.min(), ratio.max())
    assert np.mean((ratio > 0.7) & (ratio < 1.4)) > 0.75
    assert distorted.sum() / images.sum() == pytest.approx(1.0, abs=0.05)


def test_elastic_field_has_the_expected_strength_and_is_smooth():
    """α = 34, σ = 4: in the middle the displacement is α · √(1/3) · ‖g ⊗ g‖ ≈ 1.4 px rms, and neighbours move together."""
    distorter = Distorter(784, ELASTIC)
    dx, dy = distorter._elastic_field(BLOCK, np.random.default_rng(0))
    g = gaussian_kernel(4.0)
    expected_rms = 34.0 * np.sqrt(1 / 3) * np.sum(g ** 2)  # ‖g⊗g‖₂ = Σg² for a separable kernel
    for field in (dx, dy):
        field = np.asarray(field).reshape(BLOCK, 28, 28)[:, 11:17, 11:17]  # where the kernel is (nearly) whole
        assert np.sqrt(np.mean(field ** 2)) == pytest.approx(expected_rms, rel=0.2)
        neighbour_step = np.abs(np.diff(field, axis=2)).mean()
        assert neighbour_step < 0.2 * np.abs(field).mean()


def test_rotation_alone_keeps_the_centre_of_mass():
    images = centred_digits(200, margin=6)
    rotated = images.copy()
    Distorter(784, Distortion(rotate=30.0))(rotated, np.random.default_rng(6))
    centre = (27 / 2)

    def centre_of_mass(batch):
        squares = batch.reshape(-1, 28, 28)
        total = squares.sum(axis=(1, 2))
        grid = np.arange(28)
        return (squares.sum(axis=2) @ grid) / total, (squares.sum(axis=1) @ grid) / total

    before_y, before_x = centre_of_mass(images)
    after_y, after_x = centre_of_mass(rotated)
    # the centre of mass rotates about the image centre: its distance from the centre is kept
    np.testing.assert_allclose(np.hypot(after_y - centre, after_x - centre),
                               np.hypot(before_y - centre, before_x - centre), atol=0.35)
    assert not np.allclose(after_x, before_x, atol=0.05)


@pytest.mark.parametrize("kwargs,phrase", [({"elastic_alpha": -1.0}, "elastic_alpha"),
                                           ({"elastic_sigma": 0.0}, "sigma"),
                                           ({"scale": 1.0}, "scale"),
                                           ({"rotate": float("nan")}, "rotate")])
def test_bad_ranges_are_refused_with_one_line(kwargs, phrase):
    with pytest.raises(BptrainError, match=phrase):
        Distortion(**kwargs)


def test_non_square_images_are_refused():
    with pytest.raises(BptrainError, match="square"):
        Distorter(20, ELASTIC)


# ====================================================================== on the real digits
def test_a_model_trained_on_plain_digits_still_reads_distorted_ones(real_mnist_path):
    """A small model that never saw a distortion (784-100-10, 3 epochs on 20,000 digits, ~93% on plain
    test digits) still reads most distorted ones: > 85% of 1,000 with affine distortions, > 70% with the
    paper's strong elastic ones (α = 34, σ = 4; chance is 10%). Models trained on elastic digits read them
    far better (docs/distortions.md); training one that long does not fit in a unit test."""
    from bptrain.fast import blas
    from bptrain.data.loader import load_dataset
    from bptrain.core.network import MLP
    from bptrain import TrainSettings, train

    data = load_dataset(real_mnist_path)
    small = data._replace(train=data.train._replace(x=data.train.x[:20000], y=data.train.y[:20000]),
                          validation=data.validation._replace(x=data.validation.x[:2000],
                                                              y=data.validation.y[:2000]))
    model = MLP((784, 100, 10), "ce", seed=0)
    with blas.threads_at_most(1):
        train(model, small, TrainSettings(epochs=3, batch_size=64, augment=1), progress=False)
    x, y = data.test.x[:1000], data.test.y[:1000]
    plain = np.mean(model.predict(x) == y)
    assert plain > 0.9
    for distortion, threshold in ((AFFINE, 0.85), (ELASTIC, 0.70)):
        distorted = x.copy()
        Distorter(784, distortion)(distorted, np.random.default_rng(0))
        assert not np.array_equal(distorted, x)
        accuracy = np.mean(model.predict(distorted) == y)
        assert accuracy > threshold, (distortion, accuracy, plain)


@pytest.mark.parametrize("images", [np.zeros((4, 784), np.float64), np.zeros((4, 1568), np.float32)[:, ::2]],
                         ids=["float64", "strided"])
def test_images_it_cannot_distort_in_place_are_refused(images):
    with pytest.raises(BptrainError, match="C-contiguous float32"):
        Distorter(784, ELASTIC)(images, np.random.default_rng(0))
