"""What reading one image costs in memory, known from its header, and a budget that concurrent reads share.

A file's size says nothing about its pixels: a 0.4 MB PNG of 16-bit RGBA holds 50 million pixels. Pillow
decodes each mode into a fixed number of bytes per pixel (:data:`DECODED_BYTES`: 4 for RGB and RGBA,
whatever their bit depth; 2 for 16-bit grey), and :mod:`.image_files` then makes its conversions (a grey
copy, the alpha channel, a 32-bit float copy of 16-bit grey: :data:`CONVERSION_BYTES`), so the peak is
known from the header before any pixel is decoded:

    peak ≈ pixels · (decoded + conversions [+ decoded again, for an EXIF rotation]) + the work image's cost

Measured (``ru_maxrss`` of a process decoding one image, tests/test_decode_memory.py): within these bounds
for every mode. An image whose estimate is over :data:`MAX_DECODE_BYTES` is refused from its header; and
the decodes of one process (the server's request threads) together hold at most :data:`BUDGET_BYTES`:
a decode that would pass it waits up to :data:`WAIT_SECONDS` for others to finish, then is refused
(:class:`DecodersBusy`; the server answers 503).
"""

from __future__ import annotations

import contextlib
import threading
import time

from ..core.errors import BptrainError

#: Bytes per pixel of each mode as Pillow holds it in memory (RGB takes 4: Pillow pads it to 32 bits).
DECODED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
                 "LA": 4, "La": 4, "PA": 4, "RGB": 4, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4,
                 "YCbCr": 4, "LAB": 4, "HSV": 4, "I": 4, "F": 4}
#: Bytes per pixel of the full-size images alive beside the decoded one, by the path it takes
#: (:func:`bptrain.app.image_files._to_luminance`): a grey copy; 16-bit grey as 32-bit floats; with
#: transparency a grey copy and the alpha channel (the decoded image is closed before the paper they are
#: composited onto is made), and for a mode other than RGBA or LA an RGBA copy first.
CONVERSION_BYTES = {"grey": 1, "high": 4, "alpha": 2, "alpha-converted": 6}
#: Bytes per pixel of the work image (at most WORK_SIDE on its longer side) while it is preprocessed:
#: its float32 luminance and the arrays of the paper's fit, ink and crop (measured: 21).
WORK_BYTES = 24
#: The most one image's decoding may take. A 50-megapixel RGB photo (5 bytes a pixel) fits; RGBA (8 or 16
#: bits) and 16-bit grey (6 bytes a pixel) up to about 43 megapixels, a palette with transparency to 37.
MAX_DECODE_BYTES = 320 * 2**20
#: What the decodes of one process may hold together, and how long one waits for room before it is refused.
BUDGET_BYTES = 2 * MAX_DECODE_BYTES
WAIT_SECONDS = 10.0


class DecodersBusy(BptrainError):
    """Other images being decoded hold the memory this one needs (try again in a moment)."""


def decode_path(mode: str, transparent: bool) -> str:
    """Which conversions :mod:`.image_files` makes of an image of ``mode`` (a key of CONVERSION_BYTES)."""
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return "high"
    if transparent:
        return "alpha" if mode in ("RGBA", "LA") else "alpha-converted"
    return "grey"


def decode_bytes(mode: str, width: int, height: int, transparent: bool, rotated: bool,
                 work_pixels: int) -> int:
    """The peak memory of decoding and preprocessing an image of this header (see the module's docstring)."""
    decoded = DECODED_BYTES.get(mode, 4)
    per_pixel = decoded + CONVERSION_BYTES[decode_path(mode, transparent)] + (decoded if rotated else 0)
    return width * height * per_pixel + work_pixels * WORK_BYTES


def megabytes(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


class MemoryBudget:
    """A counting semaphore of bytes: ``with budget.reserve(n):`` holds ``n`` of its bytes while it runs."""

    def __init__(self, total: int):
        self.total = total
        self.held = 0
        self._freed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, n: int, name: str, wait: float | None = None):
        n = min(n, self.total)  # one that fits alone (MAX_DECODE_BYTES <= total) always gets its turn
        deadline = time.monotonic() + (WAIT_SECONDS if wait is None else wait)
        with self._freed:
            while self.held + n > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DecodersBusy(f"too many images are being decoded at once to take {name} "
                                       f"({megabytes(n)}) now; try again in a moment")
                self._freed.wait(timeout=left)
            self.held += n
        try:
            yield
        finally:
            with self._freed:
                self.held -= n
                self._freed.notify_all()


#: The budget every decode of this process takes its memory from.
DECODES = MemoryBudget(BUDGET_BYTES)
