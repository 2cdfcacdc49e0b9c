"""Reading MNIST IDX files: good files load exactly, bad ones give one clear DataError."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bptrain.core.errors import DataError
from bptrain.data.idx import load_idx_directory, read_idx
from bptrain.data.loader import load_dataset

from conftest import one_line_error

N_TRAIN, N_TEST, ROWS, COLS = 70, 20, 28, 28


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: 0, 0, type 0x08, ndim, big-endian dims, raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_arrays(seed: int = 0, n_train: int = N_TRAIN, n_test: int = N_TEST):
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, ROWS, COLS), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, ROWS, COLS), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_idx_dir(directory: Path, arrays: dict, gz: bool = True) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    return {name: write_file(directory / (name + suffix), idx_bytes(array)) for name, array in arrays.items()}


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_loads_shapes_dtypes_scaling_and_split(tmp_path, gz):
    arrays = make_arrays()
    write_idx_dir(tmp_path, arrays, gz=gz)

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_idx_directory(tmp_path)

    n_val = N_TRAIN // 6
    assert x_train.shape == (N_TRAIN - n_val, ROWS * COLS)
    assert x_val.shape == (n_val, ROWS * COLS)
    assert x_test.shape == (N_TEST, ROWS * COLS)
    for x, y in [(x_train, y_train), (x_val, y_val), (x_test, y_test)]:
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.flags.c_contiguous
        assert 0.0 <= x.min() and x.max() <= 1.0
    train_pixels = arrays["train-images-idx3-ubyte"].reshape(N_TRAIN, -1)
    train_labels = arrays["train-labels-idx1-ubyte"]
    np.testing.assert_array_equal(np.rint(x_train * 255), train_pixels[: N_TRAIN - n_val])
    np.testing.assert_array_equal(np.rint(x_val * 255), train_pixels[N_TRAIN - n_val :])
    np.testing.assert_array_equal(y_train, train_labels[: N_TRAIN - n_val])
    np.testing.assert_array_equal(y_val, train_labels[N_TRAIN - n_val :])
    np.testing.assert_array_equal(np.rint(x_test * 255), arrays["t10k-images-idx3-ubyte"].reshape(N_TEST, -1))
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])


def test_pixel_255_is_exactly_one(tmp_path):
    arrays = make_arrays()
    arrays["train-images-idx3-ubyte"][:] = 255
    write_idx_dir(tmp_path, arrays)
    (x_train, _), _, _ = load_idx_directory(tmp_path)
    assert (x_train == 1.0).all()


def test_loader_accepts_idx_directory(tmp_path):
    write_idx_dir(tmp_path, make_arrays(), gz=False)
    dataset = load_dataset(tmp_path)
    assert dataset.n_features == ROWS * COLS
    assert len(dataset.train.x) + len(dataset.validation.x) == N_TRAIN


def test_large_training_file_holds_out_the_last_sixth(tmp_path):
    arrays = make_arrays(n_train=60_000, n_test=5)
    arrays["train-images-idx3-ubyte"] = arrays["train-images-idx3-ubyte"][:, :2, :2].copy()
    arrays["t10k-images-idx3-ubyte"] = arrays["t10k-images-idx3-ubyte"][:, :2, :2].copy()
    write_idx_dir(tmp_path, arrays, gz=False)
    (x_train, _), (x_val, _), _ = load_idx_directory(tmp_path)
    assert len(x_train) == 50_000 and len(x_val) == 10_000  # MNIST's split


def test_mixed_plain_and_gzipped_files(tmp_path):
    arrays = make_arrays()
    write_idx_dir(tmp_path, arrays, gz=True)
    plain = tmp_path / "t10k-labels-idx1-ubyte"
    plain.write_bytes(idx_bytes(arrays["t10k-labels-idx1-ubyte"]))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    _, _, (_, y_test) = load_idx_directory(tmp_path)
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])


# --- bad input: each gives a DataError whose message says what is wrong --------------------------


def load_error(directory: Path) -> str:
    return one_line_error(DataError, load_idx_directory, directory)


def test_missing_files_are_named(tmp_path):
    paths = write_idx_dir(tmp_path, make_arrays())
    paths["train-labels-idx1-ubyte"].unlink()
    paths["t10k-images-idx3-ubyte"].unlink()
    message = load_error(tmp_path)
    assert "train-labels-idx1-ubyte" in message and "t10k-images-idx3-ubyte" in message
    assert str(tmp_path) in message
    assert "train-images-idx3-ubyte[" not in message  # present files are not reported missing


def test_wrong_magic(tmp_path):
    paths = write_idx_dir(tmp_path, make_arrays(), gz=False)
    data = bytearray(paths["train-images-idx3-ubyte"].read_bytes())
    data[0:2] = b"PK"
    paths["train-images-idx3-ubyte"].write_bytes(bytes(data))
    message = load_error(tmp_path)
    assert "train-images-idx3-ubyte" in message and "not an IDX file" in message


def test_unsupported_type_code(tmp_path):
    paths = write_idx_dir(tmp_path, make_arrays(), gz=False)
    data = bytearray(paths["t10k-labels-idx1-ubyte"].read_bytes())
    data[2] = 0x0D
    paths["t10k-labels-idx1-ubyte"].write_bytes(bytes(data))
    message = load_error(tmp_path)
    assert "0x0D" in message and "only unsigned byte" in message


def test_images_file_with_two_dimensions(tmp_path):
    arrays = make_arrays()
    arrays["train-images-idx3-ubyte"] = arrays["train-images-idx3-ubyte"].reshape(N_TRAIN, ROWS * COLS)
    write_idx_dir(tmp_path, arrays)
    message = load_error(tmp_path)
    assert "train-images-idx3-ubyte" in message and "2 dimensions" in message and "0x00000803" in message


def test_labels_and_images_swapped(tmp_path):
    arrays = make_arrays()
    arrays["t10k-labels-idx1-ubyte"], arrays["t10k-images-idx3-ubyte"] = (
        arrays["t10k-images-idx3-ubyte"],
        arrays["t10k-labels-idx1-ubyte"],
    )
    write_idx_dir(tmp_path, arrays)
    assert "dimensions" in load_error(tmp_path)


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_truncated_body(tmp_path, gz):
    paths = write_idx_dir(tmp_path, make_arrays(), gz=gz)
    path = paths["train-images-idx3-ubyte"]
    data = idx_bytes(make_arrays()["train-images-idx3-ubyte"])
    write_file(path, data[:-100])
    message = load_error(tmp_path)
    expected = N_TRAIN * ROWS * COLS
    assert "truncated" in message and f"{expected:,}" in message and f"{expected - 100:,}" in message


def test_overlong_body(tmp_path):
    arrays = make_arrays()
    paths = write_idx_dir(tmp_path, arrays)
    write_file(paths["t10k-labels-idx1-ubyte"], idx_bytes(arrays["t10k-labels-idx1-ubyte"]) + b"\x00" * 7)
    message = load_error(tmp_path)
    assert "too long" in message and f"{N_TEST}" in message and f"{N_TEST + 7}" in message


def test_truncated_header(tmp_path):
    paths = write_idx_dir(tmp_path, make_arrays(), gz=False)
    paths["train-labels-idx1-ubyte"].write_bytes(b"\x00\x00\x08\x01\x00\x00")
    assert "header" in load_error(tmp_path)


def test_absurd_dimensions_rejected_before_reading(tmp_path):
    paths = write_idx_dir(tmp_path, make_arrays(), gz=False)
    paths["train-images-idx3-ubyte"].write_bytes(struct.pack(">BBBB3I", 0, 0, 8, 3, 4_000_000_000, 280, 280))
    assert "header is corrupt" in load_error(tmp_path)


def test_count_mismatch_between_images_and_labels(tmp_path):
    arrays = make_arrays()
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:-3]
    write_idx_dir(tmp_path, arrays)
    message = load_error(tmp_path)
    assert f"{N_TRAIN} images" in message and f"{N_TRAIN - 3} labels" in message


def test_label_out_of_range(tmp_path):
    arrays = make_arrays()
    arrays["t10k-labels-idx1-ubyte"][3] = 42
    write_idx_dir(tmp_path, arrays)
    message = one_line_error(DataError, load_dataset, tmp_path)
    assert "test split has label 42, outside the training data's classes 0..9" in message


def test_image_sizes_differ_between_train_and_test(tmp_path):
    arrays = make_arrays()
    arrays["t10k-images-idx3-ubyte"] = arrays["t10k-images-idx3-ubyte"][:, :20, :20].copy()
    write_idx_dir(tmp_path, arrays)
    assert "do not belong together" in load_error(tmp_path)


def test_truncated_gzip(tmp_path):
    paths = write_idx_dir(tmp_path, make_arrays())
    path = paths["train-images-idx3-ubyte"]
    path.write_bytes(path.read_bytes()[:-500])
    message = load_error(tmp_path)
    assert "train-images-idx3-ubyte.gz" in message and "gzip" in message


def test_corrupt_gzip_checksum(tmp_path):
    paths = write_idx_dir(tmp_path, make_arrays())
    path = paths["t10k-labels-idx1-ubyte"]
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC32 trailer
    path.write_bytes(bytes(data))
    assert "gzip" in load_error(tmp_path)


def test_gz_name_but_not_gzip(tmp_path):
    arrays = make_arrays()
    paths = write_idx_dir(tmp_path, arrays)
    paths["train-labels-idx1-ubyte"].write_bytes(idx_bytes(arrays["train-labels-idx1-ubyte"]))
    message = load_error(tmp_path)
    assert "train-labels-idx1-ubyte.gz" in message and "not gzip" in message


def test_gzipped_content_without_gz_name_is_read(tmp_path):
    labels = make_arrays()["t10k-labels-idx1-ubyte"]
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(path, expected_ndim=1), labels)


def test_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_idx_directory(tmp_path / "nowhere")


def test_unreadable_file(tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root can read files without read permission")
    paths = write_idx_dir(tmp_path, make_arrays())
    paths["t10k-images-idx3-ubyte"].chmod(0)
    assert "cannot read" in load_error(tmp_path)


def test_directory_in_place_of_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path)


# --- any byte string: a clean load or a DataError, never another exception -----------------------

VALID_LABELS = idx_bytes(np.arange(30, dtype=np.uint8) % 10)
VALID_IMAGES = idx_bytes(np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))


QUICK = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(max_examples=100, **QUICK)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.integers(0, len(VALID_IMAGES)).map(lambda n: VALID_IMAGES[:n]),
        st.integers(0, len(VALID_LABELS)).map(lambda n: VALID_LABELS[:n]),
        st.binary(min_size=1, max_size=8).map(lambda tail: VALID_LABELS[:4] + tail),
    ),
    gzipped=st.booleans(),
    cut=st.integers(0, 40),
    expected_ndim=st.sampled_from([None, 1, 3]),
)
def test_arbitrary_bytes_load_cleanly_or_raise_data_error(tmp_path, data, gzipped, cut, expected_ndim):
    path = tmp_path / ("arbitrary.gz" if gzipped else "arbitrary")
    content = gzip.compress(data) if gzipped else data
    if gzipped and cut:
        content = content[:-cut]  # a gzip stream cut off somewhere
    path.write_bytes(content)
    try:
        array = read_idx(path, expected_ndim=expected_ndim)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert array.dtype == np.uint8
        assert expected_ndim is None or array.ndim == expected_ndim


@settings(max_examples=30, **QUICK)
@given(name=st.sampled_from(sorted(make_arrays())), keep=st.floats(0, 1), gz=st.booleans())
def test_truncated_file_in_directory_gives_data_error(tmp_path_factory, name, keep, gz):
    directory = tmp_path_factory.mktemp("idx")
    paths = write_idx_dir(directory, make_arrays(), gz=gz)
    content = paths[name].read_bytes()
    paths[name].write_bytes(content[: int(len(content) * keep * 0.999)])
    with pytest.raises(DataError):
        load_idx_directory(directory)


# --- the real data: IDX and the pickle hold the same digits ---------------------------------------


def shared_data_dir() -> Path:
    from_env = os.environ.get("BPTRAIN_SHARED_DATA")
    if from_env:
        return Path(from_env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def integer_pixels(x: np.ndarray, scale: int) -> np.ndarray:
    """Undo the float scaling block by block, so no full-size float temporary is made."""
    pixels = np.empty(x.shape, dtype=np.uint8)
    for start in range(0, len(x), 5000):
        block = x[start : start + 5000] * np.float32(scale)
        assert np.allclose(block, np.rint(block), atol=1e-3)
        pixels[start : start + 5000] = np.rint(block)
    return pixels


def test_real_idx_files_match_real_pickle():
    """The pickle stores pixel / 256, the IDX loader pixel / 255: both must give back the same bytes.

    Memory-conscious (the budget is 600 MB): only uint8 copies of the pickle's
    splits are kept while the IDX files are loaded.
    """
    shared = shared_data_dir()
    pickle_path, idx_dir = shared / "mnist.pkl.gz", shared / "idx"
    if not (pickle_path.is_file() and idx_dir.is_dir()):
        pytest.skip(f"real MNIST not found at {shared} (needs mnist.pkl.gz and idx/; set BPTRAIN_SHARED_DATA)")
    names = ("train", "validation", "test")

    from_pickle = load_dataset(pickle_path)
    expected = {name: (integer_pixels(from_pickle.split(name).x, 256), from_pickle.split(name).y) for name in names}
    del from_pickle

    from_idx = load_dataset(idx_dir)
    for name in names:
        pixels, labels = expected.pop(name)
        split = from_idx.split(name)
        assert split.x.shape == pixels.shape, name
        np.testing.assert_array_equal(split.y, labels, err_msg=name)
        # count_nonzero, not assert_array_equal: the latter makes ~6 full-size temporaries.
        differing = np.count_nonzero(integer_pixels(split.x, 255) != pixels)
        assert differing == 0, f"{name}: {differing} pixels differ between the pickle and the IDX files"
        del pixels, labels, split
