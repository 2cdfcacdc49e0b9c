"""Seconds of bptrain's last training epoch of ``--epochs``, as ``bptrain train`` runs one.

One process, one configuration; prints ``seconds <wall> cpu <process CPU>``. The epoch is what
``train()`` does per epoch minus validation: shuffle into a contiguous copy,
shift the images (``--augment``), one-hot labels, then every step. Run it with
PYTHONPATH pointing at the tree to time (it uses only MLP, SGD, run_epoch and
shift_images, which every version since the first speed work has).

    python benchmarks/epoch_bptrain.py --batch-size 32 --settings default --augment 1

With ``--alternate N`` it instead trains a plain-SGD network and a default one
side by side in this one process, N epochs each in alternation (plain,
default, plain, ...), and prints the median of the N ratios default / plain:
the steadiest measure of what the default settings cost, as both see the same
drift.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    parser.add_argument("--alternate", type=int, default=0, metavar="N",
                        help="time N plain and N default epochs in alternation; print the ratio")
    parser.add_argument("--metric", choices=("wall", "cpu"), default="wall", help="what --alternate compares")
    parser.add_argument("--data", default=os.environ.get("BPTRAIN_SHARED_DATA", "../shared/data") + "/mnist.pkl.gz")
    args = parser.parse_args()

    x, y = load_dataset(Path(args.data)).train
    shuffled_x = np.empty_like(x)
    shuffled_y = np.zeros((len(x), 10), np.float32)
    if args.alternate:
        plain = Trainer(x, y, shuffled_x, shuffled_y, "plain", 0, args)
        default = Trainer(x, y, shuffled_x, shuffled_y, args.settings, args.augment, args)
        plain.epoch(), default.epoch()  # warm-up
        which = 0 if args.metric == "wall" else 1
        pairs = [(plain.epoch()[which], default.epoch()[which]) for _ in range(args.alternate)]
        ratios = [d / p for p, d in pairs]
        print(f"{args.metric} seconds: plain {statistics.median(p for p, _ in pairs):.4f} {args.settings} "
              f"{statistics.median(d for _, d in pairs):.4f} ratio {statistics.median(ratios):.3f} "
              f"({' '.join(f'{r:.3f}' for r in ratios)})")
        return
    trainer = Trainer(x, y, shuffled_x, shuffled_y, args.settings, args.augment, args)
    seconds = [trainer.epoch() for _ in range(args.epochs)]
    wall, cpu = seconds[-1]
    print(f"seconds {wall:.4f} cpu {cpu:.4f}")


class Trainer:
    """One network and optimizer; each epoch shuffles into the shared buffers, as train() does."""

    def __init__(self, x, y, shuffled_x, shuffled_y, settings, augment, args):
        self.x, self.y, self.shuffled_x, self.shuffled_y, self.augment, self.args = (
            x, y, shuffled_x, shuffled_y, augment, args)
        self.model = MLP((784, 128, 64, 10), "ce", dtype=np.float32, seed=0)
        self.optimizer = SGD(self.model.weights, self.model.biases, **SETTINGS[settings])
        self.rng = np.random.default_rng(0)
        self.n_epochs = 0

    def epoch(self):
        """(wall, CPU) seconds of one more epoch."""
        x, shuffled_x, shuffled_y, n = self.x, self.shuffled_x, self.shuffled_y, len(self.x)
        self.n_epochs += 1
        started, started_cpu = time.perf_counter(), time.process_time()
        order = self.rng.permutation(n)
        np.take(x, order, axis=0, out=shuffled_x, mode="clip")
        shift_images(shuffled_x, self.rng, self.augment)
        shuffled_y.fill(0)
        shuffled_y[np.arange(n), self.y[order]] = 1
        run_epoch(self.model, self.optimizer, shuffled_x, shuffled_y, self.args.batch_size, self.args.lr,
                  self.n_epochs, False)
        return time.perf_counter() - started, time.process_time() - started_cpu


if __name__ == "__main__":
    main()
