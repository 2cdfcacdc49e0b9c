"""Helpers for the serve tests: digits drawn as pen strokes, and a small model trained on the real MNIST.

The strokes are the ones a person would draw on the page's 280 x 280 pad; :func:`draw_strokes` renders
them in NumPy (dark ink on white paper, like the pad) for the HTTP tests, and the browser test draws
the same strokes with the mouse.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

#: Pen strokes on a 280 x 280 pad, as polylines of (x, y) points.
STROKES = {
    1: [[(140, 45), (140, 235)]],
    7: [[(80, 55), (200, 55), (120, 235)]],
}
PAD_SIDE = 280
PEN_WIDTH = 22  # the page's brush


def draw_strokes(strokes, side: int = 140, pad_side: int = PAD_SIDE, pen_width: float = PEN_WIDTH) -> np.ndarray:
    """Grey levels 0..255 (uint8, (side, side)): round-capped pen strokes in black on white, anti-aliased."""
    scale = side / pad_side
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64) + 0.5
    distance = np.full((side, side), np.inf)
    for polyline in strokes:
        points = np.asarray(polyline, np.float64) * scale
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
            dx, dy = x1 - x0, y1 - y0
            t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
            distance = np.minimum(distance, np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy)))
    ink = np.clip(pen_width * scale / 2 - distance + 0.5, 0, 1)
    return np.round(255 * (1 - ink)).astype(np.uint8)


@functools.cache
def trained_mnist_model(mnist_path: Path):
    """A 784-64-10 network trained for 2 epochs on the real MNIST (about 96% right), once per session."""
    from bptrain import MLP, TrainSettings, load_dataset, train
    from bptrain.fast import blas

    data = load_dataset(mnist_path)
    model = MLP((784, 64, 10), loss="ce", seed=0)
    # one BLAS thread: with the other tests' processes on the 2 cores, two threads took 24-33 s, one 3 s
    with blas.threads_at_most(1):
        train(model, data, TrainSettings(epochs=2, batch_size=32, augment=1), progress=False)
    accuracy = float(np.mean(model.predict(data.validation.x) == data.validation.y))
    return model, {"val_accuracy": accuracy}
