"""Seconds to prepare one epoch of 50,000 MNIST-sized images: shifts, elastic, affine, both.

    python benchmarks/distort_cost.py [--data PATH] [--repeats 5]

Runs in this process, one thread (the training loop's own work is not included): the median of
``--repeats`` epochs per kind, and µs per image. Uses the real training images when present
(they are sparse; the cost does not depend on the pixel values), else random ones of the same shape.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from bptrain.augment import shift_images
from bptrain.distort import PAPER_ELASTIC, SIMARD_AFFINE, Distorter, Distortion


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mnist.pkl.gz"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.data.exists():
        from bptrain.loader import load_dataset

        images = load_dataset(args.data).train.x
    else:
        images = np.random.default_rng(0).random((50_000, 784), dtype=np.float32)
    both = Distortion(PAPER_ELASTIC.elastic_alpha, PAPER_ELASTIC.elastic_sigma, SIMARD_AFFINE.rotate,
                      SIMARD_AFFINE.scale, SIMARD_AFFINE.shear, SIMARD_AFFINE.shift)
    kinds = {
        "shifts (--augment 1)": lambda batch, rng: shift_images(batch, rng, 1),
        "elastic (alpha 34, sigma 4)": Distorter(784, PAPER_ELASTIC),
        "affine (simard-affine.toml)": Distorter(784, SIMARD_AFFINE),
        "elastic + affine": Distorter(784, both),
    }
    work = np.empty_like(images)
    rng = np.random.default_rng(0)
    print(f"{len(images)} images, median of {args.repeats}")
    for name, apply in kinds.items():
        seconds = []
        for _ in range(args.repeats):
            np.copyto(work, images)
            started = time.perf_counter()
            apply(work, rng)
            seconds.append(time.perf_counter() - started)
        median = statistics.median(seconds)
        print(f"{name:30s} {median:6.3f} s/epoch  {1e6 * median / len(images):5.1f} µs/image  "
              f"(min {min(seconds):.3f}, max {max(seconds):.3f})")


if __name__ == "__main__":
    main()
