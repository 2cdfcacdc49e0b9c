"""The memory an image's decoding really takes: known from its header, bounded per image, and shared by a
server's concurrent decodes. Peaks are measured in a fresh process (``ru_maxrss``), as a user would see them."""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest

from bptrain.app import decode_memory
from bptrain.app.decode_memory import MAX_DECODE_BYTES, DecodersBusy, MemoryBudget, decode_bytes
from bptrain.core.errors import DataError

Image = pytest.importorskip("PIL.Image")

MEASURE = r"""
import json, resource, sys
import PIL.Image, PIL.PngImagePlugin
from bptrain.app.images import image_to_input
from bptrain.core.errors import DataError
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
try:
    image_to_input(sys.argv[1])
    error = None
except DataError as exc:
    error = str(exc)
print(json.dumps({"grown": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, "error": error}))
"""


def peak_of_reading(path) -> dict:
    """{"grown": bytes the peak grew by while reading ``path``, "error": the refusal or None}, in a new process."""
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(path, width: int, height: int, colour_type: int) -> None:
    """A 16-bit PNG (colour type 6: RGBA, 0: grey) of white paper with a black bar, written a row at a time:
    a few hundred KB on disk whatever its pixel count."""
    channels = {6: 4, 0: 1}[colour_type]
    paper = b"\x00" + b"\xff" * (2 * channels * width)
    ink = b"\x00" + (b"\x00\x00" * (channels - 1) + b"\xff\xff" if channels == 4 else b"\x00\x00") * width
    compressor, parts = zlib.compressobj(9), []
    for y in range(height):
        parts.append(compressor.compress(ink if height // 3 <= y < height // 2 else paper))
    parts.append(compressor.flush())
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)))
        handle.write(_chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b""))


