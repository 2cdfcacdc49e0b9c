"""Training on a busy machine: bptrain's thread policy against the same epoch forced onto one thread.

What a user meets: ``bptrain train --epochs 1`` (the default 784-128-64-10 at batch 32), the
784-1000-500-10 distorted run (configs/ciresan-1000-500.toml, --epochs 1) and the page's training
(``bptrain serve`` with headless Chromium on its page pressing Train, 2 epochs of the default run, as
``live_overhead.py`` does it), each quiet and with one and two other busy processes (``python -c 'while True: pass'``, started here and ended by PID).
Every round runs, under the same load and in alternating order, two processes of the same run:

- policy: as a user runs it (bptrain.fast.threads decides, group by group);
- forced: with ``OPENBLAS_NUM_THREADS=1`` (for the page: the server's).

With ``--torch-python``, PyTorch's default epoch (``compare_pytorch.py``, the middle of 3, with shifts) is
the reference: its default two threads against ``torch.set_num_threads(1)``.

The time is the epoch's seconds in the history file (no process start or data loading). Prints, per
load and run, the median seconds of each, the median and range of the per-round ratios policy/forced,
and whether the two saved models were byte-identical in every round (the numbers may not depend on
the threads)::

    python benchmarks/busy_machine.py --data ../shared/data/mnist.pkl.gz --rounds 5 --big-rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = {  # name -> bptrain train arguments
    "default": ["--epochs", "1"],
    "1000-500 distorted": ["--config", str(HERE.parent / "configs" / "ciresan-1000-500.toml"), "--epochs", "1"],
    "page": None,  # bptrain serve, trained from its page in headless Chromium (live_overhead.run_serve)
    "pytorch": None,  # the reference: compare_pytorch.py's default epoch on 2 threads against 1 (--torch-python)
}
PAGE_EPOCHS = 2


def start_busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()  # by its own PID
        process.wait()


def train_epoch(args: list[str], data: str, out: Path, env: dict) -> tuple[float, bytes]:
    """(the epoch's seconds from the history file, the saved model's bytes)."""
    subprocess.run([sys.executable, "-m", "bptrain", "train", "--data", data, *args, "--out", str(out), "-q"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    history = json.loads(out.with_suffix(".history.json").read_text())
    seconds = sum(record["seconds"] for record in history["epochs"])
    model = out.read_bytes()
    for path in out.parent.glob(out.stem + "*"):
        path.unlink()
    return seconds, model


def page_epochs(data: str, work: Path, env: dict) -> tuple[float, bytes]:
    """(the page's run's epoch seconds, the trained model's bytes)."""
    sys.path.insert(0, str(HERE))
    from live_overhead import run_serve

    kept = []
    folder = Path(tempfile.mkdtemp(dir=work))
    seconds = run_serve(Path(data), PAGE_EPOCHS, folder, "browser", env=env, keep_model=kept)
    return seconds, kept[0]


def torch_epoch(python: str, idx: str, threads: int) -> tuple[float, bytes]:
    """(PyTorch's default epoch with shifts, the middle of 3, on ``threads`` threads; no model to compare)."""
    out = subprocess.run([python, str(HERE / "compare_pytorch.py"), "--settings", "default", "--augment", "1",
                          "--threads", str(threads), "--data", idx], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[1]), b""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the default run")
    parser.add_argument("--big-rounds", type=int, default=3, help="rounds of the 1000-500 distorted run")
    parser.add_argument("--loads", default="0,1,2", help="busy processes, comma-separated")
    parser.add_argument("--runs", default=",".join(RUNS), help="which runs, comma-separated")
    parser.add_argument("--torch-python", default=None, help="a Python with torch, for the pytorch run")
    parser.add_argument("--idx", default=None, help="the folder of the IDX files, for the pytorch run "
                                                    "(default: idx/ beside --data)")
    args = parser.parse_args()
    if args.torch_python is None:
        args.runs = ",".join(name for name in args.runs.split(",") if name != "pytorch")
    idx = args.idx or str(Path(args.data).parent / "idx")
    policy_env = {k: v for k, v in os.environ.items()
                  if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "BPTRAIN_BLAS_THREADS")}
    forced_env = {**policy_env, "OPENBLAS_NUM_THREADS": "1"}
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for load in (int(n) for n in args.loads.split(",")):
            for name in args.runs.split(","):
                rounds = args.rounds if name == "default" else args.big_rounds  # the page: as many as the big run
                times = {"policy": [], "forced": []}
                same = True
                busy = start_busy(load)
                try:
                    for r in range(rounds):
                        order = ("policy", "forced") if r % 2 == 0 else ("forced", "policy")
                        models = {}
                        for kind in order:
                            env = policy_env if kind == "policy" else forced_env
                            if name == "pytorch":  # its own thread count: 2 as it starts, or 1
                                seconds, models[kind] = torch_epoch(args.torch_python, idx,
                                                                    2 if kind == "policy" else 1)
                            elif name == "page":
                                seconds, models[kind] = page_epochs(args.data, Path(work), env)
                            else:
                                seconds, models[kind] = train_epoch(RUNS[name], args.data, Path(work) / f"{kind}.npy",
                                                                    env)
                            times[kind].append(seconds)
                        same = same and models["policy"] == models["forced"]
                        print(f"load {load} {name} round {r + 1}: policy {times['policy'][-1]:.2f} s, "
                              f"forced {times['forced'][-1]:.2f} s", file=sys.stderr, flush=True)
                finally:
                    stop(busy)
                ratios = [p / f for p, f in zip(times["policy"], times["forced"])]
                rows.append((load, name, statistics.median(times["policy"]), statistics.median(times["forced"]),
                             statistics.median(ratios), min(ratios), max(ratios), same))
    print("| busy processes | run | policy (median s) | one thread (median s) | policy / one thread: median "
          "(range) | same model bytes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for load, name, p, f, ratio, low, high, same in rows:
        print(f"| {load} | {name} | {p:.2f} | {f:.2f} | {ratio:.2f}x ({low:.2f}-{high:.2f}) | "
              f"{'n/a' if name == 'pytorch' else 'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
