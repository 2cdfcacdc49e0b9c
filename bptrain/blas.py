"""Fused "C ← α·AᵀB + β·C" through the BLAS that NumPy itself is linked with.

Why: the SGD update of a layer is W ← W − Aᵀ(ηΔ). NumPy's ``matmul`` cannot
accumulate into its output, so NumPy does it as a GEMM into a scratch matrix
and a subtraction, streaming the weight matrix through memory three times.
BLAS's gemm computes C ← α·AᵀB + β·C in one pass (ger does the rank-one case
of a single-row batch). For the 784x128 first layer of an MNIST network that
is most of a training step at small batch sizes.

How: NumPy wheels bundle OpenBLAS as ``scipy_openblas`` with prefixed CBLAS
symbols; we call its ``cblas_?gemm`` and ``cblas_?ger`` through ctypes. Only
libraries whose integer width is known from the symbol name are used, and a
self-test against NumPy runs before first use. Where none is found (NumPy
built against MKL, Accelerate, a system BLAS, ...) :func:`gemm_at_b` does the
same with NumPy: same result up to float rounding, just slower.
``BPTRAIN_NO_FUSED_BLAS=1`` forces the NumPy path.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# (library file pattern relative to numpy's package dir, symbol prefix, symbol suffix, integer type)
_CANDIDATES = (
    ("../numpy.libs/libscipy_openblas64_*.so*", "scipy_cblas_", "64_", ctypes.c_int64),
    ("../numpy.libs/libscipy_openblas-*.so*", "scipy_cblas_", "", ctypes.c_int32),
    (".dylibs/libscipy_openblas64_*.dylib", "scipy_cblas_", "64_", ctypes.c_int64),
    (".dylibs/libscipy_openblas.dylib", "scipy_cblas_", "", ctypes.c_int32),
)


class _Blas:
    """The gemm and ger functions of one library, for float32 ('s') and float64 ('d')."""

    def __init__(self, library: ctypes.CDLL, prefix: str, suffix: str, integer):
        self.gemm, self.ger, self.scalar = {}, {}, {}
        pointer = ctypes.c_void_p
        for letter, dtype, scalar in (("s", np.float32, ctypes.c_float), ("d", np.float64, ctypes.c_double)):
            gemm = getattr(library, f"{prefix}{letter}gemm{suffix}")
            gemm.restype = None
            gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer, integer, scalar,
                             pointer, integer, pointer, integer, scalar, pointer, integer]
            ger = getattr(library, f"{prefix}{letter}ger{suffix}")
            ger.restype = None
            ger.argtypes = [ctypes.c_int, integer, integer, scalar, pointer, integer, pointer, integer,
                            pointer, integer]
            self.gemm[np.dtype(dtype)], self.ger[np.dtype(dtype)] = gemm, ger


def _find_blas() -> _Blas | None:
    if os.environ.get("BPTRAIN_NO_FUSED_BLAS"):
        return None
    numpy_dir = os.path.dirname(np.__file__)
    for pattern, prefix, suffix, integer in _CANDIDATES:
        for path in sorted(glob.glob(os.path.join(numpy_dir, pattern))):
            try:
                blas = _Blas(ctypes.CDLL(path), prefix, suffix, integer)
            except (OSError, AttributeError):
                continue
            if _self_test(blas):
                return blas
    return None


def _fused(blas, c, a, b, alpha, beta) -> None:
    """C ← alpha·aᵀb + beta·C in place; all C-contiguous, same dtype (checked by the caller)."""
    rows, m = a.shape
    n = b.shape[1]
    if rows == 1 and beta == 1.0:  # rank-one update: C += alpha · a₀ ⊗ b₀
        blas.ger[c.dtype](_ROW_MAJOR, m, n, alpha, a.ctypes.data, 1, b.ctypes.data, 1, c.ctypes.data, n)
    else:
        blas.gemm[c.dtype](_ROW_MAJOR, _TRANS, _NO_TRANS, m, n, rows, alpha, a.ctypes.data, m,
                           b.ctypes.data, n, beta, c.ctypes.data, n)


def _self_test(blas: _Blas) -> bool:
    """Compare with NumPy on small matrices (both code paths, both dtypes) before trusting the library."""
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for rows in (1, 3):
            a = rng.standard_normal((rows, 5)).astype(dtype)
            b = rng.standard_normal((rows, 4)).astype(dtype)
            c = rng.standard_normal((5, 4)).astype(dtype)
            expected = -0.5 * (a.T @ b) + c
            _fused(blas, c, a, b, -0.5, 1.0)
            if not np.allclose(c, expected, rtol=1e-4, atol=1e-5):
                return False
    return True


_BLAS = _find_blas()


def available() -> bool:
    """Whether the fused BLAS path is in use (else the NumPy fallback)."""
    return _BLAS is not None


#: Below this many elements in C the NumPy path is faster: a ctypes call and
#: the three array addresses it needs cost ~15 µs, a small NumPy update ~5 µs.
FUSED_MIN_SIZE = 16384


def gemm_at_b(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float,
              scratch: np.ndarray) -> np.ndarray:
    """C ← alpha·aᵀb + beta·C, in place. ``scratch`` (shaped like C) is used only by the NumPy path.

    a: (rows, m), b: (rows, n), C: (m, n).
    """
    if (_BLAS is not None and c.size >= FUSED_MIN_SIZE and c.dtype in _BLAS.gemm and a.dtype == b.dtype == c.dtype
            and c.flags.c_contiguous and a.flags.c_contiguous and b.flags.c_contiguous):
        _fused(_BLAS, c, a, b, alpha, beta)
        return c
    if len(a) == 1:  # NumPy's matmul takes a slow non-BLAS loop for (m, 1) @ (1, n)
        np.multiply(a.T, b, out=scratch)
    else:
        np.matmul(a.T, b, out=scratch)
    if beta != 1.0:
        c *= beta
    if alpha == -1.0:
        c -= scratch
    else:
        if alpha != 1.0:
            scratch *= alpha
        c += scratch
    return c
