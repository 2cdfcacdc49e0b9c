"""Speed measurements for ``bptrain bench``: seconds per epoch against the machine's GEMM peak.

Training an MLP is mostly matrix products, so the honest yardstick is the
fp32 GEMM rate this machine reaches on big matrices: an epoch cannot take
less than (matmul FLOPs per epoch) / (peak FLOP/s). The ratio between the
two says how much of the time is Python and NumPy overhead.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

from .network import MLP
from .optim import SGD
from .train import run_epoch


@dataclass
class BenchRow:
    batch_size: int
    seconds_per_epoch: float
    samples_per_second: float
    gflops: float
    floor_seconds: float
    ratio_to_floor: float
    runs: list

    def to_dict(self) -> dict:
        return asdict(self)


def matmul_flops_per_epoch(sizes, n_samples: int) -> float:
    """FLOPs of the matrix products of one training epoch (2 per multiply-add).

    Per sample and layer l: forward A_{l-1}W_l and weight gradient A_{l-1}ᵀΔ_l,
    n_{l-1}·n_l multiply-adds each; the backward Δ_l W_lᵀ for every layer but the
    first (the input needs no delta).
    """
    products = [m * n for m, n in zip(sizes[:-1], sizes[1:])]
    per_sample = 2 * sum(products) + sum(products[1:])
    return 2.0 * per_sample * n_samples


def gemm_peak_gflops(dtype=np.float32, n: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n x n matrix product: the best rate BLAS reaches here."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    np.matmul(a, b, out=c)  # warm-up: threads started, pages touched
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - started)
    return 2.0 * n ** 3 / statistics.median(times) / 1e9


def synthetic_like(n_samples: int, n_features: int, n_classes: int, seed: int = 0):
    """Random images and labels of the given shape, for when the real data is absent."""
    rng = np.random.default_rng(seed)
    x = rng.random((n_samples, n_features), dtype=np.float32)
    y = rng.integers(0, n_classes, n_samples)
    return x, y


def time_epochs(sizes, loss: str, x: np.ndarray, y: np.ndarray, batch_size: int, *, dtype=np.float32,
                lr: float = 0.1, runs: int = 3, warmup: int = 1, seed: int = 0) -> list[float]:
    """Seconds of each of ``runs`` training epochs (after ``warmup`` untimed ones), plain SGD."""
    model = MLP(sizes, loss, dtype=dtype, seed=seed)
    optimizer = SGD(model.weights, model.biases)
    rng = np.random.default_rng(seed)
    n_samples, n_classes = len(x), sizes[-1]
    shuffled_x = np.empty((n_samples, x.shape[1]), model.dtype)
    shuffled_y = np.zeros((n_samples, n_classes), model.dtype)
    times = []
    for run in range(warmup + runs):
        started = time.perf_counter()
        order = rng.permutation(n_samples)  # the shuffle is part of an epoch's cost
        np.take(x, order, axis=0, out=shuffled_x, mode="clip")
        shuffled_y.fill(0)
        shuffled_y[np.arange(n_samples), y[order]] = 1
        run_epoch(model, optimizer, shuffled_x, shuffled_y, batch_size, lr, epoch=run + 1, progress=False)
        if run >= warmup:
            times.append(time.perf_counter() - started)
    return times


def bench(sizes, loss: str, x: np.ndarray, y: np.ndarray, batch_sizes, *, dtype=np.float32, runs: int = 3,
          warmup: int = 1, peak_gflops: float | None = None):
    """One :class:`BenchRow` per batch size, plus the measured GEMM peak."""
    peak = peak_gflops if peak_gflops is not None else gemm_peak_gflops(dtype)
    flops = matmul_flops_per_epoch(sizes, len(x))
    floor = flops / (peak * 1e9)
    rows = []
    for batch_size in batch_sizes:
        times = time_epochs(sizes, loss, x, y, batch_size, dtype=dtype, runs=runs, warmup=warmup)
        seconds = statistics.median(times)
        rows.append(BenchRow(batch_size, seconds, len(x) / seconds, flops / seconds / 1e9, floor,
                             seconds / floor, [round(t, 4) for t in times]))
    return rows, peak
