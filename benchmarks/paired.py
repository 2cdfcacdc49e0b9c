"""Alternate bptrain (one or more source trees) and PyTorch epoch timings, process by process.

Timing on a shared machine drifts by tens of percent within minutes, so the
only comparison that holds is between runs back to back: every round runs each
configuration once, as its own process (``epoch_bptrain.py`` or
``compare_pytorch.py``), in a rotated order, and the ratios are taken within
the round. Prints each configuration's median seconds and the median of the
per-round ratios::

    python benchmarks/paired.py --rounds 3 --batch-size 10 --batch-size 32 --batch-size 128 \\
        --tree now=. --tree before=/tmp/before --torch-python /tmp/venv-torch/bin/python
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (name, settings, augment): plain SGD, train's defaults without and with the 1-pixel shifts
BPTRAIN_CONFIGS = (("plain", "plain", 0), ("default", "default", 0), ("default+shift", "default", 1))


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(command, env, metric: str) -> float:
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("seconds "):
            words = line.split()  # seconds WALL cpu CPU
            return float(words[1] if metric == "wall" else words[3])
    raise RuntimeError(f"{' '.join(command)} printed no time:\n{out.stdout}\n{out.stderr}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, action="append", dest="batch_sizes")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="a bptrain source tree to time (PYTHONPATH); repeat to compare versions")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs bptrain")
    parser.add_argument("--torch-python", default=None, help="a Python with torch; omit to skip PyTorch")
    parser.add_argument("--threads", type=int, default=2,
                        help="BLAS / PyTorch threads per process (OPENBLAS_NUM_THREADS, torch --threads)")
    parser.add_argument("--metric", choices=("wall", "cpu"), default="wall",
                        help="wall-clock seconds, or the process's CPU seconds (steadier when other jobs share "
                             "the cores, and with one thread the same work)")
    parser.add_argument("--configs", default=",".join(c[0] for c in BPTRAIN_CONFIGS),
                        help="which bptrain configurations, comma-separated")
    args = parser.parse_args()
    batch_sizes = args.batch_sizes or [10, 32, 128]
    trees = [t.split("=", 1) for t in args.tree] or [["now", str(HERE.parent)]]
    wanted = args.configs.split(",")

    jobs = {}  # (batch, label) -> (command, env)
    for batch in batch_sizes:
        for tree_name, tree in trees:
            env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()), OPENBLAS_NUM_THREADS=str(args.threads))
            for name, settings, augment in BPTRAIN_CONFIGS:
                if name in wanted:
                    jobs[batch, f"{tree_name} {name}"] = (
                        [args.python, str(HERE / "epoch_bptrain.py"), "--batch-size", str(batch),
                         "--settings", settings, "--augment", str(augment)], env)
        if args.torch_python:
            jobs[batch, "pytorch default"] = ([args.torch_python, str(HERE / "compare_pytorch.py"),
                                               "--batch-size", str(batch), "--threads", str(args.threads)],
                                              dict(os.environ))
    print(f"CPU: {cpu_model()}; {os.cpu_count()} logical CPUs; {args.rounds} rounds; "
          f"{args.threads} BLAS threads; {args.metric} seconds of the last of 2 epochs (50,000 images, 784-128-64-10)", flush=True)
    times = {key: [] for key in jobs}
    keys = list(jobs)
    for round_ in range(args.rounds):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            command, env = jobs[key]
            times[key].append(run(command, env, args.metric))
        print(f"round {round_ + 1}: " + ", ".join(f"{b}/{label} {times[b, label][-1]:.3f}" for b, label in keys),
              flush=True)

    for batch in batch_sizes:
        labels = [label for b, label in keys if b == batch]
        print(f"\nbatch {batch}")
        for label in labels:
            series = times[batch, label]
            print(f"  {label:24s} median {statistics.median(series):7.3f} s   runs "
                  + " ".join(f"{t:.3f}" for t in series))
        base_pairs = [(a, b) for a in labels for b in labels if a != b and _wanted_ratio(a, b)]
        for a, b in base_pairs:
            ratios = [x / y for x, y in zip(times[batch, a], times[batch, b])]
            print(f"  {a} / {b}: median {statistics.median(ratios):.2f}  (" +
                  " ".join(f"{r:.2f}" for r in ratios) + ")")


def _wanted_ratio(a: str, b: str) -> bool:
    """Within a tree: default / plain; across trees: the same configuration; PyTorch / each bptrain default."""
    tree_a, name_a = a.split(" ", 1)
    tree_b, name_b = b.split(" ", 1)
    if tree_a == "pytorch":
        return name_b.startswith("default")
    if tree_b == "pytorch":
        return False
    if tree_a == tree_b:
        return name_b == "plain" and name_a != "plain"
    return name_a == name_b and tree_a > tree_b


if __name__ == "__main__":
    main()
