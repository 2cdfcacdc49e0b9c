"""The updates C ← α·AᵀB + β·C, (x, y) ← H·(x, y) and y ← α·x + β·y in one BLAS call each, or in NumPy.

Why: NumPy's ``matmul`` cannot accumulate into its output, so W ← W − Aᵀ(ηΔ) would stream the weights
three times; gemm (ger for one row) adds the product into C as it forms it. The prepared classes build
their ctypes arguments once. How: NumPy's wheels bundle OpenBLAS as ``scipy_openblas`` with prefixed
CBLAS symbols, called through ctypes after a self-test against NumPy. Without it (MKL, Accelerate, a
system BLAS) or with ``BPTRAIN_NO_FUSED_BLAS=1``, NumPy does the same: equal up to rounding, slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os

import numpy as np

#: CBLAS's constants: row-major storage, an operand as it is, an operand transposed.
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# (library file pattern relative to numpy's package dir, symbol prefix, symbol suffix, integer type)
_CANDIDATES = (
    ("../numpy.libs/libscipy_openblas64_*.so*", "scipy_cblas_", "64_", ctypes.c_int64),
    ("../numpy.libs/libscipy_openblas-*.so*", "scipy_cblas_", "", ctypes.c_int32),
    (".dylibs/libscipy_openblas64_*.dylib", "scipy_cblas_", "64_", ctypes.c_int64),
    (".dylibs/libscipy_openblas.dylib", "scipy_cblas_", "", ctypes.c_int32),
)

#: Below this many elements in C the NumPy path is faster than :func:`gemm_at_b`, which builds its
#: ctypes arguments anew on every call.
FUSED_MIN_SIZE = 16384


class _Routines:
    """cblas ?gemm, ?ger and ?rotm of one library for one float type."""

    def __init__(self, library: ctypes.CDLL, prefix: str, suffix: str, integer, letter: str, scalar):
        self.gemm = _raw(library, f"{prefix}{letter}gemm{suffix}",
                         [ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer, integer, scalar,
                          ctypes.c_void_p, integer, ctypes.c_void_p, integer, scalar, ctypes.c_void_p, integer])
        self.ger = _raw(library, f"{prefix}{letter}ger{suffix}", [ctypes.c_int, integer, integer, scalar,
                        ctypes.c_void_p, integer, ctypes.c_void_p, integer, ctypes.c_void_p, integer])
        # Called with ready-made ctypes arguments only: no argtypes to check on every call.
        self.raw_gemm = _raw(library, f"{prefix}{letter}gemm{suffix}")
        self.raw_rotm = _raw(library, f"{prefix}{letter}rotm{suffix}")
        self.raw_axpby = _raw(library, f"{prefix}{letter}axpby{suffix}")  # OpenBLAS's extension to BLAS
        self.raw_axpy = _raw(library, f"{prefix}{letter}axpy{suffix}")
        self.integer, self.scalar = integer, scalar

    def update(self, c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float) -> None:
        """C ← alpha·aᵀb + beta·C for a (k, m) in C or Fortran order, C-contiguous b (k, n) and C (m, n)."""
        (m, n), k = c.shape, len(a)
        if k == 1:
            _scale(c, beta)
            self.ger(ROW_MAJOR, m, n, alpha, address(a), 1, address(b), 1, address(c), n)
        else:  # aᵀ of a C-ordered a is gemm's "transposed" operand; of a Fortran-ordered one, a plain (m, k) matrix
            transpose, lda = (TRANS, m) if a.flags.c_contiguous else (NO_TRANS, k)
            self.gemm(ROW_MAJOR, transpose, NO_TRANS, m, n, k, alpha, address(a), lda, address(b), n,
                      beta, address(c), n)


def _scale(c: np.ndarray, beta: float) -> None:
    """C ← β·C, as gemm does it: for β = 0 whatever C held (even NaN) is not read."""
    if beta == 0.0:
        c.fill(0)
    elif beta != 1.0:
        c *= beta


def _raw(library: ctypes.CDLL, name: str, argtypes=None):
    """A fresh handle on ``name`` (``library[name]``, unlike ``library.name``, is not cached), checking ``argtypes``."""
    function = library[name]
    function.restype = None
    if argtypes is not None:
        function.argtypes = argtypes
    return function


def address(array: np.ndarray) -> int:
    """Where ``array``'s data starts (cheaper than ``ndarray.ctypes.data``, which builds a helper object)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    except (TypeError, ValueError):  # read-only or empty buffers
        return array.ctypes.data


