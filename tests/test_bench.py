"""bench times what `bptrain train` does by default (momentum, weight decay, shifts) and plain SGD."""

from __future__ import annotations

import numpy as np
import pytest

from bptrain import engines
from bptrain.app import bench
from bptrain.fast import engine as fast_engine
from bptrain.fast.epoch_thread import BackgroundEpochImages
from bptrain.core.training import TrainSettings


def test_default_settings_are_trains():
    train_defaults = TrainSettings()
    default = bench.default_settings(augment=1)
    assert (default.momentum, default.nesterov, default.weight_decay, default.augment) == (
        train_defaults.momentum, train_defaults.nesterov, train_defaults.weight_decay, 1)
    assert default.describe() == "momentum 0.9, weight decay 0.0001, shifts up to 1 px"
    assert [s.name for s in bench.settings_to_time("both", 1)] == ["plain", "default"]
    assert bench.settings_to_time("default", 0)[0].describe() == "momentum 0.9, weight decay 0.0001, no shifts"


def test_a_default_epoch_trains_with_momentum_decay_and_shifts(monkeypatch):
    """The timed default epoch really does the work: its optimizer has train's momentum and decay,
    the images are shifted every epoch, and the parameters move as momentum SGD moves them."""
    shifts = []

    class Recorded(BackgroundEpochImages):
        def __init__(self, images, **kwargs):
            shifts.append(images.preparation._shift)
            super().__init__(images, **kwargs)

    monkeypatch.setattr(fast_engine, "BackgroundEpochImages", Recorded)
    x, y = bench.synthetic_like(64, 16, 3)
    buffers = engines.epoch_buffers("fast", len(x), x.shape[1], 3, np.float32)
    default = bench._Epochs((16, 5, 3), "ce", x, y, 8, bench.default_settings(1), buffers, dtype=np.float32,
                            lr=0.1, seed=0)
    plain = bench._Epochs((16, 5, 3), "ce", x, y, 8, bench.PLAIN, buffers, dtype=np.float32, lr=0.1, seed=0)
    assert (default.engine.optimizer.momentum, default.engine.optimizer.weight_decay) == (0.9, 1e-4)
    assert (plain.engine.optimizer.momentum, plain.engine.optimizer.weight_decay) == (0.0, 0.0)
    for timer in (default, plain):
        assert timer.run() > 0
    assert shifts == [1, 0]
    # one pair of epoch buffers for the whole bench, whatever the settings
    assert buffers[0] is default.buffers[0] is plain.buffers[0]
    assert np.any(default.engine.optimizer.velocity_w[0] != 0)
    assert not np.allclose(default.model.weights[0], plain.model.weights[0])  # same start, other updates


def test_bench_alternates_settings_and_pairs_the_ratio(monkeypatch):
    """Epochs run plain, default, plain, default, ...; the ratio is the median of the pairs' ratios."""
    order = []
    durations = {"plain": iter([1.0, 2.0, 4.0]), "default": iter([1.5, 2.2, 8.0])}

    def fake_run(self):
        order.append(self.settings.name)
        return next(durations[self.settings.name])

    monkeypatch.setattr(bench._Epochs, "run", fake_run)
    x, y = bench.synthetic_like(32, 16, 3)
    rows, _ = bench.bench((16, 5, 3), "ce", x, y, [8], runs=2, warmup=1, peak_gflops=1.0,
                          settings=bench.settings_to_time("both", 0))
    assert order == ["plain", "default"] * 3
    plain, default = rows
    assert plain.runs == [2.0, 4.0] and default.runs == [2.2, 8.0]
    assert plain.ratio_to_plain is None
    assert default.ratio_to_plain == pytest.approx((1.1 + 2.0) / 2)  # the median of the pairs 2.2/2 and 8/4
