"""Seconds of one epoch of ``bptrain.train()``: what ``bptrain train`` runs, as it runs it.

One process, one configuration; prints ``seconds <wall> cpu <process CPU>`` for the median of the
epochs between the first and the last (``EpochRecord.seconds``: the shuffle, shifts and distortions,
every step, validation). The first and last are left out: the first has no earlier epoch to prepare its
images alongside (when the epoch thread is on, bptrain.fast.threads) and the last prepares none after it.
Run it with PYTHONPATH pointing at the tree to time; ``paired.py`` runs it in alternation with other
configurations and with PyTorch (``compare_pytorch.py``).

    python benchmarks/epoch_bptrain.py --batch-size 32 --settings default --augment 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

# as `bptrain train` runs: OpenBLAS's idle threads sleep soon (bptrain.environment.shorten_idle_spin), set
# before NumPy loads OpenBLAS; written out here so that the same script times trees from before that function
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

# the public API only, so that the same script times any tree (paired.py --tree before=... --tree now=...)
from bptrain import MLP, TrainSettings, load_dataset, train  # noqa: E402

import numpy as np  # noqa: E402

SETTINGS = {  # `bptrain train`'s defaults, plain SGD, and the other optimizers
    "default": dict(),
    "plain": dict(momentum=0.0, weight_decay=0.0),
    "nesterov": dict(nesterov=True),
    "adam": dict(optimizer="adam"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--settings", choices=SETTINGS, default="default")
    parser.add_argument("--augment", type=int, default=0, help="max shift in pixels (train's default is 1)")
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--elastic-alpha", type=float, default=0.0, help="34 for Simard's elastic distortions")
    parser.add_argument("--sizes", default="784,128,64,10")
    parser.add_argument("--epochs", type=int, default=3, help="the first and the last are not timed")
    parser.add_argument("--one-thread-below", type=float, default=None, metavar="MACS",
                        help="set bptrain.fast.threads.ONE_THREAD_BELOW for every kind of update (0: OpenBLAS's own "
                             "thread count at every batch size), to compare thread policies")
    parser.add_argument("--core-for-distortions-up-to", type=float, default=None, metavar="WEIGHTS",
                        help="set bptrain.fast.threads.CORE_FOR_DISTORTIONS_UP_TO (0: never leave a core to "
                             "the distortions), to compare thread policies")
    parser.add_argument("--affine", action="store_true", help="with rotation 15, scale 0.15 (Ciresan's)")
    parser.add_argument("--elastic-sigma", type=float, default=4.0)
    parser.add_argument("--engine", default=None, help="fast or reference (trees that have both engines)")
    parser.add_argument("--data", default=os.environ.get("BPTRAIN_SHARED_DATA", "../shared/data") + "/mnist.pkl.gz")
    args = parser.parse_args()

    if args.one_thread_below is not None:
        try:
            from bptrain.fast import threads as cores
        except ImportError:  # a tree from before the core/fast split
            from bptrain import cores

        cores.ONE_THREAD_BELOW = dict.fromkeys(cores.ONE_THREAD_BELOW, args.one_thread_below)
    if args.core_for_distortions_up_to is not None:
        from bptrain.fast import threads

        threads.CORE_FOR_DISTORTIONS_UP_TO = args.core_for_distortions_up_to
    data = load_dataset(Path(args.data))
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, augment=args.augment,
                             elastic_alpha=args.elastic_alpha, elastic_sigma=args.elastic_sigma,
                             **({"affine_rotate": 15.0, "affine_scale": 0.15} if args.affine else {}),
                             **SETTINGS[args.settings])
    model = MLP(tuple(int(n) for n in args.sizes.split(",")), "ce", dtype=np.float32, seed=0,
                activation=args.activation)
    cpu_at_end = []
    engine = {"engine": args.engine} if args.engine else {}
    result = train(model, data, settings, progress=False,
                   on_epoch=lambda record, improved: cpu_at_end.append(time.process_time()), **engine)
    middle = range(1, max(2, args.epochs - 1))
    wall = statistics.median(result.history[i].seconds for i in middle)
    cpu = statistics.median(cpu_at_end[i] - cpu_at_end[i - 1] for i in middle)
    print(f"seconds {wall:.4f} cpu {cpu:.4f}")


if __name__ == "__main__":
    main()
