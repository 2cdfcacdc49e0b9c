"""Image files in and out: decoding a photo, scan or drawing into luminance, and writing a model input as a PNG.

Pillow does the decoding; it is an optional extra (``pip install 'bptrain[images]'``), imported only
inside :func:`require_pillow`, so the core never needs it. Every problem is one line of
:class:`~bptrain.core.errors.DataError`. What becomes of the luminance is :mod:`.images`.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import warnings

import numpy as np

from ..core.errors import BptrainError, DataError
from ..data.regular import open_regular
from .decode_memory import DECODES, MAX_DECODE_BYTES, decode_bytes, megabytes

MISSING_PILLOW = "reading images needs Pillow: pip install 'bptrain[images]'"

#: The formats we decode. Restricting Pillow to these keeps rarely used (and rarely hardened) decoders
#: away from uploaded bytes; they are what phones, scanners and drawing programs write.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
#: Magic bytes of those formats, so callers can recognise an image by content rather than by name.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a")
#: At most this many pixels are decoded, and at most MAX_DECODE_BYTES of memory are taken to read them
#: (what the mode's decoding and our conversions really allocate: :mod:`.decode_memory`; a 50-megapixel
#: RGB photo takes about 250 MB, 16-bit RGBA of the same size 300 MB and is refused). JPEGs are decoded
#: at 1/2, 1/4 or 1/8 scale when large (cheap: the decoder skips the detail), so only a JPEG of more than
#: 8 x 8 x 50 million pixels would be refused, and Pillow's own decompression-bomb limit
#: (``Image.MAX_IMAGE_PIXELS``, 89 million) refuses far less from the header alone.
MAX_PIXELS = 50_000_000
#: Decoded images are reduced (box filter, integer factor) until their longer side is at most this:
#: the digit ends up 20 px tall, so more detail is of no use and would only cost memory and time.
WORK_SIDE = 2048
#: Pixels per band when statistics of a full-size image are taken a band of rows at a time.
BAND_PIXELS = 1 << 20


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


def load_grayscale(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Decode an image file (a path, or its bytes as uploaded) into float32 (H, W) luminance in [0, 1].

    1 is white. Any mode is handled (1-bit, grey, 16-bit grey, RGB, CMYK, palette, with or without
    transparency; see :func:`_to_luminance`), the EXIF orientation of a phone photo is applied, and
    large images come back reduced to at most ``WORK_SIDE`` on their longer side.
    """
    with grayscale(source, name) as gray:
        return gray


@contextlib.contextmanager
def grayscale(source: str | os.PathLike | bytes, name: str | None = None):
    """:func:`load_grayscale` as a context: the memory of the decode and of what is then made of the
    luminance (:mod:`.images`' preprocessing) stays reserved in the process's budget until it ends.

    An image whose decoding would take more than ``MAX_DECODE_BYTES`` is refused from its header; one
    that finds the budget held by other decodes for too long is :class:`.decode_memory.DecodersBusy`.
    """
    Image = require_pillow()
    name = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "the image")
    with _stream(source, name) as stream:
        image = _open(Image, stream, name)
        try:
            needed = _decode_cost(Image, image, name)
            with DECODES.reserve(needed, name):
                _decode(Image, image, name)
                yield _to_luminance(Image, image)
        finally:
            image.close()


def _stream(source, name: str):
    """The bytes as a file, or the named file opened (a FIFO or a device refused, not waited on)."""
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(bytes(source))
    try:
        return open_regular(source, DataError)
    except FileNotFoundError:
        raise DataError(f"no image file at {name}") from None
    except IsADirectoryError:
        raise DataError(f"{name} is a directory, not an image") from None
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc.strerror or _first_line(exc)}") from None


def _open(Image, stream, name: str):
    """Open (read the header only), refusing decompression bombs before any pixel is decoded.

    Pillow warns above ``MAX_IMAGE_PIXELS`` and raises above twice that; we turn the warning into an
    error too, and check the size ourselves as well (the warnings filter is process-wide, so under a
    threaded server another thread may have restored it in between).
    """
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


