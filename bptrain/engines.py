"""``train()``: the data side prepares each epoch, an engine runs its steps, the core's loop drives both.

Two engines compute the same training (the tests hold them equal):

- ``"reference"``: :class:`bptrain.core.training.ReferenceEngine`, the readable
  one, plain NumPy as the README's math writes it;
- ``"fast"`` (the default): :class:`bptrain.fast.FastEngine`, the same steps in
  preallocated buffers through fused BLAS calls. It is imported only when
  chosen, so the reference engine runs wherever NumPy does.
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from .core.network import MLP
from .core.training import Callbacks, LoopState, ReferenceEngine, TrainResult, TrainSettings
from .core.training import train as train_loop
from .data.distort import Distorter, Distortion
from .data.epochs import EpochImages

ENGINES = ("fast", "reference")
DEFAULT_ENGINE = "fast"


def distortion_of(settings: TrainSettings) -> Distortion:
    """The elastic and affine distortions ``settings`` ask for (all zero: none)."""
    return Distortion(settings.elastic_alpha, settings.elastic_sigma, settings.affine_rotate, settings.affine_scale,
                      settings.affine_shear, settings.affine_shift)


def engine_class(name: str):
    """The class of engine ``name``, for what it says of itself (e.g. the memory it allocates)."""
    if name == "fast":
        from .fast.engine import FastEngine

        return FastEngine
    if name == "reference":
        return ReferenceEngine
    raise ValueError(f"engine must be one of {ENGINES}, got {name!r}")


def make_engine(name: str, model: MLP, settings: TrainSettings, batch_size: int, distorts: bool = False):
    """The engine ``name`` for training ``model`` with ``settings``."""
    if name == "fast":
        from .fast.engine import FastEngine

        return FastEngine(model, settings, batch_size, distorts)
    if name == "reference":
        return ReferenceEngine(model, settings)
    raise ValueError(f"engine must be one of {ENGINES}, got {name!r}")


def threads_used(engine, batch_size: int) -> str:
    """How ``engine``'s steps use the cores, for ``bench``: "1+1" is one BLAS thread and the epoch thread,
    "2" two BLAS threads; "numpy" for the reference engine, which leaves them to NumPy."""
    if engine.name != "fast":
        return "numpy"
    from .fast import threads

    return threads.describe(engine.model.sizes, batch_size, engine.optimizer.update_kind)


def epoch_buffers(engine: str, n_samples: int, n_features: int, n_classes: int, dtype):
    """Buffers for an epoch's (x, Y) that engine ``engine`` reads fastest (on cache lines for the fast one)."""
    if engine == "fast":
        from .fast.aligned import aligned_empty, aligned_zeros

        return aligned_empty((n_samples, n_features), dtype), aligned_zeros((n_samples, n_classes), dtype)
    return np.empty((n_samples, n_features), dtype), np.zeros((n_samples, n_classes), dtype)


def epoch_images(engine, x, labels, n_classes: int, dtype, settings: TrainSettings, rng, distorter=None,
                 buffers=None, epochs: int | None = None):
    """Each epoch's shuffled, shifted, distorted images for ``engine``: ``epochs`` of them (all of
    ``settings.epochs`` when None), prepared ahead where the engine does that (the fast one, in a thread)."""
    epochs = settings.epochs if epochs is None else epochs
    if buffers is None:
        buffers = epoch_buffers(engine.name, len(x), x.shape[1], n_classes, dtype)
    images = EpochImages(x, labels, n_classes, dtype, rng, epochs, shift=settings.augment, distorter=distorter,
                         buffers=buffers)
    return engine.prepare_ahead(images) if hasattr(engine, "prepare_ahead") else images


class ProgressBar(Callbacks):
    """One tqdm bar per epoch over its batches, with the running loss, on stderr."""

    def __init__(self):
        self._bar = None

    def epoch_started(self, epoch, n_batches):
        self.closed()
        self._bar = tqdm(total=n_batches, desc=f"epoch {epoch}", unit="batch", leave=False, mininterval=0.2,
                         file=sys.stderr)

    def progress(self, epoch, batches_done, running_loss):
        self._bar.update(batches_done - self._bar.n)
        self._bar.set_postfix(loss=f"{running_loss:.4f}", refresh=False)

    def closed(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EpochHook(Callbacks):
    """Calls ``on_epoch(record, improved)`` after every epoch."""

    def __init__(self, on_epoch):
        self.on_epoch = on_epoch

    def epoch_ended(self, record, improved):
        self.on_epoch(record, improved)


def train(model: MLP, data, settings: TrainSettings, *, engine=DEFAULT_ENGINE, progress: bool = True,
          on_epoch=None, callbacks=(), first_epoch: int = 1, resume: LoopState | None = None) -> TrainResult:
    """Train ``model`` on ``data`` (a :class:`bptrain.Dataset`) in place, as ``bptrain train`` does.

    The model ends holding the parameters of its best validation epoch.
    ``engine``: "fast" or "reference", or an engine made for ``model`` (ReferenceEngine's interface).
    ``progress``: a bar per epoch on stderr.
    ``on_epoch(record, improved)``: called after every epoch; ``callbacks``: more
    :class:`bptrain.core.training.Callbacks`. ``first_epoch`` above 1 continues a
    saved model (see :func:`bptrain.core.training.train`); ``resume``, a run's state at the end of an
    epoch (a checkpoint's), goes on from there exactly: its optimizer state and random stream included.
    """
    x, labels = data.train  # read once: the loop takes it from the epochs' images
    batch_size = min(settings.batch_size, len(x))
    distortion = distortion_of(settings)
    distorter = Distorter(x.shape[1], distortion) if distortion.active else None
    runner = make_engine(engine, model, settings, batch_size, distorts=distorter is not None) \
        if isinstance(engine, str) else engine
    rng = np.random.default_rng(settings.seed)
    epochs = settings.epochs
    if resume is not None:
        runner.optimizer.load_state(resume.optimizer)
        rng.bit_generator.state = resume.rng
        epochs = first_epoch + settings.epochs - 1 - resume.epoch
    images = epoch_images(runner, x, labels, model.sizes[-1], model.dtype, settings, rng, distorter, epochs=epochs)
    hooks = ([ProgressBar()] if progress else []) + ([EpochHook(on_epoch)] if on_epoch else []) + list(callbacks)
    return train_loop(model, data, settings, runner, images, callbacks=hooks, first_epoch=first_epoch, resume=resume)