def _self_test(routines) -> bool:
    """Compare with NumPy in both dtypes (one-row and several-row products, rotm) before trusting the library."""
    rng = np.random.default_rng(0)
    for dtype, functions in routines.items():
        for rows, order in ((1, "C"), (3, "C"), (3, "F")):
            a = np.asarray(rng.standard_normal((rows, 5)), dtype, order=order)
            b = rng.standard_normal((rows, 4)).astype(dtype)
            c = rng.standard_normal((5, 4)).astype(dtype)
            expected = -0.5 * (a.T @ b) + 0.75 * c
            functions.update(c, a, b, -0.5, 0.75)
            if not np.allclose(c, expected, rtol=1e-4, atol=1e-5):
                return False
        x, y = rng.standard_normal((2, 7)).astype(dtype)
        n, one, px, py, scalar = functions.integer(7), functions.integer(1), address(x), address(y), functions.scalar
        expected_x, expected_y = 0.5 * x + 2.0 * y, -1.0 * x + 0.25 * y
        functions.raw_rotm(n, ctypes.c_void_p(px), one, ctypes.c_void_p(py), one,
                           (scalar * 5)(-1.0, 0.5, -1.0, 2.0, 0.25))
        good = np.allclose(x, expected_x, rtol=1e-5) and np.allclose(y, expected_y, rtol=1e-5)
        expected_y = -0.5 * x + 0.75 * y
        functions.raw_axpby(n, scalar(-0.5), ctypes.c_void_p(px), one, scalar(0.75), ctypes.c_void_p(py), one)
        good = good and np.allclose(y, expected_y, rtol=1e-5)
        expected_y = 2.0 * x + y
        functions.raw_axpy(n, scalar(2.0), ctypes.c_void_p(px), one, ctypes.c_void_p(py), one)
        if not (good and np.allclose(y, expected_y, rtol=1e-5)):
            return False
    return True


def _bundled_libraries():
    """(library, symbol prefix, symbol suffix, integer type) of each OpenBLAS bundled with NumPy that loads."""
    numpy_dir = os.path.dirname(np.__file__)
    for pattern, prefix, suffix, integer in _CANDIDATES:
        for path in sorted(glob.glob(os.path.join(numpy_dir, pattern))):
            try:
                yield ctypes.CDLL(path), prefix, suffix, integer
            except OSError:
                continue


def _find_routines():
    if os.environ.get("BPTRAIN_NO_FUSED_BLAS"):
        return None
    for library, prefix, suffix, integer in _bundled_libraries():
        try:  # keyed by the NumPy dtype they work on
            routines = {np.dtype(np.float32): _Routines(library, prefix, suffix, integer, "s", ctypes.c_float),
                        np.dtype(np.float64): _Routines(library, prefix, suffix, integer, "d", ctypes.c_double)}
        except AttributeError:
            continue
        if _self_test(routines):
            return routines
    return None


_ROUTINES = _find_routines()


def routines(dtype):
    """The bundled OpenBLAS's routines for ``dtype`` (their ``raw_gemm``, ``integer`` and ``scalar`` types), or None."""
    return _ROUTINES.get(np.dtype(dtype)) if _ROUTINES is not None else None


def _find_thread_control():
    """OpenBLAS's get/set_num_threads from NumPy's bundled library, or None (other BLAS: left alone)."""
    for library, _prefix, suffix, _integer in _bundled_libraries():
        try:
            get = getattr(library, f"scipy_openblas_get_num_threads{suffix}")
            set_ = getattr(library, f"scipy_openblas_set_num_threads{suffix}")
        except AttributeError:
            continue
        get.restype, get.argtypes = ctypes.c_int, []
        set_.restype, set_.argtypes = None, [ctypes.c_int]
        return get, set_
    return None


_THREADS = _find_thread_control()


@contextlib.contextmanager
def threads_at_most(limit: int | None):
    """Run the block with OpenBLAS using at most ``limit`` threads (None: unchanged), then restore."""
    if limit is None or _THREADS is None:
        yield
        return
    get, set_ = _THREADS
    before = get()
    set_(min(before, limit))
    try:
        yield
    finally:
        set_(before)


def threads() -> int:
    """The threads OpenBLAS splits a product between (with another BLAS: the cores, as most use them all)."""
    if _THREADS is None:
        return os.cpu_count() or 1
    return max(1, _THREADS[0]())


def set_threads(count: int) -> None:
    """Let OpenBLAS split the next products between ``count`` threads (inside :func:`threads_at_most`)."""
    if _THREADS is not None:
        _THREADS[1](count)


