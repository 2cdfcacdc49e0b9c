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
# (name, epoch_bptrain.py arguments): plain SGD; train's defaults without and with the 1-pixel shifts; Adam
BPTRAIN_CONFIGS = {
    "plain": ["--settings", "plain", "--augment", "0"],
    "default": ["--settings", "default", "--augment", "0"],
    "default+shift": ["--settings", "default", "--augment", "1"],
    "adam": ["--settings", "adam", "--augment", "0"],
}
# PyTorch doing the same work as the bptrain configuration of the same name (compare_pytorch.py)
TORCH_CONFIGS = {
    "default": ["--settings", "default", "--augment", "0"],
    "default+shift": ["--settings", "default", "--augment", "1"],
}


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
    parser.add_argument("--torch-threads", default="1,2",
                        help="PyTorch's thread counts to time, comma-separated (each is compared)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="OPENBLAS_NUM_THREADS for bptrain (default: unset; bptrain.fast.threads decides per step size)")
    parser.add_argument("--metric", choices=("wall", "cpu"), default="wall",
                        help="wall-clock seconds, or the process's CPU seconds (steadier when other jobs share "
                             "the cores, and with one thread the same work)")
    parser.add_argument("--configs", default=",".join(BPTRAIN_CONFIGS),
                        help="which bptrain configurations, comma-separated (PyTorch times those it has too)")
    args = parser.parse_args()
    batch_sizes = args.batch_sizes or [10, 32, 128]
    trees = [t.split("=", 1) for t in args.tree] or [["now", str(HERE.parent)]]
    wanted = args.configs.split(",")

    jobs = {}  # (batch, label) -> (command, env); labels are "<tree> <config>" or "pytorch/<n>t <config>"
    for batch in batch_sizes:
        for tree_name, tree in trees:
            env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
            if args.blas_threads:
                env["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
            for name in wanted:
                jobs[batch, f"{tree_name} {name}"] = (
                    [args.python, str(HERE / "epoch_bptrain.py"), "--batch-size", str(batch)]
                    + BPTRAIN_CONFIGS[name], env)
        if args.torch_python:
            for threads in args.torch_threads.split(","):
                for name in wanted:
                    if name in TORCH_CONFIGS:
                        jobs[batch, f"pytorch/{threads}t {name}"] = (
                            [args.torch_python, str(HERE / "compare_pytorch.py"), "--batch-size", str(batch),
                             "--threads", threads] + TORCH_CONFIGS[name], dict(os.environ))
    print(f"CPU: {cpu_model()}; {os.cpu_count()} logical CPUs; {args.rounds} rounds; bptrain BLAS threads "
          f"{args.blas_threads or 'as bptrain.fast.threads decides'}; {args.metric} seconds of the middle of 3 epochs "
          f"(50,000 images, 784-128-64-10, validation included)", flush=True)
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
            print(f"  {label:28s} median {statistics.median(series):7.3f} s   runs "
                  + " ".join(f"{t:.3f}" for t in series))
        for a, b in [(a, b) for a in labels for b in labels if a != b and _wanted_ratio(a, b, trees[0][0])]:
            ratios = [x / y for x, y in zip(times[batch, a], times[batch, b])]
            print(f"  {a} / {b}: median {statistics.median(ratios):.2f}  (" +
                  " ".join(f"{r:.2f}" for r in ratios) + ")")


def _wanted_ratio(a: str, b: str, first_tree: str) -> bool:
    """Within a tree: each configuration / plain; across trees: the same configuration;
    PyTorch / the first tree's same configuration."""
    source_a, name_a = a.split(" ", 1)
    source_b, name_b = b.split(" ", 1)
    if source_a.startswith("pytorch"):
        return source_b == first_tree and name_a == name_b
    if source_b.startswith("pytorch"):
        return False
    if source_a == source_b:
        return name_b == "plain" and name_a != "plain"
    return name_a == name_b and source_a > source_b


if __name__ == "__main__":
    main()
