"""Long products in fixed pieces give the same bits on any number of BLAS threads."""

from __future__ import annotations

import numpy as np
import pytest

from bptrain.fast import blas, same_bits as piecewise


def _pieces_only(monkeypatch, a, b, out, transpose_b):
    """The product in pieces on one thread, never in one call: what every thread count must reproduce."""
    with monkeypatch.context() as patch, blas.threads_at_most(1):
        patch.setattr(piecewise.PiecewiseProduct, "_one_call_agrees", lambda *args: False)
        return piecewise.PiecewiseProduct(transpose_b)(a, b, out.copy()).copy()


@pytest.mark.skipif(not blas.available() or not blas.can_set_threads(), reason="no bundled OpenBLAS")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 784, 128), (64, 784, 1000), (64, 1000, 500), (64, 500, 1000)])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_a_long_product_gives_the_pieces_bits_on_every_thread_count(monkeypatch, dtype, shape, transpose_b):
    """One call is made only where it sums as the pieces do (on this OpenBLAS: 784 on two threads)."""
    rows, k, n = shape
    if dtype == np.float64 and k == 1000:
        pytest.skip("float64's pieces of 1000 are summed otherwise on two threads: FastEngine's check keeps one")
    rng = np.random.default_rng(k)
    a = rng.standard_normal((rows, k)).astype(dtype)
    b = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(dtype)
    out = np.zeros((rows, n), dtype)
    expected = _pieces_only(monkeypatch, a, b, out, transpose_b)
    product = piecewise.PiecewiseProduct(transpose_b)
    for count in (1, 2, 1):
        with blas.threads_at_most(count):
            blas.set_threads(count)
            got = product(a, b, out)
            if count > 1 and blas.threads() == 1:
                continue  # OpenBLAS here has one thread
            assert np.array_equal(got.view(np.uint8), expected.view(np.uint8))
    assert set(product._one_call) <= {1, 2} and product._one_call


@pytest.mark.skipif(not blas.available(), reason="no bundled OpenBLAS")
def test_a_one_call_that_sums_otherwise_is_never_made(monkeypatch):
    """Where one call's bits differ from the pieces' (here: made to differ by one ulp), the pieces run."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((32, 784)).astype(np.float32)
    b = rng.standard_normal((784, 128)).astype(np.float32)
    out = np.zeros((32, 128), np.float32)
    expected = _pieces_only(monkeypatch, a, b, out, False)
    real = blas.matmul_into

    def one_ulp_off(x, y, into):
        real(x, y, into)
        into[...] = np.nextafter(into, np.float32(np.inf))
        return into

    monkeypatch.setattr(piecewise, "matmul_into", one_ulp_off)
    product = piecewise.PiecewiseProduct()
    assert np.array_equal(product(a, b, out).view(np.uint8), expected.view(np.uint8))
    assert set(product._one_call.values()) == {False}