def can_set_threads() -> bool:
    """Whether the thread count of NumPy's BLAS can be changed here (the bundled OpenBLAS)."""
    return _THREADS is not None


def available() -> bool:
    """Whether the one-call BLAS path is in use (else NumPy does every update)."""
    return _ROUTINES is not None


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a·b, as ``np.matmul(a, b, out=out)`` at half the call cost: ``ndarray.dot`` calls BLAS directly.
    It writes only C-ordered outputs, so a column-major ``out`` is filled as outᵀ = bᵀaᵀ; anything else it
    refuses goes to ``np.matmul``."""
    try:
        if out.flags.c_contiguous:
            a.dot(b, out)
        elif out.flags.f_contiguous:
            b.T.dot(a.T, out.T)
        else:
            np.matmul(a, b, out=out)
    except ValueError:  # an output dot cannot use (another dtype, say): matmul can
        np.matmul(a, b, out=out)
    return out


def matmul_at_b(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = aᵀb. For a one-row a it is an outer product, which NumPy's matmul
    computes in a slow non-BLAS loop for (m, 1) @ (1, n); a broadcast multiply does not."""
    if len(a) == 1:
        return np.multiply(a.T, b, out=out)
    return matmul_into(a.T, b, out)


def gemm_at_b(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float,
              scratch: np.ndarray) -> np.ndarray:
    """C ← alpha·aᵀb + beta·C in place, for a (rows, m), b (rows, n), C (m, n). ``scratch`` (shaped like C):
    for the NumPy path."""
    routines = _ROUTINES.get(c.dtype) if _ROUTINES is not None and c.size >= FUSED_MIN_SIZE else None
    if (routines is not None and a.dtype == b.dtype == c.dtype and c.flags.c_contiguous
            and (a.flags.c_contiguous or a.flags.f_contiguous) and b.flags.c_contiguous):
        routines.update(c, a, b, alpha, beta)
        return c
    matmul_at_b(a, b, scratch)
    _scale(c, beta)
    _numpy_axpby(scratch, c, alpha, 1.0)
    return c


class PreparedGemmAtB:
    """C ← α·aᵀb + β·C for one fixed C, as :func:`gemm_at_b`, with gemm's arguments built once.

    Converting a ctypes call's 14 arguments costs more than the small layers' whole products. C never
    moves, and a and b are the same workspace arrays step after step, but for the input batch A_0, whose
    address alone is renewed. One-row batches and operands gemm cannot take go through :func:`gemm_at_b`.
    """

    def __init__(self, c: np.ndarray, scratch: np.ndarray):
        self.c, self.scratch = c, scratch
        routines = _ROUTINES.get(c.dtype) if _ROUTINES is not None else None
        self._routines = routines if routines is not None and c.flags.c_contiguous else None
        self._a = self._b = None  # the operands the arguments were built for, kept alive: `is` stays safe
        self._scalars = None      # (alpha, beta) the arguments hold
        self._args = None         # the gemm arguments, or None: gemm_at_b does the update

    def __call__(self, a: np.ndarray, b: np.ndarray, alpha: float, beta: float) -> np.ndarray:
        if a is not self._a or b is not self._b:
            self._prepare(a, b)
        args = self._args
        if args is None:
            return gemm_at_b(self.c, a, b, alpha, beta, self.scratch)
        if (alpha, beta) != self._scalars:
            scalar = self._routines.scalar
            args[6], args[11] = scalar(alpha), scalar(beta)
            self._scalars = alpha, beta
        self._routines.raw_gemm(*args)
        return self.c

    def _prepare(self, a: np.ndarray, b: np.ndarray) -> None:
        previous, previous_b = self._a, self._b
        self._a, self._b = a, b
        if (self._args is not None and b is previous_b and a.shape == previous.shape and a.dtype == previous.dtype
                and a.flags.c_contiguous and previous.flags.c_contiguous):
            self._args[7] = ctypes.c_void_p(address(a))  # the next input batch: only its address is new
            return
        dtype = self.c.dtype
        if (self._routines is None or len(a) < 2 or a.dtype != dtype or b.dtype != dtype
                or not b.flags.c_contiguous or not (a.flags.c_contiguous or a.flags.f_contiguous)):
            self._args = None
            return
        integer = self._routines.integer
        (m, n), k = self.c.shape, len(a)
        # aᵀ of a C-ordered (k, m) a is gemm's "transposed" operand; of a Fortran-ordered one, a plain (m, k) matrix
        transpose, lda = (TRANS, m) if a.flags.c_contiguous else (NO_TRANS, k)
        self._args = [ctypes.c_int(ROW_MAJOR), ctypes.c_int(transpose), ctypes.c_int(NO_TRANS),
                      integer(m), integer(n), integer(k), None, ctypes.c_void_p(address(a)), integer(lda),
                      ctypes.c_void_p(address(b)), integer(n), None, ctypes.c_void_p(address(self.c)), integer(n)]
        self._scalars = None


