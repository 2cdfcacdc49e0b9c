"""Read pickles of numpy arrays without letting the file run anything, numpy's own code included.

``pickle.load`` calls whatever the file names, so a downloaded ``mnist.pkl.gz``
could name ``os.system``. A restricted ``find_class`` that admits only numpy's
array reconstruction stops that, but still hands numpy's ``__setstate__`` of
dtypes and arrays whatever state the file holds; fuzzing showed a bad state can
leave a broken float32 dtype behind. So the names a numpy pickle uses are
answered here by small recipe objects that record the state the file gives,
check it, and are turned into arrays with ``np.frombuffer`` after loading.

Understood layouts (everything numpy has written): Python 2 cPickle and Python 3
protocols 2-4 (``_reconstruct`` + ``BUILD`` with the raw bytes), protocol 5
(``_frombuffer``), raw bytes as a Python 2 ``str`` (read as latin-1) or via
``_codecs.encode(text, "latin1")``.
"""

from __future__ import annotations

import codecs
import io
import math
import pickle

import numpy as np

#: Element types a data file may hold: booleans, integers and floats.
_ALLOWED_TYPES = frozenset(f"{kind}{size}" for kind, sizes in (("b", "1"), ("i", "1248"), ("u", "1248"), ("f", "248"))
                           for size in sizes)


class UnsafePickleError(Exception):
    """The pickle names something other than numpy array reconstruction: refused unrun."""


class PickleFormatError(Exception):
    """The pickle's arrays are malformed or of a kind a data file never holds."""


class _DtypeRecipe:
    """Stands for ``numpy.dtype(code, align, copy)`` until its byte order arrives by BUILD."""

    def __init__(self, code, align=False, copy=True):
        if not isinstance(code, str) or code not in _ALLOWED_TYPES:
            raise PickleFormatError(f"unsupported element type {code!r} (only bools, integers and floats)")
        self.code = code
        self.byte_order = "|" if code.endswith("1") else "<"

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise PickleFormatError("malformed dtype state")
        self.byte_order = state[1]

    def dtype(self) -> np.dtype:
        order = "<" if self.byte_order in ("|", "=") else self.byte_order
        return np.dtype(order + self.code)


class _ArrayRecipe:
    """Stands for an ndarray rebuilt by ``_reconstruct(ndarray, (0,), b'b')`` and then BUILD."""

    def __init__(self, array=None):
        self.array = array

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise PickleFormatError("malformed array state")
        shape, dtype, fortran, data = state[-4:]
        self.array = _array_from_bytes(data, dtype, shape, "F" if fortran else "C")


def _array_from_bytes(data, dtype, shape, order) -> np.ndarray:
    if isinstance(data, str):  # a Python 2 str, decoded as latin-1 by the unpickler
        data = data.encode("latin1")
    if isinstance(data, (bytearray, pickle.PickleBuffer)):
        data = bytes(data)
    if not isinstance(data, bytes) or not isinstance(dtype, _DtypeRecipe):
        raise PickleFormatError("malformed array state")
    if (not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape)
            or order not in ("C", "F")):
        raise PickleFormatError(f"malformed array shape {shape!r}")
    element = dtype.dtype()
    if len(data) != math.prod(shape) * element.itemsize:
        raise PickleFormatError(f"an array of shape {shape} and type {element} needs "
                                f"{math.prod(shape) * element.itemsize} bytes, the file holds {len(data)}")
    # read-only view of the file's bytes: no copy of a 157 MB array
    return np.frombuffer(data, dtype=element).reshape(shape, order=order)


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise UnsafePickleError("_reconstruct may only build numpy arrays")
    return _ArrayRecipe()


def _frombuffer(buffer, dtype, shape, order):
    return _ArrayRecipe(_array_from_bytes(buffer, dtype, shape, order))


def _encode(text, encoding="utf-8"):
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError("_codecs.encode may only turn latin-1 text back into bytes")
    return text.encode("latin1")


_NDARRAY = object()  # what the file's reference to numpy.ndarray becomes

_NAMES = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeRecipe,
    ("_codecs", "encode"): _encode,
}


class _RecipeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _NAMES[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"the pickle names {module}.{name}, which a data file never needs "
                                    "(only numpy arrays are allowed; the file may be malicious)") from None


def load_arrays(stream: io.BufferedIOBase):
    """Unpickle ``stream``; numpy arrays come back as read-only arrays, tuples and lists as they were."""
    return _materialize(_RecipeUnpickler(stream, encoding="latin1").load())


def _materialize(obj):
    if isinstance(obj, _ArrayRecipe):
        if obj.array is None:
            raise PickleFormatError("an array in the pickle has no data")
        return obj.array
    if isinstance(obj, (tuple, list)):
        return type(obj)(_materialize(item) for item in obj)
    return obj
