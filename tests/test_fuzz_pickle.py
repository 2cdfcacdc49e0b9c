"""Property tests: whatever bytes sit in a data file, loading ends in a data set or our own DataError.

A hostile or damaged download must never crash the loader with a stray exception (or run code):
random bytes, random truncations of a valid file, and single flipped bytes in the pickle stream.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bptrain.core.errors import DataError
from bptrain.data.loader import load_dataset

from conftest import make_blobs, py2_pickle_bytes

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def valid_pickle() -> bytes:
    """The uncompressed Python 2 style pickle of a tiny data set."""
    splits = make_blobs(n_train=12, n_validation=4, n_test=4, n_features=6)
    return py2_pickle_bytes(splits)


def load_bytes(tmp_path, raw: bytes, name: str = "data.pkl.gz"):
    path = tmp_path / name
    path.write_bytes(raw)
    try:
        return load_dataset(path)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


@FUZZ
@given(raw=st.binary(max_size=400))
def test_random_bytes(tmp_path, raw):
    load_bytes(tmp_path, raw)


@FUZZ
@given(raw=st.binary(max_size=400))
def test_gzip_of_random_bytes(tmp_path, raw):
    load_bytes(tmp_path, gzip.compress(raw))


@FUZZ
@given(fraction=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_truncated_compressed_file(tmp_path, valid_pickle, fraction):
    compressed = gzip.compress(valid_pickle)
    assert load_bytes(tmp_path, compressed[: int(len(compressed) * fraction)]) is None


@FUZZ
@given(fraction=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_truncated_pickle_stream(tmp_path, valid_pickle, fraction):
    assert load_bytes(tmp_path, gzip.compress(valid_pickle[: int(len(valid_pickle) * fraction)])) is None


@FUZZ
@given(data=st.data())
def test_flipped_byte_in_pickle_stream(tmp_path, valid_pickle, data):
    position = data.draw(st.integers(0, len(valid_pickle) - 1))
    value = data.draw(st.integers(0, 255))
    damaged = bytearray(valid_pickle)
    damaged[position] = value
    dataset = load_bytes(tmp_path, gzip.compress(bytes(damaged)))
    if dataset is not None:  # a flip inside the pixel bytes can still be a valid data set
        assert dataset.train.x.dtype == np.float32 and np.isfinite(dataset.train.x).all()
