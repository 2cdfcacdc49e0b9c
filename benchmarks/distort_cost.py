"""Seconds to prepare one epoch of 50,000 MNIST-sized images: the shuffle alone, with shifts, elastic, affine, both.

    python benchmarks/distort_cost.py [--data PATH] [--repeats 5]

Runs in this process, one thread, the way ``train()`` prepares an epoch (bptrain.data.epochs.EpochImages,
inline: permutation, gather, shifts, distortions, one-hot targets; the training loop's own work is not
included): the median of ``--repeats`` epochs per kind, and µs per image. Uses the real training images
when present (they are sparse; the cost does not depend on the pixel values), else random ones of the
same shape.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from bptrain.fast.blas import threads_at_most
from bptrain.data.epochs import EpochImages
from bptrain.data.distort import PAPER_ELASTIC, SIMARD_AFFINE, Distorter, Distortion


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mnist.pkl.gz"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.data.exists():
        from bptrain.data.loader import load_dataset

        images = load_dataset(args.data).train.x
    else:
        images = np.random.default_rng(0).random((50_000, 784), dtype=np.float32)
    labels = np.arange(len(images)) % 10
    both = Distortion(PAPER_ELASTIC.elastic_alpha, PAPER_ELASTIC.elastic_sigma, SIMARD_AFFINE.rotate,
                      SIMARD_AFFINE.scale, SIMARD_AFFINE.shear, SIMARD_AFFINE.shift)
    kinds = {  # (shift, distortion)
        "shuffle only": (0, None),
        "shuffle + shifts (--augment 1)": (1, None),
        "shuffle + elastic (alpha 34, sigma 4)": (0, PAPER_ELASTIC),
        "shuffle + affine (simard-affine)": (0, SIMARD_AFFINE),
        "shuffle + elastic + affine": (0, both),
    }
    buffers = np.empty_like(images), np.zeros((len(images), 10), np.float32)
    rng = np.random.default_rng(0)
    print(f"{len(images)} images, median of {args.repeats}")
    with threads_at_most(1):
        for name, (shift, distortion) in kinds.items():
            distorter = Distorter(784, distortion) if distortion else None
            seconds = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                with EpochImages(images, labels, 10, np.float32, rng, 1, shift=shift, distorter=distorter,
                                 buffers=buffers) as epoch:
                    epoch.next()
                seconds.append(time.perf_counter() - started)
            median = statistics.median(seconds)
            print(f"{name:38s} {median:6.3f} s/epoch  {1e6 * median / len(images):5.1f} µs/image  "
                  f"(min {min(seconds):.3f}, max {max(seconds):.3f})")

if __name__ == "__main__":
    main()
