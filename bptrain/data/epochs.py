"""Each epoch's training images: shuffled, shifted and distorted, in one contiguous buffer.

Preparing an epoch is a permutation, a gather of the whole training set into
a contiguous buffer (so every batch is a slice, never a fancy-indexed
gather), random shifts, distortions and one-hot targets. It is done in chunks
of :data:`CHUNK` rows; the fast engine prepares them in a thread while the
previous epoch trains (:mod:`bptrain.fast.epoch_thread`), through the two
hooks :meth:`EpochImages._claim_rows` and :meth:`EpochImages._rows_ready`.

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


class EpochImages:
    """The training set of each of ``epochs`` epochs, shuffled, shifted and distorted, in one buffer.

    ``next()`` prepares the next epoch and returns its (x, Y) arrays, which it
    overwrites at the following call. ``buffers``: an (x, Y) pair to fill
    instead of new arrays. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, x: np.ndarray, labels: np.ndarray, n_classes: int, dtype, rng: np.random.Generator,
                 epochs: int, *, shift: int = 0, distorter: Distorter | None = None, chunk: int = CHUNK,
                 buffers: tuple[np.ndarray, np.ndarray] | None = None):
        if shift:
            image_side(x.shape[1])  # refuse non-square images before any work
        self._x = x if x.dtype == dtype else x.astype(dtype)
        self._labels = labels
        self._n_classes = n_classes
        self._rng = rng
        self._epochs = epochs
        self._shift = shift
        self._distorter = distorter if distorter is not None and distorter.distortion.active else None
        self._chunk = chunk
        n = len(x)
        if buffers is None:
            buffers = np.empty((n, x.shape[1]), dtype), np.zeros((n, n_classes), dtype)
        self.x, self.y = buffers
        if self.x.shape != (n, x.shape[1]) or self.y.shape != (n, n_classes):
            raise ValueError(f"buffers of shapes {self.x.shape} and {self.y.shape} cannot hold "
                             f"{n} images of {x.shape[1]} pixels and {n_classes} classes")
        # the shifts gather each shift's images of a chunk here first (shifts.gather_shifted)
        self._scratch = np.empty((min(chunk, n), x.shape[1]), dtype) if shift else None
        self._epoch = -1  # the epoch the reader is in (0-based)
        self._rng_after: dict = {}  # epoch -> the generator's state once that epoch is prepared

    @property
    def distorts(self) -> bool:
        """Whether the epochs are distorted (then preparing one costs about as much as training it)."""
        return self._distorter is not None

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """Prepare the next epoch; returns (x, Y)."""
        if self._epoch + 1 >= self._epochs:
            raise StopIteration
        self._epoch += 1
        self._prepare_epoch(self._epoch)
        return self.x, self.y

    __next__ = next

    def __iter__(self):
        return self

    def rng_state(self) -> dict:
        """The generator's state that the next epoch's preparation starts from (a checkpoint keeps it: the
        preparation may already be drawing for the next epoch, ahead of the reader)."""
        return self._rng_after[self._epoch]

    def close(self) -> None:
        """Nothing to stop when preparing inline."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ------------------------------------------------------------------ the work
    def _prepare_epoch(self, epoch: int) -> None:
        """Write epoch ``epoch`` into the buffer, chunk by chunk."""
        n = len(self._x)
        order = self._rng.permutation(n)
        codes = draw_shifts(self._rng, n, self._shift) if self._shift else None
        for start in range(0, n, self._chunk):
            stop = min(start + self._chunk, n)
            self._claim_rows(epoch, stop)
            rows = slice(start, stop)
            if codes is None:
                # mode="clip": with the default "raise", take() first copies into a hidden temporary;
                # a permutation has no bad index to clip.
                np.take(self._x, order[rows], axis=0, out=self.x[rows], mode="clip")
            else:
                gather_shifted(self._x, order[rows], codes[rows], self._shift, self.x[rows], self._scratch)
            if self._distorter is not None:
                self._distorter(self.x[rows], self._rng)
            one_hot(self._labels[order[rows]], self._n_classes, out=self.y[rows])
            if stop == n:  # before the reader may see the last rows: its checkpoint may ask for this state
                self._rng_after = {e: state for e, state in self._rng_after.items() if e >= epoch - 1}
                self._rng_after[epoch] = self._rng.bit_generator.state
            self._rows_ready(epoch, stop)

    def _claim_rows(self, epoch: int, stop: int) -> None:
        """Before rows [.., stop) of ``epoch`` are written: inline, they are free already."""

    def _rows_ready(self, epoch: int, stop: int) -> None:
        """Rows [0, stop) of ``epoch`` are written."""
