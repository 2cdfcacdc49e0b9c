"""Seconds of a PyTorch training epoch doing the work ``bptrain train`` does (the middle of ``--epochs``).

Run it with a Python that has torch (it is never needed by bptrain or its
tests), e.g. ``python3 -m venv /tmp/venv-torch && /tmp/venv-torch/bin/pip
install torch numpy``. Prints ``seconds <wall> cpu <process CPU>``, like ``epoch_bptrain.py``;
``paired.py`` runs the two in alternation.

The same work as bptrain's default epoch (``epoch_bptrain.py``): the first 50,000 MNIST training
images (the IDX files, pixel/256 as in mnist.pkl.gz), 784-128-64-10 with sigmoid hidden layers, softmax
cross-entropy (mean over the batch), SGD with learning rate 0.1, momentum 0.9 and weight decay 1e-4 on
the weights only (``--settings plain``: neither), a fresh shuffle per epoch copied into contiguous
tensors, with ``--augment 1`` every image moved by a random shift of up to a pixel (grouped by shift,
as bptrain does), the mean training loss of the epoch, and the accuracy on the 10,000 validation images.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def read_idx(path: Path) -> np.ndarray:
    """An IDX file's array (uint8 data; the header gives the number of dimensions)."""
    raw = gzip.decompress(path.read_bytes())
    n_dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(n_dims))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * n_dims).reshape(shape)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--settings", choices=("default", "plain"), default="default")
    parser.add_argument("--epochs", type=int, default=3, help="the first and the last are not timed")
    parser.add_argument("--augment", type=int, default=0, help="max shift in pixels (bptrain train's default: 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("BPTRAIN_SHARED_DATA", "../shared/data")) / "idx")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    images = read_idx(args.data / "train-images-idx3-ubyte.gz").reshape(60_000, 784)
    labels = read_idx(args.data / "train-labels-idx1-ubyte.gz").astype(np.int64)
    x = torch.from_numpy(images[:50_000].astype(np.float32) / 256)
    y = torch.from_numpy(labels[:50_000])
    x_val = torch.from_numpy(images[50_000:].astype(np.float32) / 256)
    y_val = torch.from_numpy(labels[50_000:])

    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.Sigmoid(), torch.nn.Linear(128, 64),
                                torch.nn.Sigmoid(), torch.nn.Linear(64, 10))
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    if args.settings == "default":
        groups = [{"params": weights, "weight_decay": 1e-4}, {"params": biases, "weight_decay": 0.0}]
        optimizer = torch.optim.SGD(groups, lr=args.lr, momentum=0.9)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_function = torch.nn.CrossEntropyLoss()

    n = len(x)
    seconds = []
    for _ in range(args.epochs):
        started, started_cpu = time.perf_counter(), time.process_time()
        order = torch.randperm(n)
        xs, ys = x[order], y[order]  # one contiguous shuffled copy per epoch, as bptrain does
        if args.augment:
            shift_images(xs, args.augment)
        total = torch.zeros(())
        for start in range(0, n, args.batch_size):
            xb, yb = xs[start:start + args.batch_size], ys[start:start + args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(yb)
        float(total) / n  # the epoch's mean training loss, as bptrain reports it
        with torch.no_grad():
            float((model(x_val).argmax(1) == y_val).float().mean())  # validation accuracy, as bptrain reports it
        seconds.append((time.perf_counter() - started, time.process_time() - started_cpu))
    middle = seconds[1:max(2, args.epochs - 1)]
    wall = statistics.median(w for w, _ in middle)
    cpu = statistics.median(c for _, c in middle)
    print(f"seconds {wall:.4f} cpu {cpu:.4f}")


def shift_images(images: torch.Tensor, max_shift: int) -> None:
    """Move each row (a 28x28 image) by its own random (dy, dx) in [-max_shift, max_shift]², in place."""
    choices = 2 * max_shift + 1
    codes = torch.randint(0, choices * choices, (len(images),))
    squares = images.view(-1, 28, 28)
    for code in range(choices * choices):
        dy, dx = code // choices - max_shift, code % choices - max_shift
        rows = torch.nonzero(codes == code).flatten()
        if (dy == 0 and dx == 0) or len(rows) == 0:
            continue
        block = squares[rows]
        shifted = torch.zeros_like(block)
        shifted[:, max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)] = \
            block[:, max(-dy, 0):28 - max(dy, 0), max(-dx, 0):28 - max(dx, 0)]
        squares[rows] = shifted


if __name__ == "__main__":
    main()
