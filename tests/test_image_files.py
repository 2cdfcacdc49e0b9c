"""Image files from the outside world read as grayscale (bptrain.app.image_files): modes, transparency,
EXIF, damaged and enormous files, and Pillow missing.

Images are made here with Pillow and NumPy (the helpers are test_images.py's).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from bptrain.app import image_files, images
from bptrain.core.errors import DataError
from bptrain.app.image_files import ImagesUnavailable, load_grayscale, require_pillow
from bptrain.app.images import image_to_input, preprocess
from test_images import digit_image, gray_of, png_bytes

Image = pytest.importorskip("PIL.Image")
ImageDraw = pytest.importorskip("PIL.ImageDraw")


def test_load_grayscale_is_float32_luminance_one_is_white(tmp_path):
    image = Image.new("RGB", (30, 20), (255, 255, 255))
    image.putpixel((3, 4), (0, 0, 0))
    image.putpixel((5, 6), (255, 0, 0))
    path = tmp_path / "x.png"
    image.save(path)
    gray = load_grayscale(path)
    assert gray.shape == (20, 30) and gray.dtype == np.float32
    assert gray[0, 0] == 1.0 and gray[4, 3] == 0.0
    assert gray[6, 5] == pytest.approx(0.299, abs=0.01)  # ITU-R 601-2 luma of pure red
    np.testing.assert_array_equal(load_grayscale(path.read_bytes()), gray)  # bytes as uploaded


def reference(image) -> np.ndarray:
    return preprocess(gray_of(image))


@pytest.mark.parametrize("stroke", [(0, 0, 0), (255, 255, 255), (20, 40, 200)], ids=["black", "white", "blue"])
def test_strokes_on_a_transparent_canvas(stroke):
    """A canvas cleared to transparent black (as a browser's is): only the strokes count."""
    canvas = digit_image("8", mode="RGBA", ink=stroke + (255,), paper=(0, 0, 0, 0))
    field = preprocess(load_grayscale(png_bytes(canvas)))
    dark = stroke != (255, 255, 255)
    expected = reference(digit_image("8", ink=0, paper=255)) if dark else reference(digit_image("8", ink=255, paper=0))
    assert np.corrcoef(field.ravel(), expected.ravel())[0, 1] > 0.99


def test_a_scan_with_transparent_margins_takes_the_paper_colour():
    scan = digit_image("6", mode="RGBA", ink=(10, 10, 10, 255), paper=(250, 250, 250, 255))
    alpha = Image.new("L", scan.size, 255)
    ImageDraw.Draw(alpha).rectangle((0, 0, scan.width, 12), fill=0)  # transparent top margin
    scan.putalpha(alpha)
    field = preprocess(load_grayscale(png_bytes(scan)))
    np.testing.assert_allclose(field, reference(digit_image("6", ink=10, paper=250)), atol=0.02)


def test_palette_and_gif_with_transparency():
    plain = digit_image("9")
    expected = reference(plain)
    palette = plain.convert("P")
    np.testing.assert_allclose(preprocess(load_grayscale(png_bytes(palette))), expected, atol=1e-6)
    gif = png_bytes(palette, format="GIF", transparency=palette.getpixel((0, 0)))  # the paper is transparent
    np.testing.assert_allclose(preprocess(load_grayscale(gif)), expected, atol=0.02)


def test_sixteen_bit_grey_keeps_its_precision():
    plain = digit_image("2")
    wide = Image.fromarray(np.asarray(plain, dtype=np.uint16) * 257)  # 0..65535
    gray = load_grayscale(png_bytes(wide))
    np.testing.assert_allclose(gray, gray_of(plain), atol=1e-6)


def test_cmyk_jpeg_and_bmp():
    plain = digit_image("5")
    expected = reference(plain)
    cmyk = png_bytes(plain.convert("CMYK"), format="JPEG", quality=95)
    assert np.corrcoef(preprocess(load_grayscale(cmyk)).ravel(), expected.ravel())[0, 1] > 0.98
    bmp = png_bytes(plain.convert("RGB"), format="BMP")
    np.testing.assert_allclose(preprocess(load_grayscale(bmp)), expected, atol=1e-6)


def test_exif_orientation_is_applied():
    upright = digit_image("7")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # how a phone stores a photo taken sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    gray = load_grayscale(png_bytes(stored.convert("RGB"), format="JPEG", quality=95, exif=exif))
    assert gray.shape == (upright.height, upright.width)
    assert np.abs(gray - gray_of(upright)).mean() < 0.01


def test_truncated_png_is_a_one_line_error(tmp_path):
    data = png_bytes(digit_image("1"))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png is truncated") as caught:
        load_grayscale(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("content", [b"hello, this is text\n", b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 40],
                         ids=["text", "empty", "png-magic-only"])
def test_not_an_image_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "notes.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"notes\.png") as caught:
        load_grayscale(path)
    assert "\n" not in str(caught.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no image file"):
        load_grayscale(tmp_path / "absent.png")


@pytest.mark.parametrize("side", [120, 200], ids=["warning-zone", "error-zone"])
def test_decompression_bomb_is_an_error(monkeypatch, side):
    """Pillow warns above MAX_IMAGE_PIXELS and raises above twice that: both are refused."""
    data = png_bytes(Image.new("L", (side, side), 255))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(DataError, match="decompression bomb"):
        load_grayscale(data, "bomb.png")


def huge_png(path: Path, side: int = 20_000) -> Path:
    """A real, valid 1-bit side x side PNG, written in a stream (a few hundred KB on disk)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + b"\xff" * ((side + 7) // 8)  # filter byte 0, then white pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def peak_memory_mb(script: str) -> tuple[str, float]:
    """Run ``script`` in a fresh Python; return its output and its peak resident memory in MB.

    VmHWM from /proc (the high-water mark of this process's own memory) rather than ru_maxrss, which
    Linux carries over from the parent (here: the whole test session) across fork and exec.
    """
    script += "\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    *output, peak_kb = result.stdout.splitlines()
    return "\n".join(output), int(peak_kb) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to measure memory")
def test_a_20000_pixel_square_is_refused_without_using_gigabytes(tmp_path):
    path = huge_png(tmp_path / "huge.png")
    message, peak_mb = peak_memory_mb("from bptrain.core.errors import DataError\n"
                                      "from bptrain.app.image_files import load_grayscale\n"
                                      "try:\n"
                                      f"    load_grayscale({str(path)!r})\n"
                                      "except DataError as exc:\n"
                                      "    print(exc)\n")
    assert "decompression bomb" in message and "huge.png" in message and "400,000,000 pixels" in message, message
    assert peak_mb < 300, f"peak memory {peak_mb:.0f} MB"


def test_a_large_jpeg_is_decoded_at_reduced_scale_and_a_large_png_refused(monkeypatch):
    big = digit_image("4", size=300, canvas=(800, 600), at=(250, 100))
    monkeypatch.setattr(image_files, "MAX_PIXELS", 40_000)
    gray = load_grayscale(png_bytes(big.convert("RGB"), format="JPEG", quality=95))
    assert gray.shape == (150, 200)  # drafted to 1/4 by the JPEG decoder
    assert np.corrcoef(preprocess(gray).ravel(), reference(big).ravel())[0, 1] > 0.95
    with pytest.raises(DataError, match="too large"):
        load_grayscale(png_bytes(big), "big.png")


def test_big_images_are_reduced_to_the_working_side(monkeypatch):
    monkeypatch.setattr(image_files, "WORK_SIDE", 100)
    gray = load_grayscale(png_bytes(digit_image("1", canvas=(400, 300))))
    assert gray.shape == (75, 100)


def test_without_pillow_one_line_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImagesUnavailable, match=r"^reading images needs Pillow: pip install 'bptrain\[images\]'$"):
        require_pillow()
    with pytest.raises(ImagesUnavailable):
        image_to_input(b"\x89PNG\r\n\x1a\n")
