"""Each epoch's training images: shuffled, shifted and distorted, in one contiguous buffer.

Preparing an epoch is a permutation, a gather of the whole training set into
a contiguous buffer (so every batch is a slice, never a fancy-indexed
gather), random shifts, distortions and one-hot targets.
:class:`EpochPreparation` does it in public steps (:meth:`~EpochPreparation.begin`
an epoch, then :meth:`~EpochPreparation.write` its chunks of :data:`CHUNK` rows in
order), so that any engine may prepare the next epoch while this one trains (the
fast one does, in a thread: :mod:`bptrain.fast.epoch_thread`). :class:`EpochImages`
prepares each epoch whole, when the loop asks for it.

The random generator is used in the same order either way: a permutation,
the shifts of the whole epoch, then the distortions block by block. Same
seed, same arrays, same model, whichever engine trains on them.
"""

from __future__ import annotations

import numpy as np

from ..core.network import one_hot
from .distort import BLOCK, Distorter
from .shifts import draw_shifts, gather_shifted, image_side

#: Rows prepared at a time: a multiple of distort.BLOCK (so the random draws do not depend
#: on it), ~1/12 of an MNIST epoch.
CHUNK = 32 * BLOCK


class EpochPreparation:
    """Writes epoch after epoch of the training set, shuffled, shifted and distorted, into one (x, Y) buffer.

    For each epoch in turn: :meth:`begin`, then :meth:`write` every one of :meth:`chunks` in order.
    ``buffers``: an (x, Y) pair to fill instead of new arrays.
    """

    def __init__(self, x: np.ndarray, labels: np.ndarray, n_classes: int, dtype, rng: np.random.Generator, *,
                 shift: int = 0, distorter: Distorter | None = None, chunk: int = CHUNK,
                 buffers: tuple[np.ndarray, np.ndarray] | None = None):
        if shift:
            image_side(x.shape[1])  # refuse non-square images before any work
        self._x = x if x.dtype == dtype else x.astype(dtype)
        self._labels, self._n_classes, self._rng, self._shift = labels, n_classes, rng, shift
        self._distorter = distorter if distorter is not None and distorter.distortion.active else None
        self.n = len(x)
        self.chunk = chunk
        if buffers is None:
            buffers = np.empty((self.n, x.shape[1]), dtype), np.zeros((self.n, n_classes), dtype)
        self.x, self.y = buffers
        if self.x.shape != (self.n, x.shape[1]) or self.y.shape != (self.n, n_classes):
            raise ValueError(f"buffers of shapes {self.x.shape} and {self.y.shape} cannot hold "
                             f"{self.n} images of {x.shape[1]} pixels and {n_classes} classes")
        # the shifts gather each shift's images of a chunk here first (shifts.gather_shifted)
        self._scratch = np.empty((min(chunk, self.n), x.shape[1]), dtype) if shift else None
        self._epoch, self._order, self._codes = -1, None, None
        self._rng_after: dict = {}  # epoch -> the generator's state once that epoch is prepared

    @property
    def distorts(self) -> bool:
        """Whether the epochs are distorted (then preparing one costs about as much as training it)."""
        return self._distorter is not None

    def chunks(self) -> list[tuple[int, int]]:
        """(first row, row after the last) of each chunk of an epoch, in the order they are written."""
        return [(start, min(start + self.chunk, self.n)) for start in range(0, self.n, self.chunk)]

    def prepare(self, epoch: int) -> None:
        """Write the whole of epoch ``epoch`` (0-based)."""
        self.begin(epoch)
        for start, stop in self.chunks():
            self.write(start, stop)

    def begin(self, epoch: int) -> None:
        """Start epoch ``epoch``: draw its order and its shifts."""
        self._epoch = epoch
        self._order = self._rng.permutation(self.n)
        self._codes = draw_shifts(self._rng, self.n, self._shift) if self._shift else None

    def write(self, start: int, stop: int) -> None:
        """Write rows [start, stop) of the epoch begun: the next chunk of :meth:`chunks`."""
        rows, order = slice(start, stop), self._order[start:stop]
        if self._codes is None:
            # mode="clip": with the default "raise", take() first copies into a hidden temporary;
            # a permutation has no bad index to clip.
            np.take(self._x, order, axis=0, out=self.x[rows], mode="clip")
        else:
            gather_shifted(self._x, order, self._codes[rows], self._shift, self.x[rows], self._scratch)
        if self._distorter is not None:
            self._distorter(self.x[rows], self._rng)
        one_hot(self._labels[order], self._n_classes, out=self.y[rows])
        if stop == self.n:  # before the reader may see the last rows: its checkpoint may ask for this state
            epoch = self._epoch
            self._rng_after = {e: state for e, state in self._rng_after.items() if e >= epoch - 1}
            self._rng_after[epoch] = self._rng.bit_generator.state

    def rng_after(self, epoch: int) -> dict:
        """The generator's state once epoch ``epoch`` was prepared: the next epoch's starts from it."""
        return self._rng_after[epoch]


class EpochImages:
    """The training set of each of ``epochs`` epochs, shuffled, shifted and distorted, in one buffer.

    ``next()`` prepares the next epoch and returns its (x, Y) arrays, which it overwrites at the
    following call. The arguments after ``epochs`` are :class:`EpochPreparation`'s. Use as a context
    manager or call :meth:`close`.
    """

    def __init__(self, x: np.ndarray, labels: np.ndarray, n_classes: int, dtype, rng: np.random.Generator,
                 epochs: int, **preparation):
        self.preparation = EpochPreparation(x, labels, n_classes, dtype, rng, **preparation)
        self.training_set = x, labels  # as given: what the epochs are drawn from
        self.epochs = epochs
        self.x, self.y = self.preparation.x, self.preparation.y
        self.epoch = -1  # the epoch the reader is in (0-based)

    @property
    def distorts(self) -> bool:
        return self.preparation.distorts

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """Prepare the next epoch; returns (x, Y)."""
        if self.epoch + 1 >= self.epochs:
            raise StopIteration
        self.epoch += 1
        self.preparation.prepare(self.epoch)
        return self.x, self.y

    __next__ = next

    def __iter__(self):
        return self

    def rng_state(self) -> dict:
        """The generator's state that the next epoch's preparation starts from (a checkpoint keeps it: the
        preparation may already be drawing for the next epoch, ahead of the reader)."""
        return self.preparation.rng_after(self.epoch)

    def close(self) -> None:
        """Nothing to stop when preparing inline."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