def _decode_cost(Image, image, name: str) -> int:
    """The bytes decoding ``image`` will take (:mod:`.decode_memory`), refusing more than the limits.

    A JPEG is decoded straight to grey, and at 1/2, 1/4 or 1/8 scale when it is much larger than
    ``WORK_SIDE`` (``draft``: a 48-megapixel photo then costs 12 MB instead of 144); any image still
    larger than ``MAX_PIXELS``, or whose mode makes it take more than ``MAX_DECODE_BYTES``, is refused.
    """
    if image.format == "JPEG":
        factor = _jpeg_factor(*image.size)
        image.draft("L" if image.mode in ("L", "RGB") else None,
                    (max(1, image.width // factor), max(1, image.height // factor)))
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DataError(f"{name} is too large: {width} x {height} pixels, more than {MAX_PIXELS:,} "
                        f"(scale it down first)")
    rotated = False
    if image.info.get("exif"):  # read at open (PNG's getexif() would decode the whole image to look further)
        try:
            exif = Image.Exif()
            exif.load(image.info["exif"])
            rotated = exif.get(0x0112, 1) in range(2, 9)
        except Exception:  # noqa: BLE001 - a corrupt EXIF block: then it is not turned either
            pass
    factor = math.ceil(max(width, height) / WORK_SIDE)
    needed = decode_bytes(image.mode, width, height, _has_transparency(image), rotated,
                          math.ceil(width / factor) * math.ceil(height / factor))
    if needed > MAX_DECODE_BYTES:
        raise DataError(f"{name} is too large: {width} x {height} pixels of {image.mode} take about "
                        f"{megabytes(needed)} to decode, more than {megabytes(MAX_DECODE_BYTES)} "
                        f"(scale it down first)")
    return needed


def _decode(Image, image, name: str) -> None:
    """Decode the pixels fully (so a truncated file fails here, not later), and turn it upright, in place.

    The first frame of an animated GIF is used.
    """
    width, height = image.size
    try:
        image.load()  # the full decode: a truncated or corrupt file raises here
        _apply_orientation(image)
    except MemoryError:
        raise DataError(f"{name} does not fit in memory ({width} x {height} pixels)") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, ...
        message = _first_line(exc)
        what = "truncated or corrupt" if "truncated" in message or isinstance(exc, (OSError, EOFError)) \
            else "corrupt"
        raise DataError(f"{name} is {what} ({message})") from None


def _jpeg_factor(width: int, height: int) -> int:
    """By how much (1, 2, 4 or 8) to let the JPEG decoder scale down: as much as keeps the longer side at
    least ``WORK_SIDE`` (more detail is of no use), and at least enough to stay within ``MAX_PIXELS``."""
    factors = (1, 2, 4, 8)
    useful = max(f for f in factors if f == 1 or max(width, height) / f >= WORK_SIDE)
    needed = next((f for f in factors if math.ceil(width / f) * math.ceil(height / f) <= MAX_PIXELS), 8)
    return max(useful, needed)


def _apply_orientation(image) -> None:
    """Rotate/flip as the EXIF Orientation tag says (phones store photos sideways and set that tag), in
    place: without the tag nothing is copied."""
    from PIL import ImageOps

    ImageOps.exif_transpose(image, in_place=True)


def _to_luminance(Image, image) -> np.ndarray:
    """Any Pillow mode -> float32 (H, W) in [0, 1], transparency composited onto the paper.

    16-bit and 32-bit grey keep their precision (Pillow's own conversion to 8 bits would clip them);
    everything else goes through Pillow's ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B). The
    full-size images made here are the ones :data:`.decode_memory.CONVERSION_BYTES` counts; ``image``
    is closed as soon as they are made, so its memory is free for the rest.
    """
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        full = 1.0 if image.mode == "F" else 65535.0
        gray = image.convert("F")
        image.close()
        return np.clip(np.asarray(_reduce(gray), dtype=np.float32) / np.float32(full), 0, 1)
    if _has_transparency(image):
        rgba = image if image.mode in ("RGBA", "LA") else image.convert("RGBA")
        luma, alpha = rgba.convert("L"), rgba.getchannel("A")
        rgba.close()
        image.close()
        paper = Image.new("L", luma.size, _paper_behind_transparency(luma, alpha))
        paper.paste(luma, None, alpha)  # luma where opaque, the paper where transparent, blended between
        luma.close()
        alpha.close()
        luma = paper
    elif image.mode != "L":
        luma = image.convert("L")
        image.close()
    else:
        luma = image
    return np.asarray(_reduce(luma), dtype=np.float32) / np.float32(255)


def _has_transparency(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _paper_behind_transparency(luma, alpha) -> int:
    """The paper colour (0..255) that transparent pixels take.

    The colour stored under a transparent pixel means nothing (a canvas cleared to transparent black
    holds black there, the same as a black stroke), so it is ignored. When the opaque part covers less
    than half the image it is the ink (strokes drawn on a transparent canvas): the paper is white behind
    dark strokes and black behind light ones. When it covers more, it contains the paper itself (a scan
    with transparent margins): the transparent parts take the opaque part's median colour.

    ``luma`` and ``alpha`` are Pillow "L" images, read a band of rows at a time (full-size arrays of
    them would cost 18 bytes a pixel).
    """
    width, height = luma.size
    rows = max(1, BAND_PIXELS // width)
    alpha_sum, weighted, opaque = 0, 0, np.zeros(256, np.int64)
    for top in range(0, height, rows):
        box = (0, top, width, min(height, top + rows))
        band_luma, band_alpha = np.asarray(luma.crop(box)), np.asarray(alpha.crop(box))
        alpha_sum += int(band_alpha.sum(dtype=np.int64))
        weighted += int(np.dot(band_luma.ravel().astype(np.int64), band_alpha.ravel().astype(np.int64)))
        opaque += np.bincount(band_luma[band_alpha >= 128], minlength=256)
    coverage = alpha_sum / 255 / (width * height)
    if coverage == 0:
        return 255
    if coverage < 0.5:
        return 255 if weighted / alpha_sum < 128 else 0
    count = int(opaque.sum())
    if count == 0:
        return 255
    cumulative = np.cumsum(opaque)  # the median of the opaque pixels' levels, as np.median takes it
    low, high = (int(np.searchsorted(cumulative, k, side="right")) for k in ((count - 1) // 2, count // 2))
    return int((low + high) / 2)


def _reduce(image):
    """Box-reduce by an integer factor until the longer side is at most ``WORK_SIDE``."""
    factor = math.ceil(max(image.size) / WORK_SIDE)
    return image.reduce(factor) if factor > 1 else image


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
