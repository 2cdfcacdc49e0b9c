"""bptrain: a small, fast, exact backpropagation trainer for MNIST, in NumPy.

    from bptrain import MLP, load_dataset, train, TrainSettings
    data = load_dataset("data/mnist.pkl.gz")
    model = MLP((784, 128, 64, 10), loss="ce", seed=0)
    train(model, data, TrainSettings(lr=0.1, epochs=5))

The algorithm itself is in :mod:`bptrain.core`; the fast engine in :mod:`bptrain.fast`.
"""

__version__ = "0.1.0"

import os as _os

# OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) before they sleep, and OpenBLAS reads how long
# once, when NumPy loads it. When the steps drop to one thread (bptrain.fast.threads), that spinning
# takes the core the epoch thread or another process needs; 2^20 cycles (under a millisecond) still
# spans the gaps between the products of one step. A value the user set wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from .core.committee import Committee  # noqa: E402
from .core.errors import BptrainError, ConfigError, DataError, ModelFileError, TrainingDiverged  # noqa: E402
from .core.network import MLP  # noqa: E402
from .core.training import TrainSettings  # noqa: E402
from .data.loader import Dataset, Split, load_dataset  # noqa: E402
from .data.model_io import load_model, save_model  # noqa: E402
from .engines import train  # noqa: E402

__all__ = [
    "__version__", "MLP", "Committee", "Dataset", "Split", "load_dataset", "load_model", "save_model", "train",
    "TrainSettings", "BptrainError", "ConfigError", "DataError", "ModelFileError", "TrainingDiverged",
]
