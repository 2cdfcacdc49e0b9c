"""Arrays that start on a cache line.

NumPy puts a large array 16 bytes into a page (glibc's mmap header), so with AVX-512 every 64-byte
load or store of the BLAS kernels and ufuncs would straddle two cache lines. The fast engine's
buffers start on cache lines instead (benchmarks/README.md).
"""

from __future__ import annotations

import numpy as np

#: Bytes in a cache line, and in one AVX-512 load or store.
CACHE_LINE = 64


def aligned_empty(shape, dtype, order: str = "C") -> np.ndarray:
    """An uninitialised array whose first element starts a cache line (see CACHE_LINE)."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + CACHE_LINE, np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + nbytes].view(dtype).reshape(shape, order=order)


def aligned_zeros(shape, dtype, order: str = "C") -> np.ndarray:
    """:func:`aligned_empty`, filled with zeros."""
    array = aligned_empty(shape, dtype, order)
    array.fill(0)
    return array


def aligned_copy(array, dtype) -> np.ndarray:
    """A C-contiguous, cache-line-aligned copy of ``array`` as ``dtype``."""
    array = np.asarray(array)
    copy = aligned_empty(array.shape, dtype)
    copy[...] = array
    return copy
