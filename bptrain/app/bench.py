"""Speed measurements for ``bptrain bench``: seconds per epoch against the machine's GEMM peak.

It times what ``bptrain train`` does by default (momentum, weight decay, the
image shifts) and plain SGD, epoch for epoch in alternation, so the cost of
the default settings is visible next to the fastest path.

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

from ..core.network import MLP
from ..core.epoch_steps import EpochSteps
from ..core.training import TrainSettings
from ..engines import DEFAULT_ENGINE, epoch_buffers, epoch_images, make_engine, threads_used


@dataclass(frozen=True)
class EpochSettings:
    """What a timed epoch trains with: the optimizer's settings and the image shifts."""

    name: str
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    augment: int = 0

    def describe(self) -> str:
        if not (self.momentum or self.weight_decay or self.augment):
            return "SGD without momentum, weight decay or shifts"
        parts = [f"{'Nesterov ' if self.nesterov else ''}momentum {self.momentum:g}" if self.momentum else "no momentum",
                 f"weight decay {self.weight_decay:g}" if self.weight_decay else "no weight decay",
                 f"shifts up to {self.augment} px" if self.augment else "no shifts"]
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "description": self.describe()}


#: ``--settings`` choices: train's defaults, plain SGD, or both timed in alternation.
SETTINGS_CHOICES = ("both", "default", "plain")
PLAIN = EpochSettings("plain")


def default_settings(augment: int) -> EpochSettings:
    """``bptrain train``'s optimizer defaults (from TrainSettings) with shifts of up to ``augment`` pixels."""
    train_defaults = TrainSettings()
    return EpochSettings("default", train_defaults.momentum, train_defaults.nesterov, train_defaults.weight_decay,
                         augment)


def settings_to_time(choice: str, augment: int) -> list[EpochSettings]:
    """The settings ``--settings choice`` times, plain first (so default rows can say "x plain")."""
    return {"plain": [PLAIN], "default": [default_settings(augment)],
            "both": [PLAIN, default_settings(augment)]}[choice]


@dataclass
class BenchRow:
    settings: str
    batch_size: int
    seconds_per_epoch: float
    samples_per_second: float
    gflops: float
    floor_seconds: float
    ratio_to_floor: float
    runs: list
    ratio_to_plain: float | None = None  # median of the per-pair ratios, when plain SGD was timed alongside
    threads: str = ""  # how the cores were used: "1+1", "2" (fast engine), "numpy" (reference)

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


class _Epochs:
    """Trains one network with one :class:`EpochSettings` epoch after epoch, as ``train()`` does, and times each.

    Each epoch is prepared as ``train()`` prepares it (shuffle, shifts, one-hot
    targets; the fast engine's thread when it would use one), into buffers
    shared by every ``_Epochs`` of one bench. An epoch's preparation is part of
    its time: the thread, when on, prepares it while its first batches train,
    never during another setting's epoch.
    """

    def __init__(self, sizes, loss, x, y, batch_size, settings: EpochSettings, buffers, *, dtype, lr, seed,
                 engine: str = DEFAULT_ENGINE):
        self.model = MLP(sizes, loss, dtype=dtype, seed=seed)
        self.train_settings = TrainSettings(lr=lr, epochs=1, batch_size=batch_size, seed=seed, schedule="constant",
                                            momentum=settings.momentum, nesterov=settings.nesterov,
                                            weight_decay=settings.weight_decay, augment=settings.augment)
        self.engine = make_engine(engine, self.model, self.train_settings, batch_size)
        self.x, self.y, self.batch_size, self.settings, self.lr = x, y, batch_size, settings, lr
        self.buffers = buffers
        self.rng = np.random.default_rng(seed)
        self.epoch = 0

    @property
    def threads(self) -> str:
        """How the steps use the cores: "1+1" is one BLAS thread and the epoch thread, "2" two BLAS threads."""
        return threads_used(self.engine, self.batch_size)

    def run(self) -> float:
        """Seconds of one more epoch, its preparation included."""
        self.epoch += 1
        started = time.perf_counter()
        with epoch_images(self.engine, self.x, self.y, self.model.sizes[-1], self.model.dtype, self.train_settings,
                          self.rng, buffers=self.buffers) as images:
            x, y_onehot = images.next()
            steps = EpochSteps(self.model, self.epoch, len(x), self.batch_size, self.lr)
            self.engine.run_epoch(x, y_onehot, steps)
        return time.perf_counter() - started


def bench(sizes, loss: str, x: np.ndarray, y: np.ndarray, batch_sizes, *, dtype=np.float32, runs: int = 3,
          warmup: int = 1, peak_gflops: float | None = None, settings=(PLAIN,), lr: float = 0.1,
          engine: str = DEFAULT_ENGINE):
    """One :class:`BenchRow` per batch size and settings, plus the measured GEMM peak.

    Several settings are timed in alternation, epoch by epoch (plain, default,
    plain, default, ...), so the machine's drift hits them alike, and a default
    row's ``ratio_to_plain`` is the median of the ratios of epochs run back to back.
    """
    peak = peak_gflops if peak_gflops is not None else gemm_peak_gflops(dtype)
    flops = matmul_flops_per_epoch(sizes, len(x))
    floor = flops / (peak * 1e9)
    buffers = epoch_buffers(engine, len(x), x.shape[1], sizes[-1], np.dtype(dtype))
    rows = []
    for batch_size in batch_sizes:
        timers = [_Epochs(sizes, loss, x, y, batch_size, s, buffers, dtype=dtype, lr=lr, seed=0, engine=engine)
                  for s in settings]
        times = {s.name: [] for s in settings}
        for run in range(warmup + runs):
            for s, timer in zip(settings, timers):
                seconds = timer.run()
                if run >= warmup:
                    times[s.name].append(seconds)
        for s, timer in zip(settings, timers):
            series = times[s.name]
            seconds = statistics.median(series)
            ratio = None
            if s.name != PLAIN.name and PLAIN.name in times:
                ratio = statistics.median(a / b for a, b in zip(series, times[PLAIN.name]))
            rows.append(BenchRow(s.name, batch_size, seconds, len(x) / seconds, flops / seconds / 1e9, floor,
                                 seconds / floor, [round(t, 4) for t in series], ratio, timer.threads))
    return rows, peak
