"""A user's own digit (a photo, a scan, a drawing) -> the input an MNIST network expects.

MNIST digits are not raw scans: "the original black and white (bilevel) images from NIST were size
normalized to fit in a 20x20 pixel box while preserving their aspect ratio. The resulting images contain
grey levels as a result of the anti-aliasing technique used by the normalization algorithm. the images
were centered in a 28x28 image by computing the center of mass of the pixels, and translating the image
so as to position this point at the center of the 28x28 field" (the MNIST page, LeCun, Cortes, Burges).
A network trained on them expects white ink on black, about 20 px tall, centred by mass. This module
does the same to any image, in small steps:

    load_grayscale   file or bytes -> float32 (H, W) luminance in [0, 1], 1 = white (Pillow decodes)
    preprocess       luminance -> float32 (side, side) white ink on black, MNIST-style (NumPy only)
    image_to_input   both, flattened: THE one implementation used by `bptrain predict` and `bptrain serve`

Pillow is an optional extra (``pip install 'bptrain[images]'``); it is imported only inside
:func:`require_pillow`, so the core never needs it. Every problem is one line of
:class:`~bptrain.core.errors.DataError`.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import BptrainError, DataError

MISSING_PILLOW = "reading images needs Pillow: pip install 'bptrain[images]'"

#: The formats we decode. Restricting Pillow to these keeps rarely used (and rarely hardened) decoders
#: away from uploaded bytes; they are what phones, scanners and drawing programs write.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
#: Magic bytes of those formats, so callers can recognise an image by content rather than by name.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a")
#: At most this many pixels are decoded (about a 50-megapixel image: ~200 MB as RGBA). JPEGs are
#: decoded at 1/2, 1/4 or 1/8 scale when large (cheap: the decoder skips the detail), so only a JPEG of
#: more than 8 x 8 x 50 million pixels would be refused, and Pillow's own decompression-bomb limit
#: (``Image.MAX_IMAGE_PIXELS``, 89 million) refuses far less from the header alone.
MAX_PIXELS = 50_000_000
#: Decoded images are reduced (box filter, integer factor) until their longer side is at most this:
#: the digit ends up 20 px tall, so more detail is of no use and would only cost memory and time.
WORK_SIDE = 2048

#: The paper's level is fitted on a copy shrunk to at most this many pixels on its longer side, in at
#: most this many rounds (see paper_surface).
FIT_SIDE = 64
MAX_FIT_ROUNDS = 10
#: MNIST's digit box is 20 px in a 28 px field; other sides keep the proportion.
BOX_FRACTION = 20 / 28
#: Border ring used to find the paper: this fraction of the shorter side (at least one pixel).
BORDER_FRACTION = 0.04
#: Ink fainter than this fraction of the strongest ink is treated as paper tone or noise.
FAINT_FRACTION = 0.2
#: A darkest-to-paper (or lightest-to-paper) difference below this is no ink at all (26 of 255 levels).
MIN_CONTRAST = 0.1
#: Ink separated from the digit by a gap of more than this fraction of the digit's extent (in rows or
#: columns) is not part of it: a speck of dust or a JPEG artefact far away does not enlarge the box.
GAP_FRACTION = 0.25


class ImagesUnavailable(BptrainError):
    """Pillow is not installed, so image files cannot be read (arrays still can)."""


def require_pillow():
    """Import Pillow and return its ``PIL.Image`` module, or say in one line how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise ImagesUnavailable(MISSING_PILLOW) from None
    return Image


def looks_like_image(head: bytes) -> bool:
    """True if ``head`` (the first 16 bytes of a file) starts like a PNG, JPEG, BMP, GIF or WebP image."""
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


