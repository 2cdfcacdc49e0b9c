"""The update C ← α·AᵀB + β·C, with a one-pass BLAS path for one-row batches.

Why: the SGD update of a layer is W ← W − Aᵀ(ηΔ). NumPy's ``matmul`` cannot
accumulate into its output, so NumPy does it as a product into a scratch
matrix and a subtraction, streaming the weight matrix through memory three
times. For a one-row batch (batch size 1) the product is an outer product,
and BLAS's ger adds it into C in one pass: on the 784x128 first layer of an
MNIST network that is the biggest single cost of a step, and ger saves ~40%
of it. (A fused gemm for 10-row batches measured no faster than NumPy here,
so every other case uses NumPy.)

How: NumPy wheels bundle OpenBLAS as ``scipy_openblas`` with prefixed CBLAS
symbols; we call its ``cblas_?ger`` through ctypes. Only libraries whose
integer width is known from the symbol name are used, and a self-test against
NumPy runs before first use. Where none is found (NumPy built against MKL,
Accelerate, a system BLAS, ...) :func:`gemm_at_b` does the same with NumPy:
same result up to float rounding, just slower. ``BPTRAIN_NO_FUSED_BLAS=1``
forces the NumPy path.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_ROW_MAJOR = 101

# (library file pattern relative to numpy's package dir, symbol prefix, symbol suffix, integer type)
_CANDIDATES = (
    ("../numpy.libs/libscipy_openblas64_*.so*", "scipy_cblas_", "64_", ctypes.c_int64),
    ("../numpy.libs/libscipy_openblas-*.so*", "scipy_cblas_", "", ctypes.c_int32),
    (".dylibs/libscipy_openblas64_*.dylib", "scipy_cblas_", "64_", ctypes.c_int64),
    (".dylibs/libscipy_openblas.dylib", "scipy_cblas_", "", ctypes.c_int32),
)

#: Below this many elements in C the NumPy path is faster: a ctypes call and
#: the three array addresses it needs cost ~15 µs, a small NumPy update ~5 µs.
FUSED_MIN_SIZE = 16384


def _load_ger(library: ctypes.CDLL, prefix: str, suffix: str, integer) -> dict:
    """cblas_sger and cblas_dger of ``library``, keyed by the NumPy dtype they work on."""
    functions = {}
    for letter, dtype, scalar in (("s", np.float32, ctypes.c_float), ("d", np.float64, ctypes.c_double)):
        ger = getattr(library, f"{prefix}{letter}ger{suffix}")
        ger.restype = None
        ger.argtypes = [ctypes.c_int, integer, integer, scalar, ctypes.c_void_p, integer, ctypes.c_void_p,
                        integer, ctypes.c_void_p, integer]
        functions[np.dtype(dtype)] = ger
    return functions


def _ger(functions, c, a, b, alpha) -> None:
    """C += alpha · a₀ ⊗ b₀ for one-row a (1, m) and b (1, n); C (m, n). All C-contiguous, one dtype."""
    m, n = c.shape
    functions[c.dtype](_ROW_MAJOR, m, n, alpha, _address(a), 1, _address(b), 1, _address(c), n)


def _address(array: np.ndarray) -> int:
    """Where ``array``'s data starts. ``ndarray.ctypes.data`` builds a helper object (3 µs);
    taking the address of a ctypes view of the buffer costs a third of that."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    except (TypeError, ValueError):  # read-only or empty buffers
        return array.ctypes.data


def _self_test(functions) -> bool:
    """Compare with NumPy on a small matrix in both dtypes before trusting the library."""
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a = rng.standard_normal((1, 5)).astype(dtype)
        b = rng.standard_normal((1, 4)).astype(dtype)
        c = rng.standard_normal((5, 4)).astype(dtype)
        expected = -0.5 * (a.T @ b) + c
        _ger(functions, c, a, b, -0.5)
        if not np.allclose(c, expected, rtol=1e-4, atol=1e-5):
            return False
    return True


def _find_ger():
    if os.environ.get("BPTRAIN_NO_FUSED_BLAS"):
        return None
    numpy_dir = os.path.dirname(np.__file__)
    for pattern, prefix, suffix, integer in _CANDIDATES:
        for path in sorted(glob.glob(os.path.join(numpy_dir, pattern))):
            try:
                functions = _load_ger(ctypes.CDLL(path), prefix, suffix, integer)
            except (OSError, AttributeError):
                continue
            if _self_test(functions):
                return functions
    return None


_GER = _find_ger()


def available() -> bool:
    """Whether the one-pass BLAS path is in use (else NumPy does every update)."""
    return _GER is not None


def gemm_at_b(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float,
              scratch: np.ndarray) -> np.ndarray:
    """C ← alpha·aᵀb + beta·C, in place. ``scratch`` (shaped like C) is used only by the NumPy path.

    a: (rows, m), b: (rows, n), C: (m, n).
    """
    if (_GER is not None and len(a) == 1 and c.size >= FUSED_MIN_SIZE and c.dtype in _GER
            and a.dtype == b.dtype == c.dtype and c.flags.c_contiguous and a.flags.c_contiguous
            and b.flags.c_contiguous):
        if beta != 1.0:
            c *= beta
        _ger(_GER, c, a, b, alpha)
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
