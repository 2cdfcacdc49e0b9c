"""Seconds per training epoch of several set-ups, run in turn (A, B, A, B, ...) in one process.

Why: the cost of an optimizer, an activation or an engine is a
ratio between epochs of the same network on the same data; alternating the
set-ups round by round and taking the median of the per-round ratios cancels the
drift of a shared machine. Each set-up keeps its own network and optimizer.

    python benchmarks/epoch_pairs.py --data ../shared/data/mnist.pkl.gz --samples 20000 \\
        "optimizer=sgd,momentum=0,weight_decay=0" "optimizer=adam"

A set-up is comma-separated key=value: optimizer, activation, momentum, weight_decay, lr,
engine (fast or reference: "engine=reference" against "engine=fast" is the readable core's cost).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bptrain.core.network import MLP, one_hot
from bptrain.core.epoch_steps import EpochSteps
from bptrain.core.training import TrainSettings
from bptrain.data.loader import load_dataset
from bptrain.engines import make_engine


def parse(spec: str) -> dict:
    options = {"optimizer": "sgd", "activation": "sigmoid", "momentum": 0.9, "weight_decay": 1e-4,
               "lr": None, "engine": "fast"}
    for part in filter(None, spec.split(",")):
        key, value = part.split("=")
        options[key] = value if key in ("optimizer", "activation", "engine") else float(value)
    return options


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setups", nargs="+")
    parser.add_argument("--data", default="../shared/data/mnist.pkl.gz")
    parser.add_argument("--sizes", default="784,128,64,10")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    data = load_dataset(args.data)
    x, y = data.train.x[:args.samples], data.train.y[:args.samples]
    sizes = tuple(int(n) for n in args.sizes.split(","))
    onehot = one_hot(y, sizes[-1], np.float32)
    runs = []
    for spec in args.setups:
        o = parse(spec)
        model = MLP(sizes, activation=o["activation"], seed=0)
        settings = TrainSettings(lr=o["lr"], optimizer=o["optimizer"], momentum=o["momentum"],
                                 weight_decay=o["weight_decay"], batch_size=args.batch_size)
        runs.append((spec, model, make_engine(o["engine"], model, settings, args.batch_size), settings.lr, []))
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for spec, model, engine, lr, times in runs:
            started = time.perf_counter()
            engine.run_epoch(x, onehot, EpochSteps(model, round_ + 1, len(x), args.batch_size, lr))
            if round_:
                times.append(time.perf_counter() - started)
    base = runs[0][4]
    print(f"{args.sizes}, batch {args.batch_size}, {len(x)} samples per epoch, {args.rounds} rounds")
    for spec, *_, times in runs:
        ratios = [t / b for t, b in zip(times, base)]
        print(f"{statistics.median(times):8.3f} s/epoch  x{statistics.median(ratios):.3f} "
              f"(per-round ratios {min(ratios):.3f}..{max(ratios):.3f})  {spec}")


if __name__ == "__main__":
    main()
