"""The fused BLAS update and its NumPy fallback compute the same C ← α·AᵀB + β·C."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bptrain.fast import blas
from bptrain.fast.aligned import CACHE_LINE, aligned_copy, aligned_empty, aligned_zeros


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 2, 7])
@pytest.mark.parametrize("alpha,beta", [(-1.0, 1.0), (1.0, 0.9), (-1.0, 0.99), (0.5, 0.0)])
@pytest.mark.parametrize("order", ["C", "F"])  # hidden activations of small batches are column-major
def test_gemm_at_b_matches_numpy(monkeypatch, dtype, rows, alpha, beta, order):
    rng = np.random.default_rng(rows)
    monkeypatch.setattr(blas, "FUSED_MIN_SIZE", 0)  # exercise the BLAS path on small matrices
    a = np.asarray(rng.standard_normal((rows, 13)), dtype, order=order)
    b = rng.standard_normal((rows, 6)).astype(dtype)
    c = rng.standard_normal((13, 6)).astype(dtype)
    expected = alpha * (a.astype(np.float64).T @ b.astype(np.float64)) + beta * c.astype(np.float64)
    result = blas.gemm_at_b(c, a, b, alpha, beta, scratch=np.empty_like(c))
    assert result is c
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, expected, rtol=tolerance, atol=tolerance)


def test_views_of_contiguous_rows_are_used_in_place(monkeypatch):
    monkeypatch.setattr(blas, "FUSED_MIN_SIZE", 0)
    """Batches are row slices of a bigger buffer; the update must read the slice, not the buffer."""
    rng = np.random.default_rng(0)
    big = rng.standard_normal((10, 8)).astype(np.float32)
    delta = rng.standard_normal((10, 3)).astype(np.float32)
    c = np.zeros((8, 3), np.float32)
    blas.gemm_at_b(c, big[4:7], delta[4:7], 1.0, 0.0, scratch=np.empty_like(c))
    np.testing.assert_allclose(c, big[4:7].T @ delta[4:7], rtol=1e-5, atol=1e-6)


def test_fallback_is_selected_by_environment():
    code = "import bptrain.fast.blas as b; print(b.available())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"BPTRAIN_NO_FUSED_BLAS": "1", "PATH": ""}).stdout.strip()
    assert out == "False"


@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.0, False, 0.0), (0.0, False, 1e-3),
                                                            (0.9, False, 1e-3), (0.9, True, 1e-3)])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_training_steps_agree_with_and_without_fused_blas(monkeypatch, momentum, nesterov, weight_decay, batch_size):
    from bptrain.core.network import MLP, one_hot
    from bptrain.fast.network import FastNetwork
    from bptrain.fast.optimizers import SGD

    from conftest import fast_train_step

    rng = np.random.default_rng(1)
    x = rng.random((12, 9))
    y = one_hot(rng.integers(0, 3, 12), 3, np.float64)

    def run():
        model = MLP((9, 5, 3), "ce", dtype=np.float64, seed=3)
        network = FastNetwork(model)
        optimizer = SGD(model.weights, model.biases, momentum, nesterov, weight_decay)
        for start in range(0, 12, batch_size):
            activations, deltas, work = fast_train_step(network, x[start:start + batch_size],
                                                        y[start:start + batch_size], 0.5)
            optimizer.step(activations, deltas, work, 0.5)
        return model.weights + model.biases

    if not blas.available():
        pytest.skip("no bundled OpenBLAS found: only the NumPy path exists here")
    monkeypatch.setattr(blas, "FUSED_MIN_SIZE", 0)
    fused = run()
    monkeypatch.setattr(blas, "_ROUTINES", None)
    plain = run()
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_threads_at_most_limits_and_restores():
    if blas._THREADS is None:
        pytest.skip("NumPy's BLAS here is not the bundled OpenBLAS: thread count is left alone")
    get, set_ = blas._THREADS
    before = get()
    with blas.threads_at_most(1):
        assert get() == 1
    assert get() == before
    with pytest.raises(RuntimeError), blas.threads_at_most(1):
        raise RuntimeError("restored even when the block fails")
    assert get() == before
    with blas.threads_at_most(None):
        assert get() == before


@pytest.mark.parametrize("layout", ["C", "F", "rows of F", "float64 out"])
def test_matmul_into_fills_every_output_layout(layout):
    """dot for C-ordered outputs, the transposed product for column-major ones, matmul for the rest."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 5)).astype(np.float32)
    b = rng.standard_normal((5, 4)).astype(np.float32)
    out = {"C": np.empty((6, 4), np.float32),
           "F": np.empty((6, 4), np.float32, order="F"),
           "rows of F": np.empty((9, 4), np.float32, order="F")[:6],  # neither C nor F contiguous
           "float64 out": np.empty((6, 4), np.float64)}[layout]
    assert blas.matmul_into(a, b, out) is out
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-6)


