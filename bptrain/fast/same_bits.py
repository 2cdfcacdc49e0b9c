"""The same bits on any BLAS thread count: the steps' count follows the load (:mod:`.threads`); a run's numbers must not.

OpenBLAS's one-thread and many-thread drivers cut a long inner dimension (784 inputs, 1000 units)
into different blocks: :class:`PiecewiseProduct` sums it in pieces that are one block on any count.
Momentum keeps one form for the whole run (:class:`.optimizers.SGD`). And before the count first
moves, :func:`step_agrees` checks one step on both counts (another BLAS may sum otherwise).
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import blas
from .blas import NO_TRANS, ROW_MAJOR, TRANS, address, matmul_into


#: The longest inner dimension computed in one gemm call (below the x86 kernels' block size); longer
#: ones are cut into equal pieces of at most this many, added up in a fixed order.
PIECE_MOST = {np.dtype(np.float32): 400, np.dtype(np.float64): 256}


def pieces(k: int, dtype) -> list[tuple[int, int]]:
    """[(start, stop), ...] of the inner dimension k: one piece, or equal ones (multiples of 8) within the limit."""
    most = PIECE_MOST.get(np.dtype(dtype), 256)
    if k <= most:
        return [(0, k)]
    count = -(-k // most)
    size = -(-k // count)
    size = min(most, -(-size // 8) * 8)
    return [(start, min(start + size, k)) for start in range(0, k, size)]


def _layout(x: np.ndarray):
    """(transpose flag, leading dimension) of a matrix view with one unit stride, for row-major gemm; or None."""
    item = x.itemsize
    rows, cols = x.shape
    if x.strides[1] == item or cols == 1:
        return NO_TRANS, max(1, x.strides[0] // item if rows > 1 else cols)
    if x.strides[0] == item or rows == 1:
        return TRANS, max(1, x.strides[1] // item if cols > 1 else rows)
    return None


class PiecewiseProduct:
    """out = a·b (or a·bᵀ), with the inner dimension in :func:`pieces`: the same bits on any number of threads.

    The pieces are one gemm each, the first writing ``out`` (β = 0), the others adding into it, with
    arguments built once (without the bundled OpenBLAS: NumPy's). Where OpenBLAS's own blocking already
    sums in these pieces (its many-thread driver cuts 784 into 392 + 392), one call gives the same bits
    for a gemm call fewer: checked once per shape and thread count (:meth:`_one_call_agrees`).
    """

    def __init__(self, transpose_b: bool = False):
        self.transpose_b = transpose_b
        self._a = self._b = self._out = None
        self._calls = None  # [gemm arguments], one list per piece, or None: NumPy does the product
        self._gemm = None
        self._addressed = False  # whether the calls hold the addresses of _a and _out
        self._one_call = {}      # thread count -> whether one call sums as the pieces, for the operands' shapes
        self._checked = {}       # (shapes, orders) -> that dict, kept for shapes met again (evaluation's chunks)

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        if b is not self._b or out is not self._out or not _same_layout(a, self._a):
            self._prepare(a, b, out)
        elif a is not self._a:  # the next batch: its address goes into the calls if the pieces run
            self._a, self._addressed = a, False
        if self._calls is None:
            return self._numpy(a, b, out)
        count = blas.threads()
        one_call = self._one_call.get(count)
        if one_call is None:
            one_call = self._one_call[count] = self._one_call_agrees(a, b, out)
        if one_call:
            return matmul_into(a, b.T if self.transpose_b else b, out)
        return self._call_pieces(a, out)

    def _call_pieces(self, a: np.ndarray, out: np.ndarray) -> np.ndarray:
        if not self._addressed:
            self._readdress(a, out)
        gemm = self._gemm
        for args in self._calls:
            gemm(*args)
        return out

    def _numpy(self, a, b, out):
        b = b.T if self.transpose_b else b
        ranges = pieces(a.shape[1], out.dtype)
        if len(ranges) == 1:
            return matmul_into(a, b, out)
        part = np.empty_like(out)
        for i, (lo, hi) in enumerate(ranges):
            matmul_into(a[:, lo:hi], b[lo:hi], out if i == 0 else part)
            if i:
                out += part
        return out

    def _one_call_agrees(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
        """Whether one call gives the pieces' bits for operands of these shapes and orders, on the threads
        OpenBLAS has now. Random operands: on the real ones (an input of small integers, say) every order
        of summation may happen to agree."""
        rng = np.random.default_rng(0)
        ra, rb = np.empty_like(a), np.empty_like(b)  # in the operands' memory orders
        ra[...], rb[...] = rng.standard_normal(a.shape), rng.standard_normal(b.shape)
        whole, pieced = np.empty_like(out), np.empty_like(out)
        matmul_into(ra, rb.T if self.transpose_b else rb, whole)
        in_pieces = PiecewiseProduct(self.transpose_b)  # one BLAS call per piece, whatever OpenBLAS's blocking
        in_pieces._prepare(ra, rb, pieced)
        return in_pieces._calls is not None and identical(whole, in_pieces._call_pieces(ra, pieced))

    def _prepare(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        previous_a, previous_b, previous_out = self._a, self._b, self._out
        self._a, self._b, self._out = a, b, out
        self._addressed = False
        if (self._calls is not None and b is previous_b and _same_layout(a, previous_a)
                and _same_layout(out, previous_out)):
            return  # the next input batch, or the next rows of the outputs: _readdress when the pieces run
        self._calls = None
        routines = blas.routines(out.dtype)
        if (routines is None or a.dtype != out.dtype or b.dtype != out.dtype or a.ndim != 2 or b.ndim != 2
                or len(pieces(a.shape[1], out.dtype)) == 1):
            return  # NumPy's dot: as fast for a single call
        bt = b.T if self.transpose_b else b  # the (k, n) operand
        # gemm computes a row-major C = op(L)·op(R): out = a·bt, or for a column-major out, outᵀ = btᵀ·aᵀ
        if out.flags.c_contiguous:
            left, right, (m, n), self._a_index = a, bt, out.shape, 7
        elif out.flags.f_contiguous:
            left, right, (n, m), self._a_index = bt.T, a.T, out.shape, 9
        else:
            return
        integer, scalar = routines.integer, routines.scalar
        calls = []
        for i, (lo, hi) in enumerate(pieces(a.shape[1], out.dtype)):
            piece_left, piece_right = left[:, lo:hi], right[lo:hi]
            left_layout, right_layout = _layout(piece_left), _layout(piece_right)
            if left_layout is None or right_layout is None:
                return
            calls.append([ctypes.c_int(ROW_MAJOR), ctypes.c_int(left_layout[0]), ctypes.c_int(right_layout[0]),
                          integer(m), integer(n), integer(hi - lo), scalar(1.0),
                          ctypes.c_void_p(_address_of_view(piece_left)), integer(left_layout[1]),
                          ctypes.c_void_p(_address_of_view(piece_right)), integer(right_layout[1]),
                          scalar(0.0 if i == 0 else 1.0), ctypes.c_void_p(_address_of_view(out)), integer(n)])
        self._gemm = routines.raw_gemm
        self._calls = calls
        self._a_offsets = [args[self._a_index].value - _address_of_view(a) for args in calls]
        self._addressed = True
        key = (a.shape, a.strides, b.shape, b.strides, out.shape, out.strides, out.dtype)
        self._one_call = self._checked.setdefault(key, {})

    def _readdress(self, a: np.ndarray, out: np.ndarray) -> None:
        """Point the prepared calls at this ``a`` and ``out`` (same shapes and strides as they were built for)."""
        a_address, out_address = _address_of_view(a), ctypes.c_void_p(_address_of_view(out))
        for args, a_offset in zip(self._calls, self._a_offsets):
            args[self._a_index] = ctypes.c_void_p(a_address + a_offset)
            args[12] = out_address
        self._addressed = True


def identical(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether two arrays hold the same bytes (NaNs and the sign of zero included), whatever their layout."""
    return np.array_equal(np.ascontiguousarray(x).view(np.uint8), np.ascontiguousarray(y).view(np.uint8))


def _same_layout(x: np.ndarray, y) -> bool:
    return y is not None and x.shape == y.shape and x.strides == y.strides and x.dtype == y.dtype


def _address_of_view(x: np.ndarray) -> int:
    """Where a (possibly non-contiguous) view's first element is: :func:`.blas.address` where it can (cheaper)."""
    if x.flags.c_contiguous and x.flags.writeable and x.size:
        return address(x)
    return x.__array_interface__["data"][0]


def step_agrees(step, params, optimizer, count: int) -> bool:
    """Whether ``step()`` gives the same bits on one BLAS thread and on ``count``: it runs on one, what it
    changes (``params``, the optimizer's :meth:`state`) is rewound, and it runs on ``count``. Where the two
    differ, the one-thread result is kept: a run's numbers on one thread, whenever the check ran."""
    before = _saved(params, optimizer)
    blas.set_threads(1)
    step()
    one_thread = _saved(params, optimizer)
    _restore(params, optimizer, before)
    blas.set_threads(count)
    step()
    now = _saved(params, optimizer)
    if all(identical(a, b) for a, b in zip(_arrays(one_thread), _arrays(now))):
        return True
    _restore(params, optimizer, one_thread)
    return False


def _saved(params, optimizer):
    state = optimizer.state()
    return [p.copy() for p in params], {**state, "arrays": [a.copy() for a in state["arrays"]]}


def _restore(params, optimizer, saved) -> None:
    for param, kept in zip(params, saved[0]):
        param[...] = kept
    optimizer.load_state(saved[1])  # copies the saved arrays into the live ones


def _arrays(saved):
    return saved[0] + saved[1]["arrays"]
