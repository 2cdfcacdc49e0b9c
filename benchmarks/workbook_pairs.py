"""`bptrain train --workbook` against `--engine reference` with the same plain SGD, process by process.

Each round runs both commands once, back to back, in alternating order, and the ratio is taken within
the round (timing on a shared machine drifts too much for anything else). A solved workbook is needed:
tests/workbook_solved.py is one (copy it; no solution ships in the package)::

    python benchmarks/workbook_pairs.py --workbook tests/workbook_solved.py --data data/mnist.pkl.gz --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(kind: str, args, out: Path) -> list[str]:
    common = ["--data", str(args.data), "--epochs", str(args.epochs), "--augment", "0", "--seed", "0", "-q",
              "--sizes", args.sizes, "--out", str(out)]
    if kind == "workbook":
        return [sys.executable, "-m", "bptrain", "train", "--workbook", str(args.workbook)] + common
    return [sys.executable, "-m", "bptrain", "train", "--engine", "reference", "--momentum", "0",
            "--weight-decay", "0"] + common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workbook", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sizes", default="784,128,64,10")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="workbook-bench-"))
    times = {"workbook": [], "reference": []}
    ratios = []
    for round_ in range(args.rounds):
        order = ("workbook", "reference") if round_ % 2 == 0 else ("reference", "workbook")
        this = {}
        for kind in order:
            out = folder / f"{kind}.npy"
            for stale in (out, out.with_suffix(".history.json")):
                stale.unlink(missing_ok=True)
            started = time.perf_counter()
            subprocess.run(command(kind, args, out), check=True)
            this[kind] = time.perf_counter() - started
            times[kind].append(this[kind])
        ratios.append(this["workbook"] / this["reference"])
        print(f"round {round_ + 1}: workbook {this['workbook']:.2f} s, reference {this['reference']:.2f} s, "
              f"ratio {ratios[-1]:.3f}", flush=True)
    print(f"median: workbook {statistics.median(times['workbook']):.2f} s, reference "
          f"{statistics.median(times['reference']):.2f} s; median ratio {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
