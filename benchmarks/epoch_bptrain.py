"""Seconds of bptrain's last training epoch of ``--epochs``, as ``bptrain train`` runs one.

One process, one configuration; prints ``seconds <wall> cpu <process CPU>``. The epoch is what
``train()`` does per epoch minus validation: shuffle into a contiguous copy,
shift the images (``--augment``), one-hot labels, then every step. Run it with
PYTHONPATH pointing at the tree to time (it uses only MLP, SGD, run_epoch and
shift_images, which every version since the first speed work has).

    python benchmarks/epoch_bptrain.py --batch-size 32 --settings default --augment 1
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from bptrain.augment import shift_images
from bptrain.loader import load_dataset
from bptrain.network import MLP
from bptrain.optim import SGD
from bptrain.train import run_epoch

SETTINGS = {  # `bptrain train`'s defaults, and plain SGD
    "default": dict(momentum=0.9, nesterov=False, weight_decay=1e-4),
    "nesterov": dict(momentum=0.9, nesterov=True, weight_decay=1e-4),
    "plain": dict(momentum=0.0, nesterov=False, weight_decay=0.0),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--settings", choices=SETTINGS, default="default")
    parser.add_argument("--augment", type=int, default=0, help="max shift in pixels (train's default is 1)")
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--data", default=os.environ.get("BPTRAIN_SHARED_DATA", "../shared/data") + "/mnist.pkl.gz")
    args = parser.parse_args()

    x, y = load_dataset(Path(args.data)).train
    model = MLP((784, 128, 64, 10), "ce", dtype=np.float32, seed=0)
    optimizer = SGD(model.weights, model.biases, **SETTINGS[args.settings])
    rng = np.random.default_rng(0)
    n = len(x)
    shuffled_x = np.empty_like(x)
    shuffled_y = np.zeros((n, 10), np.float32)
    seconds = []
    for epoch in range(1, args.epochs + 1):
        started, started_cpu = time.perf_counter(), time.process_time()
        order = rng.permutation(n)
        np.take(x, order, axis=0, out=shuffled_x, mode="clip")
        shift_images(shuffled_x, rng, args.augment)
        shuffled_y.fill(0)
        shuffled_y[np.arange(n), y[order]] = 1
        run_epoch(model, optimizer, shuffled_x, shuffled_y, args.batch_size, args.lr, epoch, False)
        seconds.append((time.perf_counter() - started, time.process_time() - started_cpu))
    wall, cpu = seconds[-1]
    print(f"seconds {wall:.4f} cpu {cpu:.4f}")


if __name__ == "__main__":
    main()
