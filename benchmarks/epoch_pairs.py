"""Seconds per training epoch of several set-ups, run in turn (A, B, A, B, ...) in one process.

Why: the cost of an optimizer, an activation or the per-layer speed sampling is a
ratio between epochs of the same network on the same data; alternating the
set-ups round by round and taking the median of the per-round ratios cancels the
drift of a shared machine. Each set-up keeps its own network and optimizer.

    python benchmarks/epoch_pairs.py --data ../shared/data/mnist.pkl.gz --samples 20000 \\
        "optimizer=sgd,momentum=0,weight_decay=0" "optimizer=adam"

A set-up is comma-separated key=value: optimizer, activation, momentum, weight_decay,
lr, speed (1: sample per-layer gradient norms as training does; 0: not).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bptrain.data.loader import load_dataset
from bptrain.core.network import MLP
from bptrain.core.optimizers import make_optimizer
from bptrain.speed import SpeedRecorder
from bptrain.train import TrainSettings, run_epoch


def parse(spec: str) -> dict:
    options = {"optimizer": "sgd", "activation": "sigmoid", "momentum": 0.9, "weight_decay": 1e-4,
               "lr": None, "speed": 1}
    for part in filter(None, spec.split(",")):
        key, value = part.split("=")
        options[key] = value if key in ("optimizer", "activation") else float(value)
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
    onehot = np.zeros((len(x), sizes[-1]), np.float32)
    onehot[np.arange(len(x)), y] = 1
    runs = []
    for spec in args.setups:
        o = parse(spec)
        model = MLP(sizes, activation=o["activation"], seed=0)
        settings = TrainSettings(lr=o["lr"], optimizer=o["optimizer"], momentum=o["momentum"],
                                 weight_decay=o["weight_decay"])
        runs.append((spec, model, make_optimizer(settings, model.weights, model.biases), settings.lr,
                     SpeedRecorder(model) if o["speed"] else None, []))
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for spec, model, optimizer, lr, speed, times in runs:
            started = time.perf_counter()
            run_epoch(model, optimizer, x, onehot, args.batch_size, lr, round_, False, speed)
            if round_:
                times.append(time.perf_counter() - started)
            if speed is not None:
                speed.take_means()
    base = runs[0][5]
    print(f"{args.sizes}, batch {args.batch_size}, {len(x)} samples per epoch, {args.rounds} rounds")
    for spec, *_, times in runs:
        ratios = [t / b for t, b in zip(times, base)]
        print(f"{statistics.median(times):8.3f} s/epoch  x{statistics.median(ratios):.3f} "
              f"(per-round ratios {min(ratios):.3f}..{max(ratios):.3f})  {spec}")


if __name__ == "__main__":
    main()