def palette_png(path, width: int, height: int) -> None:
    image = Image.new("P", (width, height), 0)
    image.putpalette([255, 255, 255, 0, 0, 0])
    image.paste(1, (width // 3, height // 3, width // 2, height // 2))
    image.save(path, transparency=0, compress_level=1)


def largest_side(mode: str, transparent: bool) -> int:
    """The side of the largest square image of this mode whose decoding the limit admits."""
    side = 1000
    while decode_bytes(mode, side + 100, side + 100, transparent, False, work(side + 100)) <= MAX_DECODE_BYTES:
        side += 100
    return side


def work(side: int) -> int:
    factor = math.ceil(side / 2048)
    return math.ceil(side / factor) ** 2


@pytest.fixture(scope="module")
def big_rgba16(tmp_path_factory):
    """0.4 MB on disk, 7000 x 7100 pixels of 16-bit RGBA: just under the 50-megapixel cap."""
    path = tmp_path_factory.mktemp("big") / "big.png"
    png16(path, 7000, 7100, 6)
    return path


def test_a_small_16_bit_rgba_png_of_50_megapixels_is_refused_from_its_header(big_rgba16):
    """Pillow decodes it to 4 bytes a pixel, and reading it took 1.1 GB (the grey copy, the alpha, float64
    weights of every pixel): now its header says it would take more than the limit."""
    assert big_rgba16.stat().st_size < 1_000_000
    measured = peak_of_reading(big_rgba16)
    assert measured["error"] and "too large" in measured["error"] and "RGBA" in measured["error"]
    assert measured["grown"] < 64 * 2**20, measured  # nothing was decoded


@pytest.mark.parametrize("kind", ["rgba16", "palette-transparent", "grey16"])
def test_the_largest_image_admitted_peaks_within_its_estimate_and_the_limit(tmp_path, kind):
    mode, transparent = {"rgba16": ("RGBA", True), "palette-transparent": ("P", True), "grey16": ("I;16", False)}[kind]
    side = largest_side(mode, transparent)
    path = tmp_path / f"{kind}.png"
    if kind == "palette-transparent":
        palette_png(path, side, side)
    else:
        png16(path, side, side, 6 if kind == "rgba16" else 0)
    with Image.open(path) as image:  # the header says what the estimate was made from
        assert image.mode == mode and ("transparency" in image.info or image.mode == "RGBA") == transparent
    estimate = decode_bytes(mode, side, side, transparent, False, work(side))
    measured = peak_of_reading(path)
    assert measured["error"] is None
    assert measured["grown"] <= estimate <= MAX_DECODE_BYTES, (side, measured, estimate)


def test_transparency_reads_as_it_did(tmp_path):
    """The leaner luminance (no full-size float64 weights, the median from counts) gives the same picture."""
    from bptrain.app.image_files import load_grayscale

    rng = np.random.default_rng(5)
    for coverage in (0.2, 0.8):
        rgba = rng.integers(0, 256, (60, 50, 4), dtype=np.uint8)
        rgba[..., 3] = np.where(rng.random((60, 50)) < coverage, rng.integers(128, 256, (60, 50)), 0)
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
        luma = np.asarray(Image.fromarray(rgba, "RGBA").convert("RGB").convert("L"))
        alpha = rgba[..., 3]
        weight = alpha.astype(np.float64) / 255
        if weight.mean() < 0.5:
            paper = 255 if (luma * weight).sum() / weight.sum() < 128 else 0
        else:
            paper = int(np.median(luma[alpha >= 128]))
        expected = Image.composite(Image.fromarray(luma), Image.new("L", (50, 60), paper), Image.fromarray(alpha))
        np.testing.assert_array_equal(load_grayscale(buffer.getvalue()),
                                      np.asarray(expected, dtype=np.float32) / np.float32(255))


# ------------------------------------------------------------------ the budget shared by concurrent decodes
def test_a_budget_never_holds_more_than_its_total():
    budget, most, lock = MemoryBudget(100), [0], threading.Lock()

    def take(n):
        with budget.reserve(n, "x", wait=30):
            with lock:
                most[0] = max(most[0], budget.held)

    threads = [threading.Thread(target=take, args=(n,)) for n in (60, 50, 40, 30, 70, 100, 10) * 5]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 0 < most[0] <= 100 and budget.held == 0


def test_a_decode_that_finds_no_room_is_refused_after_its_wait():
    budget = MemoryBudget(100)
    with budget.reserve(80, "a"):
        with pytest.raises(DecodersBusy, match="try again"):
            with budget.reserve(30, "b", wait=0.05):
                pass
        with budget.reserve(20, "c", wait=0):  # what still fits goes at once
            assert budget.held == 100
    with budget.reserve(10**9, "bigger than the whole budget", wait=0):  # takes it all, and gets its turn
        assert budget.held == 100


def test_the_server_answers_503_json_while_other_decodes_hold_the_budget(monkeypatch):
    from test_server import png_bytes, request, running
    from bptrain.core.network import MLP

    monkeypatch.setattr(decode_memory, "WAIT_SECONDS", 0.05)
    gray = np.full((40, 40), 255, np.uint8)
    gray[10:30, 18:22] = 0
    with running(MLP((784, 8, 10), seed=1)) as port:
        with decode_memory.DECODES.reserve(decode_memory.DECODES.total, "others"):
            status, headers, body = request(port, "POST", "/api/predict", png_bytes(gray),
                                            {"Content-Type": "image/png"})
            assert status == 503 and headers["Content-Type"] == "application/json"
            assert "try again" in json.loads(body)["error"]
            status, _, _ = request(port, "POST", "/api/predict", json.dumps(  # drawings need no decode
                {"width": 40, "height": 40, "pixels": gray.reshape(-1).tolist()}).encode(),
                {"Content-Type": "application/json"})
            assert status == 200
        status, _, _ = request(port, "POST", "/api/predict", png_bytes(gray), {"Content-Type": "image/png"})
        assert status == 200


def test_a_too_large_image_is_one_line_naming_its_size_and_mode(big_rgba16):
    from bptrain.app.image_files import load_grayscale

    with pytest.raises(DataError, match=r"7000 x 7100 pixels of RGBA take about [\d,]+ MB to decode"):
        load_grayscale(big_rgba16)
