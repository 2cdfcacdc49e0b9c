"""bptrain: a small, fast, exact backpropagation trainer for MNIST, in NumPy.

    from bptrain import MLP, load_dataset, train, TrainSettings
    data = load_dataset("data/mnist.pkl.gz")
    model = MLP((784, 128, 64, 10), loss="ce", seed=0)
    train(model, data, TrainSettings(lr=0.1, epochs=5))

The algorithm itself is in :mod:`bptrain.core`; the fast engine in :mod:`bptrain.fast`.

The names below are loaded on first use: importing ``bptrain`` loads nothing else, so that the command
line (:mod:`bptrain.app.cli`) can set OpenBLAS's variables before NumPy loads it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_PUBLIC = {
    "Committee": ".core.committee", "MLP": ".core.network", "TrainSettings": ".core.training",
    "BptrainError": ".core.errors", "ConfigError": ".core.errors", "DataError": ".core.errors",
    "ModelFileError": ".core.errors", "TrainingDiverged": ".core.errors",
    "Dataset": ".data.loader", "Split": ".data.loader", "load_dataset": ".data.loader",
    "load_model": ".data.model_io", "save_model": ".data.model_io", "train": ".engines",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'bptrain' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
