"""A user's own digit (a photo, a scan, a drawing) -> the input an MNIST network expects.

MNIST digits are not raw scans: "the original black and white (bilevel) images from NIST were size
normalized to fit in a 20x20 pixel box while preserving their aspect ratio. The resulting images contain
grey levels as a result of the anti-aliasing technique used by the normalization algorithm. the images
were centered in a 28x28 image by computing the center of mass of the pixels, and translating the image
so as to position this point at the center of the 28x28 field" (the MNIST page, LeCun, Cortes, Burges).
A network trained on them expects white ink on black, about 20 px tall, centred by mass. This module
does the same to any image, in small steps:

    load_grayscale   file or bytes -> float32 (H, W) luminance in [0, 1], 1 = white (:mod:`.image_files`)
    preprocess       luminance -> float32 (side, side) white ink on black, MNIST-style (NumPy only)
    image_to_input   both, flattened: THE one implementation used by `bptrain predict` and `bptrain serve`

Every problem is one line of :class:`~bptrain.core.errors.DataError`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from .image_files import grayscale, load_grayscale  # noqa: F401 - load_grayscale: part of this module's API

#: The paper's level is fitted on a copy shrunk to at most this many pixels on its longer side, in at
#: most this many rounds (see paper_surface).
FIT_SIDE = 64
MAX_FIT_ROUNDS = 10
#: Rounds of reweighting for the picture's level (see picture_level), and the smallest residual a
#: weight is divided by (so a pixel exactly on the plane does not get an infinite weight).
PLANE_ROUNDS = 20
PLANE_EPSILON = 1e-3
#: Weight of a pixel on the ink's side of the paper's envelope (see fit_paper); the paper's side has the rest.
ENVELOPE_ASYMMETRY = 0.01
#: Which side of the paper the ink is on: found from the picture, or said by the user.
INK_CHOICES = ("auto", "dark", "light")
#: MNIST's digit box is 20 px in a 28 px field; other sides keep the proportion.
BOX_FRACTION = 20 / 28
#: Border ring, weighed as much as the rest of the picture when finding the paper: this fraction of the
#: shorter side (at least one pixel).
BORDER_FRACTION = 0.04
#: Ink fainter than this fraction of the strongest ink is treated as paper tone or noise.
FAINT_FRACTION = 0.2
#: A darkest-to-paper (or lightest-to-paper) difference below this is no ink at all (26 of 255 levels).
MIN_CONTRAST = 0.1
#: Ink separated from the digit by a gap of more than this fraction of the digit's extent (in rows or
#: columns) is not part of it: a speck of dust or a JPEG artefact far away does not enlarge the box.
GAP_FRACTION = 0.25


# ====================================================================== loading
# ================================================================= preprocessing
def preprocess(gray: np.ndarray, side: int = 28, name: str = "the image", ink: str = "auto") -> np.ndarray:
    """Luminance (H, W) in [0, 1] (1 = white) -> float32 (side, side) white ink on black, as MNIST was made.

    Find the paper's level (under uneven light too) and the ink's polarity (the side that stands out
    from the paper); turn the picture into ink intensity; drop paper tone and faint noise; crop to the
    ink's bounding box; scale its longer side to ``round(side * 20 / 28)`` preserving the aspect ratio,
    with anti-aliasing; place it in the field so that its centre of mass is at the centre. ``name`` is
    used in the error for an image without ink. ``ink`` is ``"auto"`` (the picture says which side the
    ink is on), ``"dark"`` or ``"light"`` (the user says, for a picture that is mostly ink).
    """
    if ink not in INK_CHOICES:
        raise ValueError(f"ink must be one of {', '.join(INK_CHOICES)}, not {ink!r}")
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise DataError(f"{name} is not a 2-D grey image (shape {gray.shape})")
    if not np.isfinite(gray).all():
        raise DataError(f"{name} contains NaN or infinite values")
    dark_ink = ink_is_dark(gray) if ink == "auto" else ink == "dark"
    paper = paper_surface(gray, dark_ink)
    noise = paper_noise(gray, paper, dark_ink)
    ink = ink_intensity(gray, paper, dark_ink)
    ink = remove_faint(ink, noise)
    if ink is None:
        raise DataError(f"no ink found in {name} (it is all one colour, or the marks are too faint)")
    ink = crop_to_ink(ink)
    box = max(1, round(side * BOX_FRACTION))
    scaled = scale_into_box(ink, box)
    field = place_by_centre_of_mass(scaled, side)
    return np.clip(field, 0, 1, out=field)


def border_pixels(gray: np.ndarray) -> np.ndarray:
    """The pixels of a ring around the edge: where a photo of a digit shows the paper it is written on."""
    height, width = gray.shape
    ring = max(1, round(BORDER_FRACTION * min(height, width)))
    if 2 * ring >= min(height, width):
        return gray.ravel()
    return np.concatenate([gray[:ring].ravel(), gray[-ring:].ravel(),
                           gray[ring:-ring, :ring].ravel(), gray[ring:-ring, -ring:].ravel()])


def _coordinates(n: int) -> np.ndarray:
    """Pixel centres 0..n-1 mapped onto [-1, 1] (so the surface's six numbers stay well scaled)."""
    return (np.arange(n) + 0.5) / n * 2 - 1


def shrink(gray: np.ndarray, longest: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block means with the longer side at most ``longest``, and the blocks' centres as coordinates.

    For fitting the paper: fast (no matrix product, so no BLAS threads for a small job) and with the
    noise averaged away. Returns the means and the y and x coordinates (see :func:`_coordinates`) of
    each block's centre; the last block of a row or column may be narrower.
    """
    height, width = gray.shape
    factor = math.ceil(max(height, width) / longest)
    starts_y, starts_x = np.arange(0, height, factor), np.arange(0, width, factor)
    sums = np.add.reduceat(np.add.reduceat(gray, starts_y, axis=0, dtype=np.float64), starts_x, axis=1)
    sizes_y, sizes_x = np.diff(np.append(starts_y, height)), np.diff(np.append(starts_x, width))
    means = sums / np.outer(sizes_y, sizes_x)
    centre_y = (starts_y + (sizes_y - 1) / 2 + 0.5) / height * 2 - 1
    centre_x = (starts_x + (sizes_x - 1) / 2 + 0.5) / width * 2 - 1
    return means, centre_y, centre_x


def _surface(coefficients, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The quadratic c0 + c1 x + c2 y + c3 x² + c4 xy + c5 y² on the grid of coordinates y by x."""
    y, x = y[:, None], x[None, :]
    c = coefficients
    return np.broadcast_to(c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * x * y + c[5] * y * y,
                           (y.shape[0], x.shape[1]))


def _border_mask(height: int, width: int) -> np.ndarray:
    """True on a ring around the edge, ``BORDER_FRACTION`` of the shorter side wide (at least one pixel)."""
    ring = max(1, round(BORDER_FRACTION * min(height, width)))
    mask = np.zeros((height, width), dtype=bool)
    mask[:ring], mask[-ring:], mask[:, :ring], mask[:, -ring:] = True, True, True, True
    return mask


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def picture_level(small: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each pixel's difference from what most of the picture shows: a plane through its middle level.

    The plane is fitted by least absolute deviations (a median that can follow a tilt of the light;
    iteratively reweighted least squares from the weighted median), so it lies on the paper whenever
    the paper covers more of the picture than the ink, wherever the ink is, edges included; and nearer
    the paper than the ink when blur makes most pixels grey. The border ring weighs as much as all the
    rest: a bold digit that fills most of a picture with a margin of paper around it still has its
    paper found. A plane, not a curved surface: it cannot bend into the strokes.
    """
    height, width = small.shape
    values = small.ravel()
    border = _border_mask(height, width).ravel()
    weights = np.where(border, max(1, int((~border).sum())) / border.sum(), 1.0)
    yy, xx = (grid.ravel() for grid in np.meshgrid(y, x, indexing="ij"))
    terms = np.stack([np.ones_like(xx), xx, yy], axis=1)
    plane = np.full_like(values, _weighted_median(values, weights))
    for _ in range(PLANE_ROUNDS):
        root = np.sqrt(weights / np.maximum(np.abs(values - plane), PLANE_EPSILON))
        previous, plane = plane, terms @ np.linalg.lstsq(terms * root[:, None], values * root, rcond=None)[0]
        if np.max(np.abs(plane - previous)) < PLANE_EPSILON / 10:
            break
    return (values - plane).reshape(height, width)


def ink_is_dark(gray: np.ndarray) -> bool:
    """Whether the ink is darker than the paper, decided from the whole picture.

    The paper is what most of the picture shows (see :func:`picture_level`); the ink is what stands
    out from it: darker (below) or lighter (above), whichever carries more (the sum of the differences
    beyond half of ``MIN_CONTRAST``; the paper's own noise adds about as much to both sides). Neither
    the border nor the paper's brightness is taken on trust: a tight crop has ink on its edges, and
    white paper may come out mid-grey. A bold digit cropped so tightly that it covers most of the
    picture and its border looks like light paper with dark gaps; only the user can say
    (``ink="dark"`` or ``"light"``).
    """
    residual = picture_level(*shrink(gray, FIT_SIDE))
    below = float(np.maximum(-residual - MIN_CONTRAST / 2, 0).sum())
    above = float(np.maximum(residual - MIN_CONTRAST / 2, 0).sum())
    return below >= above


def fit_paper(small: np.ndarray, y: np.ndarray, x: np.ndarray, dark_ink: bool) -> np.ndarray:
    """The six coefficients of the quadratic paper surface of a shrunken image; see :func:`paper_surface`.

    First the paper's envelope: asymmetric least squares, where a pixel on the ink's side of the
    surface weighs ``ENVELOPE_ASYMMETRY`` and one on the paper's side the rest, again until those sides
    stop changing. That surface rests on the paper's side of the picture however much of it is ink,
    and whether or not the ink reaches the edges; it cannot be pulled into the strokes. Then least
    squares on the pixels not clearly on the ink's side of it (more than 3 standard deviations of the
    paper, or half of ``MIN_CONTRAST``), again until that set stops changing: the paper's own level,
    noise centred. The paper's spread is taken from the pixels on its side of the fit, where no ink is.
    """
    height, width = small.shape
    values = small.ravel()
    yy, xx = (grid.ravel() for grid in np.meshgrid(y, x, indexing="ij"))
    terms = np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], axis=1)
    if height * width < 4 * terms.shape[1]:  # too small to fit a surface: the paper is one level
        level = np.max(values) if dark_ink else np.min(values)
        return np.array([level] + [0.0] * (terms.shape[1] - 1))
    towards_paper = 1.0 if dark_ink else -1.0
    plane, weights = terms[:, :3], np.ones_like(values)
    for _ in range(MAX_FIT_ROUNDS * 3):
        root = np.sqrt(weights)
        coefficients = np.linalg.lstsq(plane * root[:, None], values * root, rcond=None)[0]
        residual = towards_paper * (values - plane @ coefficients)
        now = np.where(residual >= 0, 1 - ENVELOPE_ASYMMETRY, ENVELOPE_ASYMMETRY)
        if np.array_equal(now, weights):
            break
        weights = now
    coefficients = np.concatenate([coefficients, np.zeros(terms.shape[1] - plane.shape[1])])
    paper = residual > -MIN_CONTRAST / 2
    for _ in range(MAX_FIT_ROUNDS):
        if paper.sum() < terms.shape[1]:
            break
        coefficients = np.linalg.lstsq(terms[paper], values[paper], rcond=None)[0]
        residual = towards_paper * (values - terms @ coefficients)
        paper_side = residual[paper & (residual >= 0)]
        spread = 1.4826 * float(np.median(paper_side)) if paper_side.size else 0.0
        now_paper = residual > -max(3 * spread, MIN_CONTRAST / 2)
        if np.array_equal(now_paper, paper):
            break
        paper = now_paper
    return coefficients


def paper_surface(gray: np.ndarray, dark_ink: bool) -> np.ndarray:
    """The paper's level at every pixel: a smooth quadratic surface, so uneven light is not ink.

    A phone photo is brighter on one side, darker in the corners. A quadratic in x and y (six numbers)
    follows such light but cannot follow a pen stroke. It is fitted (:func:`fit_paper`) on block means
    of the image at most ``FIT_SIDE`` blocks across: fast, and with the noise averaged away.
    """
    coefficients = fit_paper(*shrink(gray, FIT_SIDE), dark_ink)
    height, width = gray.shape
    return _surface(coefficients, _coordinates(height), _coordinates(width)).astype(np.float32)


def paper_noise(gray: np.ndarray, paper: np.ndarray, dark_ink: bool) -> float:
    """How much the paper varies by itself (texture, sensor and JPEG noise) around its fitted level.

    Three robust standard deviations of the pixels' difference from the paper surface, taken from the
    pixels on the paper's side of it (brighter than the surface behind dark ink): no ink is there,
    wherever the strokes run, so it holds for a picture whose edges are ink too. The median of that
    half-normal difference is 0.6745 standard deviations, as the median absolute deviation is.
    """
    difference = (gray - paper) if dark_ink else (paper - gray)
    paper_side = difference[difference >= 0]
    return 3 * 1.4826 * float(np.median(paper_side)) if paper_side.size else 0.0


def ink_intensity(gray: np.ndarray, paper: np.ndarray, dark_ink: bool) -> np.ndarray:
    """How far each pixel is from the paper, in the ink's direction: white ink on black, like MNIST.

    Values on the paper's other side (a shadow on dark paper, a reflection on white) are not ink.
    """
    ink = paper - gray if dark_ink else gray - paper
    return np.maximum(ink, 0, out=ink)


def remove_faint(ink: np.ndarray, noise: float) -> np.ndarray | None:
    """Drop paper tone and faint noise, and scale the strokes to full intensity; ``None`` if no ink.

    Ink below a threshold (``FAINT_FRACTION`` of the strongest ink, and at least twice the paper's own
    variation, i.e. six standard deviations of its noise, which random noise practically never reaches)
    becomes 0; the rest keeps its grey level, divided by the strongest ink so that the strokes reach 1
    as MNIST's do (a pencil digit then looks like a pen digit). The strongest ink is the 99.9th
    percentile of the candidate ink pixels, so a few hot pixels do not set the scale.
    """
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST or strongest <= 2 * noise:
        return None
    candidates = ink[ink > max(2 * noise, FAINT_FRACTION * strongest)]
    peak = float(np.percentile(candidates, 99.9))
    threshold = max(2 * noise, FAINT_FRACTION * peak)
    ink[ink <= threshold] = 0
    ink /= peak
    return np.minimum(ink, 1, out=ink)


def ink_bounds(profile: np.ndarray) -> tuple[int, int]:
    """First and one-past-last index of the digit in a 1-D ink profile (ink summed over rows or columns).

    The digit is the heaviest run of consecutive inked positions, joined with neighbouring runs that
    lie closer than ``GAP_FRACTION`` of its span (a stroke the pen lifted from). Ink further away (a
    speck of dust, a smudge near the edge of a photo) does not stretch the bounding box.
    """
    inked = profile > 0
    edges = np.flatnonzero(np.diff(np.concatenate([[False], inked, [False]]).astype(np.int8)))
    runs = list(zip(edges[0::2].tolist(), edges[1::2].tolist()))  # [start, stop) of each run
    masses = [float(profile[a:b].sum()) for a, b in runs]
    first = last = int(np.argmax(masses))
    while True:
        span = runs[last][1] - runs[first][0]
        if first > 0 and runs[first][0] - runs[first - 1][1] <= GAP_FRACTION * span:
            first -= 1
        elif last < len(runs) - 1 and runs[last + 1][0] - runs[last][1] <= GAP_FRACTION * span:
            last += 1
        else:
            return runs[first][0], runs[last][1]


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The bounding box of the digit (see :func:`ink_bounds`), with ink outside it dropped.

    Rows first, then the columns of the ink within those rows, then the rows again within those
    columns: so the box always holds ink, even when a smudge beside the digit carries more ink than
    the digit in some rows or columns.
    """
    top, bottom = ink_bounds(ink.sum(axis=1))
    left, right = ink_bounds(ink[top:bottom].sum(axis=0))
    top_inside, bottom_inside = ink_bounds(ink[top:bottom, left:right].sum(axis=1))
    return ink[top + top_inside:top + bottom_inside, left:right]


def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """A (n_out, n_in) matrix that resizes a 1-D signal; applied along both axes it resizes an image.

    Shrinking averages the input pixels each output pixel covers, weighted by the overlap (area
    averaging: the anti-aliasing that gives MNIST its grey edges). Enlarging interpolates linearly
    between pixel centres (area weights would just copy pixels into blocks).
    """
    matrix = np.zeros((n_out, n_in), dtype=np.float64)
    if n_out <= n_in:
        scale = n_in / n_out
        for i in range(n_out):
            start, stop = i * scale, (i + 1) * scale
            first, last = int(math.floor(start)), min(int(math.ceil(stop)), n_in)
            for j in range(first, last):
                matrix[i, j] = min(stop, j + 1) - max(start, j)
            matrix[i] /= matrix[i].sum()
    else:
        centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        centres = np.clip(centres, 0, n_in - 1)
        low = np.floor(centres).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        frac = centres - low
        matrix[np.arange(n_out), low] += 1 - frac
        matrix[np.arange(n_out), high] += frac
    return matrix


def scale_into_box(ink: np.ndarray, box: int) -> np.ndarray:
    """Scale so the longer side is ``box`` pixels, keeping the aspect ratio (a thin 1 stays thin)."""
    height, width = ink.shape
    scale = box / max(height, width)
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    rows = resample_matrix(height, new_height)
    cols = resample_matrix(width, new_width)
    return (rows @ ink.astype(np.float64) @ cols.T).astype(np.float32)


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean position, in pixel-centre coordinates."""
    total = float(image.sum())
    rows = np.arange(image.shape[0]) @ image.sum(axis=1) / total
    cols = np.arange(image.shape[1]) @ image.sum(axis=0) / total
    return float(rows), float(cols)


def field_centre(side: int) -> float:
    """Where MNIST puts the centre of mass: pixel index side / 2 (14 for 28), counting from 0.

    Measured on the MNIST test set: the centres of mass lie within 13.5..14.5 on both axes (1st to 99th
    percentile 13.51..14.49), i.e. around pixel 14, half a pixel below and right of the geometric
    centre 13.5 of a 28-pixel field. We use the same convention so our digits sit where the network
    is used to seeing them.
    """
    return side / 2


def place_by_centre_of_mass(scaled: np.ndarray, side: int) -> np.ndarray:
    """Put ``scaled`` into a black side x side field with its centre of mass at :func:`field_centre`.

    The shift is a whole number of pixels, as MNIST's was: no second resampling blurs the strokes, and
    the centre of mass lands within half a pixel of the centre (MNIST's own digits spread over that same
    half pixel). Ink pushed past the edge (a very lopsided digit) is cut off, as in MNIST.
    """
    field = np.zeros((side, side), dtype=np.float32)
    centre = field_centre(side)
    com_row, com_col = centre_of_mass(scaled)
    top, left = int(math.floor(centre - com_row + 0.5)), int(math.floor(centre - com_col + 0.5))
    height, width = scaled.shape
    src_top, src_left = max(0, -top), max(0, -left)
    dst_top, dst_left = max(0, top), max(0, left)
    rows = min(height - src_top, side - dst_top)
    cols = min(width - src_left, side - dst_left)
    if rows > 0 and cols > 0:
        field[dst_top:dst_top + rows, dst_left:dst_left + cols] = \
            scaled[src_top:src_top + rows, src_left:src_left + cols]
    return field


# =================================================================== together
def image_to_input(source: str | os.PathLike | bytes, name: str | None = None, side: int = 28,
                   ink: str = "auto") -> np.ndarray:
    """An image file or its bytes -> the model's input: float32 (side * side,) in [0, 1], white on black."""
    if name is None:
        name = str(source) if isinstance(source, (str, Path, os.PathLike)) else "the image"
    with grayscale(source, name) as gray:  # the decode's memory stays reserved while it is preprocessed
        return preprocess(gray, side, name=name, ink=ink).reshape(-1)

