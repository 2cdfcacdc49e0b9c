"""Integration on the real MNIST (../shared/data/mnist.pkl.gz or $BPTRAIN_SHARED_DATA); skipped when absent.

The data set is loaded once for the module (about 220 MB); training runs in a subprocess through the
real command line, with one BLAS thread: on a shared 2-core machine OpenBLAS's second thread can make an
epoch many times slower, and the subprocess keeps the training's memory out of the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bptrain.data.loader import load_dataset
from bptrain.data.model_io import load_model


@pytest.fixture(scope="module")
def mnist(real_mnist_path):
    return load_dataset(real_mnist_path)


def test_loader_gives_the_documented_shapes_and_dtypes(mnist):
    for split, n in ((mnist.train, 50000), (mnist.validation, 10000), (mnist.test, 10000)):
        assert split.x.shape == (n, 784) and split.x.dtype == np.float32
        assert split.y.shape == (n,) and split.y.dtype == np.int64
        assert split.x.min() >= 0.0 and split.x.max() < 1.0
        assert set(np.unique(split.y)) == set(range(10))
    assert mnist.n_features == 784 and mnist.n_classes == 10


def test_one_epoch_through_the_cli_reaches_90_percent(mnist, real_mnist_path, tmp_path):
    out = tmp_path / "mnist.npy"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "bptrain", "train", "--data", str(real_mnist_path), "--sizes", "784,128,64,10",
         "--epochs", "1", "--batch-size", "32", "--lr", "0.5", "--seed", "0", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    model, meta = load_model(out)
    assert model.sizes == (784, 128, 64, 10) and model.loss == "ce"
    loss, predictions = model.evaluate(*mnist.test)
    accuracy = float(np.mean(predictions == mnist.test.y))
    assert accuracy > 0.90, f"test accuracy after one epoch: {accuracy:.4f}"
    # the validation accuracy recorded by training is the one we measure on the same split
    _, val_predictions = model.evaluate(*mnist.validation)
    assert meta["val_accuracy"] == pytest.approx(float(np.mean(val_predictions == mnist.validation.y)))
    history = json.loads((tmp_path / "mnist.history.json").read_text())
    assert len(history["epochs"]) == 1 and np.isfinite(history["epochs"][0]["train_loss"])