def _elementwise_routines(kind: str, x: np.ndarray, y: np.ndarray):
    """The BLAS routines for an element-wise update of two arrays of one shape, or None: NumPy does it."""
    if x.shape != y.shape or x.dtype != y.dtype:
        raise ValueError(f"{kind} needs two arrays of one shape and dtype, got {x.shape} {x.dtype} "
                         f"and {y.shape} {y.dtype}")
    routines = _ROUTINES.get(x.dtype) if _ROUTINES is not None else None
    return routines if routines is not None and x.flags.c_contiguous and y.flags.c_contiguous else None


def _numpy_axpby(x: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> None:
    """y ← α·x + β·y in NumPy, for when the bundled OpenBLAS is not there."""
    if beta != 1.0:
        y *= beta
    if alpha == 1.0:
        y += x
    elif alpha == -1.0:
        y -= x
    else:
        y += alpha * x


class PairUpdate:
    """x, y ← h11·x + h12·y, h21·x + h22·y: element-wise and in place, both from the old values.

    Momentum's one-thread form (:class:`bptrain.fast.optimizers.SGD`): BLAS's rotm (the "modified Givens
    rotation", with flag −1 any 2x2 matrix H) reads and writes each array once, where NumPy streams them
    three times. Without the bundled OpenBLAS, NumPy does it (one temporary).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, scratch: np.ndarray):
        self.x, self.y, self.scratch = x, y, scratch
        routines = self._routines = _elementwise_routines("PairUpdate", x, y)
        if routines is not None:
            integer = routines.integer
            self._param = (routines.scalar * 5)()  # flag, h11, h21, h12, h22 (BLAS's order)
            self._args = (integer(x.size), ctypes.c_void_p(address(x)), integer(1),
                          ctypes.c_void_p(address(y)), integer(1), self._param)
        self._h = None

    def __call__(self, h11: float, h12: float, h21: float, h22: float) -> None:
        if self._routines is None:
            x, y = self.x, self.y
            np.multiply(x, h21, out=self.scratch)  # h21·x, before x changes
            x *= h11
            x += h12 * y
            y *= h22
            y += self.scratch
            return
        if (h11, h12, h21, h22) != self._h:
            self._param[:] = (-1.0, h11, h21, h12, h22)
            self._h = h11, h12, h21, h22
        self._routines.raw_rotm(*self._args)


class Axpby:
    """y ← α·x + β·y, element-wise and in place: one pass over x and y (OpenBLAS's ?axpby, where NumPy
    takes two). Adam does this to its moments and every parameter each step. Without the bundled
    OpenBLAS, NumPy does it."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y
        routines = self._routines = _elementwise_routines(type(self).__name__, x, y)
        if routines is not None:
            integer, scalar = routines.integer, routines.scalar
            self._args = [integer(x.size), scalar(1.0), ctypes.c_void_p(address(x)), integer(1), scalar(1.0),
                          ctypes.c_void_p(address(y)), integer(1)]
            self._call, self._scalars = routines.raw_axpby, (1.0, 1.0)

    def __call__(self, alpha: float, beta: float) -> None:
        if self._routines is None:
            _numpy_axpby(self.x, self.y, alpha, beta)
            return
        if (alpha, beta) != self._scalars:
            scalar = self._routines.scalar
            self._args[1], self._args[4] = scalar(alpha), scalar(beta)
            self._scalars = alpha, beta
        self._call(*self._args)


class Axpy(Axpby):
    """y ← α·x + y through ?axpy, which OpenBLAS splits between its threads (axpby it runs on one): after
    a two-thread gemm each core passes over the half it just wrote (momentum's form for several threads)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        super().__init__(x, y)
        if self._routines is not None:
            del self._args[4]  # axpy has no β
            self._call, self._scalars = self._routines.raw_axpy, 1.0

    def __call__(self, alpha: float) -> None:
        if self._routines is None:
            _numpy_axpby(self.x, self.y, alpha, 1.0)
            return
        if alpha != self._scalars:
            self._args[1] = self._routines.scalar(alpha)
            self._scalars = alpha
        self._call(*self._args)
