"""`bptrain sweep` on this machine's processes against the same sweep on a Dask cluster, alternating.

Two measurements, each round running A then B as separate `bptrain sweep` processes (the order
alternating from round to round), the ratio taken within the round:

* ``overhead``: a 2-run sweep of a tiny network (synthetic 20-feature data, 20-16-3, 1 epoch), one
  run at a time (``--jobs 1``), locally and on a two-worker LocalCluster this script keeps running
  (``--scheduler ADDRESS``). Per run: the seconds from its start (process or task submitted) to its
  files in the folder, from summary.json; the difference is what the cluster adds to one run.
* ``grid``: a 4-run grid of small networks on MNIST (784-30-10, ``--lr 0.1,0.5 --loss ce,mse``),
  locally (two at a time, one BLAS thread each) against ``--scheduler local`` (the sweep's own
  LocalCluster of two one-thread workers, started and closed inside the command) and against the
  running cluster: the command's wall seconds.

    python benchmarks/sweep_cluster.py --rounds 5 --data ../shared/data/mnist.pkl.gz --epochs 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sweep(cwd: Path, out: str, *args) -> tuple[float, dict]:
    """(wall seconds, summary.json) of one `bptrain sweep` process into the (empty) folder ``out``."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bptrain", "sweep", *map(str, args), "--out-dir", out, "-q"],
                          cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"sweep failed: {done.stderr}")
    return wall, json.loads((Path(out) / "summary.json").read_text())


def per_run(summary: dict) -> list[float]:
    return [run["ended_at"] - run["started_at"] for run in summary["runs"]]


def paired(rounds: int, cwd: Path, a: tuple, b: tuple, measure) -> list[tuple[float, float]]:
    """[(A's figure, B's figure)] per round, each sweep into a folder of its own (a used one would skip its runs)."""
    pairs = []
    for i in range(rounds):
        order = [("a", a), ("b", b)] if i % 2 == 0 else [("b", b), ("a", a)]
        got = {}
        for tag, args in order:
            got[tag] = measure(*sweep(cwd, tempfile.mkdtemp(prefix=f"{tag}{i}-", dir=cwd), *args))
        pairs.append((got["a"], got["b"]))
    return pairs


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(name: str, pairs, unit: str = "s") -> None:
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    ratios = [y / x for x, y in pairs]
    print(f"{name}: A median {statistics.median(a):.2f} {unit} (min {min(a):.2f}, max {max(a):.2f}); "
          f"B median {statistics.median(b):.2f} {unit} (min {min(b):.2f}, max {max(b):.2f}); "
          f"B/A per pair: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); "
          f"B-A median {statistics.median(y - x for x, y in pairs):+.2f} {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mnist.pkl.gz")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", choices=("overhead", "grid"), default=None)
    options = parser.parse_args()

    import distributed

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_blobs, write_py2_pickle

    print(f"{cpu_model()}, {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="sweep-bench-") as folder:
            cwd = Path(folder)
            if options.only in (None, "overhead"):
                write_py2_pickle(cwd / "syn.pkl.gz", make_blobs())
                tiny = ("--data", "syn.pkl.gz", "--sizes", "20,16,3", "--epochs", "1", "--lr", "0.1,0.5", "--jobs", "1")
                runs = paired(options.rounds, cwd, tiny, (*tiny, "--scheduler", cluster.scheduler_address),
                              lambda wall, summary: per_run(summary))
                report("one tiny run, start to files (A local process, B task on the running cluster)",
                       [(x, y) for a, b in runs for x, y in zip(a, b)])
                walls = paired(options.rounds, cwd, tiny, (*tiny, "--scheduler", cluster.scheduler_address),
                               lambda wall, summary: wall)
                report("the 2-run tiny sweep, command wall (A local, B running cluster)", walls)
            if options.only in (None, "grid"):
                data = options.data.resolve()
                grid = ("--data", data, "--sizes", "784,30,10", "--lr", "0.1,0.5", "--loss", "ce,mse",
                        "--epochs", options.epochs)
                report(f"4-run grid of 784-30-10, {options.epochs} epochs, command wall (A local --jobs 2, "
                       "B --scheduler local)",
                       paired(options.rounds, cwd, grid, (*grid, "--scheduler", "local"), lambda wall, _: wall))
                report(f"4-run grid of 784-30-10, {options.epochs} epochs, command wall (A local --jobs 2, "
                       "B running two-worker cluster)",
                       paired(options.rounds, cwd, grid, (*grid, "--scheduler", cluster.scheduler_address),
                              lambda wall, _: wall))
    finally:
        cluster.close()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
