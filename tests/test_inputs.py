"""Reading images for `bptrain predict`: every accepted form gives float32 (N, 784) in [0, 1];
everything else is one clear DataError."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from bptrain.core.errors import DataError
from bptrain.app.inputs import images_from_array, read_images

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8)  # three 28x28 "digits"
EXPECTED = PIXELS.reshape(3, 784).astype(np.float32) / np.float32(255)


def save(tmp_path: Path, array, name: str = "x.npy") -> Path:
    path = tmp_path / name
    np.save(path, array, allow_pickle=True)
    return path


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """IDX encoding: 0, 0, type code, ndim, big-endian uint32 dims, then the raw bytes."""
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def check(images: np.ndarray, expected: np.ndarray = EXPECTED) -> None:
    assert images.dtype == np.float32
    assert images.flags.c_contiguous
    assert images.shape == expected.shape
    assert images.min() >= 0 and images.max() <= 1
    np.testing.assert_array_equal(images, expected)


# ------------------------------------------------------------- accepted forms
def test_uint8_rows(tmp_path):
    check(read_images(save(tmp_path, PIXELS.reshape(3, 784))))


def test_uint8_images_3d(tmp_path):
    check(read_images(save(tmp_path, PIXELS)))


def test_uint8_255_is_exactly_one(tmp_path):
    images = read_images(save(tmp_path, np.array([[0, 255] * 392], dtype=np.uint8)))
    assert images[0, 0] == 0.0 and images[0, 1] == 1.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f8"])
def test_float_images(tmp_path, dtype):
    floats = EXPECTED.astype(dtype)
    check(read_images(save(tmp_path, floats)), floats.astype(np.float32))
    check(read_images(save(tmp_path, floats.reshape(3, 28, 28))), floats.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.int64, np.int16, np.uint16, np.int8, ">i4"])
def test_other_integer_dtypes_within_0_255_are_pixels(tmp_path, dtype):
    values = PIXELS.astype(np.int64)
    if np.dtype(dtype) == np.int8:
        values = values // 2  # int8 holds at most 127
    check(read_images(save(tmp_path, values.astype(dtype))),
          values.reshape(3, 784).astype(np.float32) / np.float32(255))


@pytest.mark.parametrize("shape", [(784,), (28, 28), (1, 784), (1, 28, 28), (784, 1)])
def test_single_image(tmp_path, shape):
    check(read_images(save(tmp_path, PIXELS[0].reshape(shape))), EXPECTED[:1])


def test_28_rows_of_width_784_is_28_images(tmp_path):
    array = RNG.integers(0, 256, (28, 784), dtype=np.uint8)
    assert read_images(save(tmp_path, array)).shape == (28, 784)


def test_other_model_width(tmp_path):
    array = RNG.random((5, 10, 10))
    assert read_images(save(tmp_path, array), expected_width=100).shape == (5, 100)
    assert read_images(save(tmp_path, array[0]), expected_width=100).shape == (1, 100)


def test_no_expected_width_reads_2d_as_rows(tmp_path):
    assert read_images(save(tmp_path, EXPECTED[:, :100]), expected_width=None).shape == (3, 100)


def test_name_does_not_matter(tmp_path):
    check(read_images(save(tmp_path, PIXELS, name="digits.bin.npy").rename(tmp_path / "digits.dat")))


@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz", "images.gz"])
def test_idx_images(tmp_path, name):
    data = idx_bytes(PIXELS)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    check(read_images(path))


def test_images_from_array():
    check(images_from_array(PIXELS))


# ---------------------------------------------------------------------- errors
def error(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_images(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_wrong_width(tmp_path):
    path = save(tmp_path, RNG.random((4, 100)))
    assert error(path) == f"{path} has 100 features per image but the model expects 784"


def test_wrong_image_size_3d(tmp_path):
    message = error(save(tmp_path, RNG.random((4, 20, 20))))
    assert "20x20 images (400 features per image) but the model expects 784" in message


def test_wrong_width_idx(tmp_path):
    path = tmp_path / "small-idx3-ubyte"
    path.write_bytes(idx_bytes(PIXELS[:, :10, :10]))
    assert "100 features per image" in error(path) and "expects 784" in error(path)


def test_floats_above_one(tmp_path):
    message = error(save(tmp_path, EXPECTED * 255))
    assert "from 0 to 255" in message and "[0, 1]" in message and "divide 0-255 data by 255" in message


def test_negative_floats(tmp_path):
    message = error(save(tmp_path, EXPECTED - 0.5))
    assert "from -0.5" in message and "[0, 1]" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_floats(tmp_path, bad):
    array = EXPECTED.copy()
    array[2, 7] = bad
    assert "NaN or infinite" in error(save(tmp_path, array)) and "image 2" in error(save(tmp_path, array))


def test_integers_out_of_range(tmp_path):
    array = PIXELS.astype(np.int32)
    array[0, 0, 0] = 300
    array[1, 0, 0] = -2
    message = error(save(tmp_path, array))
    assert "from -2 to 300" in message and "0..255" in message


def test_object_array_needing_pickle(tmp_path):
    path = save(tmp_path, np.array([PIXELS[0], "not a digit"], dtype=object))
    message = error(path)
    assert "pickle" in message and "refuses" in message


@pytest.mark.parametrize("array", [
    np.ones((2, 784), dtype=bool),
    np.ones((2, 784), dtype=np.complex64),
    np.array([["0"] * 784]),
    np.zeros(2, dtype=[("pixels", "u1", (784,))]),
    np.zeros((2, 784), dtype="datetime64[s]"),
])
def test_bad_dtypes(tmp_path, array):
    message = error(save(tmp_path, array))
    assert "dtype" in message and "uint8" in message


@pytest.mark.parametrize("shape", [(), (2, 1, 28, 28), (0, 784), (0, 28, 28)])
def test_bad_shapes(tmp_path, shape):
    message = error(save(tmp_path, np.zeros(shape, dtype=np.uint8)))
    assert "shape" in message


def test_missing_file(tmp_path):
    assert error(tmp_path / "nope.npy") == f"no input file at {tmp_path / 'nope.npy'}"


def test_directory(tmp_path):
    assert "is a directory" in error(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.npy"
    path.write_bytes(b"")
    assert "is empty" in error(path)


@pytest.mark.parametrize("content", [b"hello, these are not images\n", b"\x89PNG\r\n\x1a\n" + bytes(40),
                                     b"PK\x03\x04" + bytes(40)])
def test_not_npy_garbage(tmp_path, content):
    path = tmp_path / "digits.npy"
    path.write_bytes(content)
    assert "neither a .npy array nor an IDX image file" in error(path)


def test_truncated_npy(tmp_path):
    path = save(tmp_path, PIXELS)
    path.write_bytes(path.read_bytes()[:300])
    assert "truncated or corrupt: its header claims" in error(path)


def test_gzip_of_something_else(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"just text"))
    assert "gzip-compressed but does not hold an IDX image file" in error(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(PIXELS))[:40])
    assert "truncated or corrupt" in error(path)


def test_idx_labels_file_is_not_images(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.arange(10, dtype=np.uint8)))
    assert "dimensions" in error(path)


def test_truncated_idx(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(idx_bytes(PIXELS)[:-5])
    assert "truncated" in error(path)


def test_npy_header_claiming_400_gb_is_a_corrupt_file_not_out_of_memory(tmp_path, monkeypatch):
    path = tmp_path / "digits.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (100000, 1000000)})
        handle.write(bytes(1000))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load was called: it would allocate 400 GB"))
    assert error(path) == (f"{path} is truncated or corrupt: its header claims 400.0 GB "
                           f"(shape (100000, 1000000) float32) but the file holds 1.1 KB")


def test_a_complete_npy_too_big_for_memory_is_called_that(tmp_path, monkeypatch):
    path = save(tmp_path, PIXELS)
    monkeypatch.setattr(np, "load", lambda *a, **k: (_ for _ in ()).throw(MemoryError("Unable to allocate")))
    assert "does not fit in memory; split the images into smaller files" in error(path)