BLAS_PATHS = ["blas", "numpy"]


def _use_path(monkeypatch, path):
    if path == "blas" and not blas.available():
        pytest.skip("no bundled OpenBLAS found: only the NumPy path exists here")
    if path == "numpy":
        monkeypatch.setattr(blas, "_ROUTINES", None)


@pytest.mark.parametrize("path", BLAS_PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h", [(1.0, 1e-3, -1.0, 1 - 1e-3), (1.0, 0.01, -0.9, 0.981), (0.5, 2.0, -1.0, 0.25),
                               (1.0, 0.0, -1.0, 1.0)], ids=str)
def test_pair_update_applies_the_2x2_map_to_the_old_values(monkeypatch, path, dtype, h):
    _use_path(monkeypatch, path)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((13, 6)).astype(dtype)
    y = rng.standard_normal((13, 6)).astype(dtype)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    h11, h12, h21, h22 = h
    update = blas.PairUpdate(x, y, scratch=np.empty_like(x))
    for _ in range(3):  # the same map again: the prepared BLAS parameters are reused
        update(*h)
        x64, y64 = h11 * x64 + h12 * y64, h21 * x64 + h22 * y64
    tolerance = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(x, x64, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(y, y64, rtol=tolerance, atol=tolerance)
    update(1.0, 0.0, 0.0, 1.0)  # a new map: identity
    np.testing.assert_allclose(x, x64, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("path", BLAS_PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prepared_gemm_follows_every_change_of_operands(monkeypatch, path, dtype):
    """The arguments are built once and reused; each change (a new input batch, another layout, a partial
    or one-row batch, new α and β) must still give C ← α·aᵀb + β·C."""
    _use_path(monkeypatch, path)
    rng = np.random.default_rng(4)
    data = rng.standard_normal((20, 9)).astype(dtype)         # the input batches are row slices of it
    delta = rng.standard_normal((4, 5)).astype(dtype)
    column_major = np.asfortranarray(rng.standard_normal((4, 9)).astype(dtype))
    c = rng.standard_normal((9, 5)).astype(dtype)
    expected = c.astype(np.float64)
    update = blas.PreparedGemmAtB(c, scratch=np.empty_like(c))
    calls = [(data[0:4], delta, 1.0, 0.9), (data[4:8], delta, 1.0, 0.9), (data[8:12], delta, -1.0, 1.0),
             (column_major, delta, 1.0, 0.9), (data[12:15], delta[:3], 1.0, 0.9), (data[15:16], delta[:1], -1.0, 0.5),
             (data[16:20], delta, 0.5, 0.0), (data[0:4], rng.standard_normal((4, 5)).astype(dtype), 1.0, 0.9)]
    for a, b, alpha, beta in calls:
        assert update(a, b, alpha, beta) is c
        expected = alpha * (a.astype(np.float64).T @ b.astype(np.float64)) + beta * expected
        tolerance = 1e-4 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(c, expected, rtol=tolerance, atol=tolerance)


# ------------------------------------------------------------------ alignment
@pytest.mark.parametrize("shape, order", [((784, 128), "C"), ((10, 128), "F"), ((7,), "C"), ((), "C"), (5, "C")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_aligned_arrays_start_a_cache_line_and_are_what_was_asked(shape, order, dtype):
    array = aligned_empty(shape, dtype, order)
    expected = np.empty(shape, dtype, order=order)
    assert array.ctypes.data % CACHE_LINE == 0
    assert (array.shape, array.dtype, array.strides) == (expected.shape, expected.dtype, expected.strides)
    assert array.flags.writeable
    assert not aligned_zeros(shape, dtype, order).any()
    source = np.arange(np.prod(shape, dtype=int), dtype=np.float64).reshape(shape)
    copy = aligned_copy(source, dtype)
    assert copy.ctypes.data % CACHE_LINE == 0 and copy.flags.c_contiguous
    np.testing.assert_array_equal(copy, source.astype(dtype))


def test_network_optimizer_and_workspace_arrays_start_cache_lines():
    from bptrain.core.network import MLP
    from bptrain.fast.optimizers import SGD

    from bptrain.fast.network import FastNetwork

    model = MLP((784, 128, 64, 10), seed=0)
    network = FastNetwork(model)
    optimizer = SGD(model.weights, model.biases, momentum=0.9, weight_decay=1e-4)
    work = network.workspace(10)
    arrays = (model.weights + model.biases + optimizer.velocity_w + optimizer.velocity_b
              + work.z + work.delta + work.scratch)
    assert [a.ctypes.data % CACHE_LINE for a in arrays] == [0] * len(arrays)


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.9), (-1.0, 1.0), (-1.0, 0.999), (0.25, -2.0)])
@pytest.mark.parametrize("use_blas", [True, False], ids=["openblas", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpby_updates_y_in_one_call(monkeypatch, alpha, beta, use_blas, dtype):
    if not use_blas:
        monkeypatch.setattr(blas, "_ROUTINES", None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 5)).astype(dtype)
    y = rng.standard_normal((37, 5)).astype(dtype)
    expected = alpha * x.astype(np.float64) + beta * y.astype(np.float64)
    update = blas.Axpby(x, y)
    update(alpha, beta)
    tolerance = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, expected, rtol=tolerance, atol=tolerance)
    y_before = y.copy()
    update(alpha, beta)  # again: the same arrays, arguments reused
    np.testing.assert_allclose(y, alpha * x + beta * y_before, rtol=tolerance, atol=tolerance)


def test_axpby_refuses_mismatched_arrays():
    with pytest.raises(ValueError, match="one shape and dtype"):
        blas.Axpby(np.zeros(3, np.float32), np.zeros(4, np.float32))


@pytest.mark.parametrize("alpha", [1.0, -1.0, -0.9, 1e-5])
@pytest.mark.parametrize("use_blas", [True, False], ids=["openblas", "numpy"])
@pytest.mark.parametrize("size", [7, 20_000])  # OpenBLAS splits axpy between its threads above 10,000
def test_axpy_adds_a_multiple_of_x_into_y(monkeypatch, alpha, use_blas, size):
    if not use_blas:
        monkeypatch.setattr(blas, "_ROUTINES", None)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(size).astype(np.float32)
    y = rng.standard_normal(size).astype(np.float32)
    expected = alpha * x.astype(np.float64) + y
    update = blas.Axpy(x, y)
    update(alpha)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one shape and dtype"):
        blas.Axpy(x, y.astype(np.float64))


@pytest.mark.parametrize("rows", [1, 4], ids=["ger", "gemm"])
@pytest.mark.parametrize("use_blas", [True, False], ids=["openblas", "numpy"])
def test_beta_zero_overwrites_whatever_c_held(monkeypatch, rows, use_blas):
    """β = 0 means "C is not read" (BLAS's rule): Adam writes its gradients into uninitialised memory."""
    if not use_blas:
        monkeypatch.setattr(blas, "_ROUTINES", None)
    rng = np.random.default_rng(2)
    a = rng.standard_normal((rows, 160)).astype(np.float32)
    b = rng.standard_normal((rows, 128)).astype(np.float32)
    c = np.full((160, 128), np.nan, np.float32)
    blas.PreparedGemmAtB(c, np.empty_like(c))(a, b, 1.0, 0.0)
    np.testing.assert_allclose(c, a.T @ b, rtol=1e-5, atol=1e-5)

