"""The recipe unpickler rebuilds numpy arrays itself and refuses anything else, numpy's setstate included."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from bptrain.data.safe_pickle import PickleFormatError, UnsafePickleError, load_arrays

from conftest import py2_array_opcodes


def load(raw: bytes):
    return load_arrays(io.BytesIO(raw))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8, np.bool_])
def test_python3_pickles_of_every_protocol_round_trip(protocol, dtype):
    original = (np.arange(12).reshape(3, 4).astype(dtype), [np.arange(3)], np.asfortranarray(np.eye(3)))
    loaded = load(pickle.dumps(original, protocol=protocol))
    assert isinstance(loaded, tuple) and isinstance(loaded[1], list)
    for a, b in zip((loaded[0], loaded[1][0], loaded[2]), (original[0], original[1][0], original[2])):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
        assert not a.flags.writeable  # a view of the file's bytes, not a copy


def test_python2_style_array():
    array = np.linspace(0, 1, 10, dtype=np.float32).reshape(2, 5)
    raw = pickle.PROTO + b"\x02" + py2_array_opcodes(array) + pickle.STOP
    np.testing.assert_array_equal(load(raw), array)


def test_object_arrays_are_refused():
    with pytest.raises(PickleFormatError, match="only bools, integers and floats"):
        load(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))


def test_reconstruct_of_another_class_is_refused():
    raw = (pickle.PROTO + b"\x02" + pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n"
           + pickle.GLOBAL + b"_codecs\nencode\n" + pickle.BININT1 + b"\x00" + pickle.TUPLE1
           + pickle.SHORT_BINSTRING + b"\x01b" + pickle.TUPLE3 + pickle.REDUCE + pickle.STOP)
    with pytest.raises(UnsafePickleError, match="only build numpy arrays"):
        load(raw)


def test_codecs_encode_only_for_latin1():
    raw = (pickle.PROTO + b"\x02" + pickle.GLOBAL + b"_codecs\nencode\n" + pickle.SHORT_BINSTRING + b"\x02hi"
           + pickle.SHORT_BINSTRING + b"\x06base64" + pickle.TUPLE2 + pickle.REDUCE + pickle.STOP)
    with pytest.raises(UnsafePickleError, match="latin-1"):
        load(raw)


def test_data_length_must_match_the_shape():
    raw = bytearray(pickle.dumps(np.zeros(4, np.float32), protocol=2))
    with pytest.raises(PickleFormatError):
        load(bytes(raw).replace(b"K\x04\x85", b"K\x05\x85", 1))  # claim 5 elements for 4 elements' bytes


def test_numpy_dtypes_stay_intact_after_hostile_dtype_states():
    """A BUILD with a garbage dtype state is refused and numpy's shared float32 is untouched."""
    raw = (pickle.PROTO + b"\x02" + pickle.GLOBAL + b"numpy\ndtype\n" + pickle.SHORT_BINSTRING + b"\x02f4"
           + pickle.TUPLE1 + pickle.REDUCE + pickle.MARK + pickle.BININT1 + b"\x03" + pickle.BININT1 + b"\x07"
           + pickle.TUPLE + pickle.BUILD + pickle.STOP)
    with pytest.raises(PickleFormatError, match="dtype state"):
        load(raw)
    assert np.zeros(3, np.float32).sum() == 0
