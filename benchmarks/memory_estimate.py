"""Peak resident memory of short bptrain runs against bptrain.app.memory's estimate of what they need.

Each row runs one real ``bptrain`` command in a subprocess (``train`` for one epoch on the real MNIST,
``--resume`` of the first row's model, ``bench``, ``gradcheck``) and reads its peak resident set size
from the kernel (``os.wait4``'s ru_maxrss: that process alone). The estimate is computed here from the
same settings. It is meant to be an upper bound that is not far off: measured / estimated between
about 0.6 and 1.0 (the estimate includes its margin, bptrain.app.memory.MARGIN, and the baseline).

    python benchmarks/memory_estimate.py                 # every row, the fast engine
    python benchmarks/memory_estimate.py --quick         # the first three rows
    python benchmarks/memory_estimate.py --engine reference   # once the reference engine exists

``--engine`` is passed on to ``bptrain train`` only when it is not "fast" (train's default).
Prints a Markdown table (benchmarks/README.md keeps the measured ones).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bptrain.app import memory

DATA = Path(os.environ.get("BPTRAIN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

#: (description, command arguments after `bptrain`, estimate(engine, data)); "{dir}" is a temporary directory.
ROWS = [
    ("defaults 784-128-64-10, batch 32",
     ["train", "--epochs", "1"],
     lambda engine, data: memory.estimate((784, 128, 64, 10), 32, engine=engine, augment=1, data=data)),
    ("784-2000-10, batch 256",
     ["train", "--epochs", "1", "--sizes", "784,2000,10", "--batch-size", "256"],
     lambda engine, data: memory.estimate((784, 2000, 10), 256, engine=engine, augment=1, data=data)),
    ("784-4000-10, batch 512",
     ["train", "--epochs", "1", "--sizes", "784,4000,10", "--batch-size", "512"],
     lambda engine, data: memory.estimate((784, 4000, 10), 512, engine=engine, augment=1, data=data)),
    ("784-1000-500-10 adam, batch 256",
     ["train", "--epochs", "1", "--sizes", "784,1000,500,10", "--optimizer", "adam", "--batch-size", "256"],
     lambda engine, data: memory.estimate((784, 1000, 500, 10), 256, engine=engine, optimizer="adam", augment=1,
                                          data=data)),
    ("784-1000-10 float64, batch 256",
     ["train", "--epochs", "1", "--sizes", "784,1000,10", "--dtype", "float64", "--batch-size", "256"],
     lambda engine, data: memory.estimate((784, 1000, 10), 256, engine=engine, dtype="float64", augment=1,
                                          data=data)),
    ("784-800-10 elastic, batch 64",
     ["train", "--epochs", "1", "--sizes", "784,800,10", "--batch-size", "64", "--elastic-alpha", "34"],
     lambda engine, data: memory.estimate((784, 800, 10), 64, engine=engine, augment=1, distorts=True, data=data)),
    ("784-12000-10 plain SGD, batch 512",
     ["train", "--epochs", "1", "--sizes", "784,12000,10", "--momentum", "0", "--augment", "0",
      "--batch-size", "512"],
     lambda engine, data: memory.estimate((784, 12000, 10), 512, engine=engine, momentum=0, data=data)),
    ("--resume of the 784-2000-10 model, batch 256",
     ["train", "--epochs", "1", "--resume", "{dir}/resume.npy", "--batch-size", "256"],
     lambda engine, data: memory.estimate((784, 2000, 10), 256, engine=engine, augment=1, data=data,
                                          resumed_from=((784, 2000, 10), 4))),
    ("bench 784-1000-10, batches 10 and 1000",
     ["bench", "--sizes", "784,1000,10", "--batch-size", "10", "--batch-size", "1000", "--runs", "1",
      "--warmup", "0", "--samples", "10000"],
     lambda engine, data: memory.bench_estimate((784, 1000, 10), (10, 1000), n_samples=10_000, engine=engine,
                                                settings=[type("S", (), {"momentum": 0.0, "augment": 0}),
                                                          type("S", (), {"momentum": 0.9, "augment": 1})])),
    ("gradcheck 4-2-2, batch 1 (the baseline: imports, no data)",
     ["gradcheck", "--sizes", "4,2,2", "--batch-size", "1"],
     lambda engine, data: memory.gradcheck_estimate((4, 2, 2), 1, engine=engine)),
    ("gradcheck 784-4000-10, batch 64",
     ["gradcheck", "--sizes", "784,4000,10", "--batch-size", "64", "--max-entries", "20"],
     lambda engine, data: memory.gradcheck_estimate((784, 4000, 10), 64, engine=engine)),
]


def peak_rss(args, cwd, env) -> tuple[int, float, int, str]:
    """(peak resident bytes, seconds, exit code, last stderr line) of ``python -m bptrain ARGS``."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "bptrain", *args], cwd=cwd, env=env,
                                   stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    return usage.ru_maxrss * 1024, seconds, process.returncode, lines[-1] if lines else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", action="append", choices=memory.ENGINES,
                        help="engine(s) to measure (repeat the option) [default: fast]")
    parser.add_argument("--data", type=Path, default=DATA / "mnist.pkl.gz")
    parser.add_argument("--quick", action="store_true", help="only the first three rows")
    parser.add_argument("--breakdown", action="store_true", help="also print each estimate's parts")
    args = parser.parse_args()
    engines = args.engine or ["fast"]
    rows = ROWS[:3] if args.quick else ROWS
    data = memory.DataShape.mnist(784)  # what the loader makes of mnist.pkl.gz: float32 images, int64 labels
    env = {**os.environ, "BPTRAIN_DATA": str(args.data.resolve())}

    print(f"{platform.processor() or platform.machine()}, {_cpu_model()}, Python {platform.python_version()}, "
          f"available {memory.format_gb(memory.available_bytes() or 0)}; baseline {memory.format_gb(memory.BASELINE_BYTES)}, "
          f"margin {100 * memory.MARGIN:.0f}%")
    print()
    print("| engine | run | peak RSS | estimate | measured / estimate | estimate's peak phase | seconds |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: |")
    with tempfile.TemporaryDirectory(prefix="bptrain-memory-") as directory:
        for engine in engines:
            for name, command, make_estimate in rows:
                command = [part.replace("{dir}", directory) for part in command]
                if command[0] == "train":
                    command += ["--out", f"{directory}/{engine}.npy", "-q"]
                    if "--resume" not in command and "784,2000,10" in command:
                        command[-2] = f"{directory}/resume.npy"  # the model the --resume row continues
                if engine != "fast" and command[0] in ("train", "bench"):  # gradcheck always runs the core
                    command += ["--engine", engine]
                estimate = make_estimate(engine, data)
                peak, seconds, code, last = peak_rss(command, directory, env)
                if code != 0:
                    print(f"| {engine} | {name} | failed ({code}): {last} | | | | |")
                    continue
                print(f"| {engine} | {name} | {peak / 1e6:,.0f} MB | {estimate.total / 1e6:,.0f} MB | "
                      f"{peak / estimate.total:.2f} | {estimate.phase} | {seconds:.1f} |", flush=True)
                if args.breakdown:
                    print("\n".join("    " + line for line in estimate.describe().splitlines()), flush=True)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" x {os.cpu_count()}"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