# ====================================================================== loading
def load_grayscale(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Decode an image file (a path, or its bytes as uploaded) into float32 (H, W) luminance in [0, 1].

    1 is white. Any mode is handled (1-bit, grey, 16-bit grey, RGB, CMYK, palette, with or without
    transparency; see :func:`_to_luminance`), the EXIF orientation of a phone photo is applied, and
    large images come back reduced to at most ``WORK_SIDE`` on their longer side.
    """
    Image = require_pillow()
    name = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "the image")
    image = _open(Image, source, name)
    try:
        image = _decode(Image, image, name)
        return _to_luminance(Image, image)
    finally:
        image.close()


def _open(Image, source, name: str):
    """Open (read the header only), refusing decompression bombs before any pixel is decoded.

    Pillow warns above ``MAX_IMAGE_PIXELS`` and raises above twice that; we turn the warning into an
    error too, and check the size ourselves as well (the warnings filter is process-wide, so under a
    threaded server another thread may have restored it in between).
    """
    stream = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow says "Image size (N pixels) exceeds ..."
        size = f"{int(found.group(1)):,} pixels, " if found else ""
        raise DataError(f"{name} is too large to decode safely (a decompression bomb?): {size}more than "
                        f"{Image.MAX_IMAGE_PIXELS:,}") from None
    except FileNotFoundError:
        raise DataError(f"no image file at {name}") from None
    except IsADirectoryError:
        raise DataError(f"{name} is a directory, not an image") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{name} is not a readable image ({', '.join(FORMATS)})") from None
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc.strerror or _first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt header can make a decoder raise anything
        raise DataError(f"{name} is not a readable image ({_first_line(exc)})") from None
    width, height = image.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        image.close()
        raise DataError(f"{name} is too large to decode safely (a decompression bomb?): {width} x {height} "
                        f"pixels, more than {limit:,}")
    return image


def _decode(Image, image, name: str):
    """Decode the pixels fully (so a truncated file fails here, not later), cheaply for huge images.

    A JPEG is decoded straight to grey, and at 1/2, 1/4 or 1/8 scale when it is much larger than
    ``WORK_SIDE`` (``draft``: a 48-megapixel photo then costs 12 MB instead of 144); any image still
    larger than ``MAX_PIXELS`` is refused. The first frame of an animated GIF is used.
    """
    if image.format == "JPEG":
        factor = _jpeg_factor(*image.size)
        image.draft("L" if image.mode in ("L", "RGB") else None,
                    (max(1, image.width // factor), max(1, image.height // factor)))
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DataError(f"{name} is too large: {width} x {height} pixels, more than {MAX_PIXELS:,} "
                        f"(scale it down first)")
    try:
        image.load()  # the full decode: a truncated or corrupt file raises here
        image = _apply_orientation(image)
    except MemoryError:
        raise DataError(f"{name} does not fit in memory ({width} x {height} pixels)") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, ...
        message = _first_line(exc)
        what = "truncated or corrupt" if "truncated" in message or isinstance(exc, (OSError, EOFError)) \
            else "corrupt"
        raise DataError(f"{name} is {what} ({message})") from None
    return image


def _jpeg_factor(width: int, height: int) -> int:
    """By how much (1, 2, 4 or 8) to let the JPEG decoder scale down: as much as keeps the longer side at
    least ``WORK_SIDE`` (more detail is of no use), and at least enough to stay within ``MAX_PIXELS``."""
    factors = (1, 2, 4, 8)
    useful = max(f for f in factors if f == 1 or max(width, height) / f >= WORK_SIDE)
    needed = next((f for f in factors if math.ceil(width / f) * math.ceil(height / f) <= MAX_PIXELS), 8)
    return max(useful, needed)


def _apply_orientation(image):
    """Rotate/flip as the EXIF Orientation tag says: phones store photos sideways and set that tag."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


def _to_luminance(Image, image) -> np.ndarray:
    """Any Pillow mode -> float32 (H, W) in [0, 1], transparency composited onto the paper.

    16-bit and 32-bit grey keep their precision (Pillow's own conversion to 8 bits would clip them);
    everything else goes through Pillow's ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B).
    """
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        full = 1.0 if image.mode == "F" else 65535.0
        gray = _reduce(image.convert("F"))
        return np.clip(np.asarray(gray, dtype=np.float32) / np.float32(full), 0, 1)
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        luma = rgba.convert("RGB").convert("L")
        alpha = rgba.getchannel("A")
        paper = _paper_behind_transparency(np.asarray(luma), np.asarray(alpha))
        luma = Image.composite(luma, Image.new("L", luma.size, paper), alpha)
    else:
        luma = image.convert("L")
    return np.asarray(_reduce(luma), dtype=np.float32) / np.float32(255)


def _has_transparency(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _paper_behind_transparency(luma: np.ndarray, alpha: np.ndarray) -> int:
    """The paper colour (0..255) that transparent pixels take.

    The colour stored under a transparent pixel means nothing (a canvas cleared to transparent black
    holds black there, the same as a black stroke), so it is ignored. When the opaque part covers less
    than half the image it is the ink (strokes drawn on a transparent canvas): the paper is white behind
    dark strokes and black behind light ones. When it covers more, it contains the paper itself (a scan
    with transparent margins): the transparent parts take the opaque part's median colour.
    """
    weight = alpha.astype(np.float64) / 255
    coverage = float(weight.mean())
    if coverage == 0:
        return 255
    if coverage < 0.5:
        strokes = float((luma * weight).sum() / weight.sum())
        return 255 if strokes < 128 else 0
    return int(np.median(luma[alpha >= 128])) if (alpha >= 128).any() else 255


def _reduce(image):
    """Box-reduce by an integer factor until the longer side is at most ``WORK_SIDE``."""
    factor = math.ceil(max(image.size) / WORK_SIDE)
    return image.reduce(factor) if factor > 1 else image


# ================================================================= preprocessing
def preprocess(gray: np.ndarray, side: int = 28, name: str = "the image") -> np.ndarray:
    """Luminance (H, W) in [0, 1] (1 = white) -> float32 (side, side) white ink on black, as MNIST was made.

    Find the paper's level (under uneven light too) and the ink's polarity (the side that stands out
    from the paper); turn the picture into ink intensity; drop paper tone and faint noise; crop to the
    ink's bounding box; scale its longer side to ``round(side * 20 / 28)`` preserving the aspect ratio,
    with anti-aliasing; place it in the field so that its centre of mass is at the centre. ``name`` is
    used in the error for an image without ink.
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise DataError(f"{name} is not a 2-D grey image (shape {gray.shape})")
    if not np.isfinite(gray).all():
        raise DataError(f"{name} contains NaN or infinite values")
    dark_ink = ink_is_dark(gray)
    paper = paper_surface(gray, dark_ink)
    noise = paper_noise(gray, paper)
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


def fit_paper(small: np.ndarray, y: np.ndarray, x: np.ndarray, dark_ink: bool, inside: bool = True) -> np.ndarray:
    """The six coefficients of the quadratic paper surface of a shrunken image; see :func:`paper_surface`.

    Least squares on the pixels not clearly on the ink's side of the previous fit (more than 3 robust
    standard deviations, or half of ``MIN_CONTRAST``), again until that set stops changing: first among
    the border pixels only (where the paper is; strokes running into the border drop out), then, if
    ``inside``, among all pixels.
    """
    height, width = small.shape
    values = small.ravel()
    ring = max(1, round(BORDER_FRACTION * min(height, width)))
    paper = np.zeros((height, width), dtype=bool)
    paper[:ring], paper[-ring:], paper[:, :ring], paper[:, -ring:] = True, True, True, True
    paper = paper.ravel()
    yy, xx = (grid.ravel() for grid in np.meshgrid(y, x, indexing="ij"))
    terms = np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], axis=1)
    if height * width < 4 * terms.shape[1]:  # too small to fit a surface: the paper is one level
        return np.array([np.median(values[paper])] + [0.0] * (terms.shape[1] - 1))
    towards_paper = 1.0 if dark_ink else -1.0
    border, everywhere = paper.copy(), np.ones_like(paper)
    for allowed in (border, everywhere) if inside else (border,):  # first clean the border of strokes
        for _ in range(MAX_FIT_ROUNDS):
            coefficients = np.linalg.lstsq(terms[paper], values[paper], rcond=None)[0]
            residual = towards_paper * (values - terms @ coefficients)
            spread = 1.4826 * float(np.median(np.abs(residual[paper])))
            now_paper = allowed & (residual > -max(3 * spread, MIN_CONTRAST / 2))
            if np.array_equal(now_paper, paper) or now_paper.sum() < terms.shape[1]:
                break
            paper = now_paper
    return coefficients


def ink_is_dark(gray: np.ndarray) -> bool:
    """Whether the ink is darker than the paper: the side that stands out more from the border's paper.

    The paper's surface is fitted to the border for either polarity, on the shrunken image (where noise
    has been averaged away); dark ink then dips far below it inside, light ink rises far above it.
    Deciding by the border's brightness alone (light paper, dark ink) fails for a photo of white paper
    that came out mid-grey, or half in shadow.
    """
    small, y, x = shrink(gray, FIT_SIDE)
    below = float(np.max(_surface(fit_paper(small, y, x, True, inside=False), y, x) - small))
    above = float(np.max(small - _surface(fit_paper(small, y, x, False, inside=False), y, x)))
    return below >= above


def paper_surface(gray: np.ndarray, dark_ink: bool) -> np.ndarray:
    """The paper's level at every pixel: a smooth quadratic surface, so uneven light is not ink.

    A phone photo is brighter on one side, darker in the corners. A quadratic in x and y (six numbers)
    follows such light but cannot follow a pen stroke. It is fitted (:func:`fit_paper`) on block means
    of the image at most ``FIT_SIDE`` blocks across: fast, and with the noise averaged away.
    """
    coefficients = fit_paper(*shrink(gray, FIT_SIDE), dark_ink)
    height, width = gray.shape
    return _surface(coefficients, _coordinates(height), _coordinates(width)).astype(np.float32)


def paper_noise(gray: np.ndarray, paper: np.ndarray) -> float:
    """How much the paper varies by itself (texture, sensor and JPEG noise) around its fitted level.

    Three robust standard deviations (1.4826 x the median absolute deviation) of the border's
    difference from the paper surface: robust, so strokes running into the border do not count.
    """
    return 3 * 1.4826 * float(np.median(np.abs(border_pixels(gray - paper))))


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
def image_to_input(source: str | os.PathLike | bytes, name: str | None = None, side: int = 28) -> np.ndarray:
    """An image file or its bytes -> the model's input: float32 (side * side,) in [0, 1], white on black."""
    if name is None:
        name = str(source) if isinstance(source, (str, Path, os.PathLike)) else "the image"
    return preprocess(load_grayscale(source, name), side, name=name).reshape(-1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


def save_input_png(vector: np.ndarray, path: str | os.PathLike) -> None:
    """Write a model input (side * side values in [0, 1]) as a grey PNG, white ink on black like MNIST.

    The file is created exclusively: an existing file is never overwritten (FileExistsError).
    """
    Image = require_pillow()
    side = math.isqrt(vector.size)
    pixels = np.round(np.clip(vector.reshape(side, side), 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # uint8 (H, W): mode L
    with open(path, "xb") as handle:
        handle.write(buffer.getvalue())
