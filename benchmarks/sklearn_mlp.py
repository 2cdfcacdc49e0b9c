"""BPClassifier beside scikit-learn's MLPClassifier on MNIST: test accuracy and seconds to fit, paired.

Both get the same hidden layers (128, 64), the same number of epochs and the 50,000 training images
as they are (0-1 pixels); everything else is each one's own default (BPClassifier: bptrain train's
sigmoid units, SGD with momentum 0.9, batch 32, cosine schedule, the last epoch kept; MLPClassifier:
relu units, Adam at 0.001, batch 200). Every fit runs in a process of its own, A and B alternating
with the order turned round every round (A B, B A, ...); the ratios are taken within a round::

    python benchmarks/sklearn_mlp.py --rounds 5 --data ../shared/data/mnist.pkl.gz --epochs 20
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/sklearn_mlp.py --rounds 5   # one thread each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HIDDEN = (128, 64)
KINDS = ("bptrain", "sklearn")


def fit_once(kind: str, data: str, epochs: int, samples: int | None) -> dict:
    """One fit and its test accuracy (runs in the child process)."""
    from bptrain import load_dataset

    dataset = load_dataset(data)
    x, y = dataset.train.x[:samples], dataset.train.y[:samples]
    if kind == "bptrain":
        from bptrain.sklearn import BPClassifier

        clf = BPClassifier(HIDDEN, epochs=epochs, random_state=0)
    else:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=epochs stops it before its tol does
        clf = MLPClassifier(HIDDEN, max_iter=epochs, random_state=0)
    started = time.perf_counter()
    clf.fit(x, y)
    seconds = time.perf_counter() - started
    return {"kind": kind, "seconds": seconds, "accuracy": float(clf.score(dataset.test.x, dataset.test.y))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=None, help="the first N training images [default: all]")
    parser.add_argument("--data", default=os.environ.get("BPTRAIN_SHARED_DATA", "../shared/data") + "/mnist.pkl.gz"
                        if not os.environ.get("BPTRAIN_DATA") else os.environ["BPTRAIN_DATA"])
    parser.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(fit_once(args.one, args.data, args.epochs, args.samples)))
        return
    results = {kind: [] for kind in KINDS}
    ratios = []
    for round_ in range(args.rounds):
        order = KINDS if round_ % 2 == 0 else KINDS[::-1]
        got = {}
        for kind in order:
            command = [sys.executable, str(Path(__file__).resolve()), "--one", kind, "--data", args.data,
                       "--epochs", str(args.epochs)] + (["--samples", str(args.samples)] if args.samples else [])
            line = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            got[kind] = json.loads(line)
            results[kind].append(got[kind])
        ratios.append(got["bptrain"]["seconds"] / got["sklearn"]["seconds"])
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"round {round_ + 1}: " + "  ".join(f"{k} {got[k]['seconds']:.1f} s {100 * got[k]['accuracy']:.2f}%"
                                                  for k in KINDS) + f"  ratio {ratios[-1]:.2f}  load {load:.1f}",
              flush=True)
    for kind in KINDS:
        seconds = [r["seconds"] for r in results[kind]]
        accuracy = [100 * r["accuracy"] for r in results[kind]]
        print(f"{kind}: fit {statistics.median(seconds):.1f} s median ({min(seconds):.1f}-{max(seconds):.1f}), "
              f"test accuracy {statistics.median(accuracy):.2f}% ({min(accuracy):.2f}-{max(accuracy):.2f})")
    print(f"bptrain / sklearn seconds per round: median {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}-{max(ratios):.2f}), {len(ratios)} rounds")


if __name__ == "__main__":
    main()
