"""Each epoch's training images, shuffled and augmented, optionally prepared while the previous epoch trains.

Preparing an epoch is a permutation, a gather of the whole training set into
a contiguous buffer (so every batch is a slice), random shifts, distortions
and one-hot targets: ~0.05 s with shifts, ~0.6 s more with elastic
distortions, for 50,000 MNIST images. :class:`EpochImages` does it in chunks
of :data:`CHUNK` rows, either before each epoch (inline) or in one background
thread while the training loop works: NumPy releases the GIL inside its
large array operations, so with a free core the work overlaps the training.
``train()`` turns the thread on when the steps leave a core free
(:mod:`bptrain.cores`).

One buffer, not two: a second 50,000-image buffer would cost 157 MB. The
thread writes the rows of epoch e + 1 into the rows that epoch e has
finished with, and the training loop waits (rarely) for rows not yet written.
Two counters, in rows since the start of training, say how far each side is:

    produced   rows written   (epoch p, row r  ->  p·n + r)
    consumed   rows released by the training loop (``release``)

The thread writes rows [a, b) of epoch p once consumed ≥ (p − 1)·n + b; the
loop reads rows below ``stop`` of epoch c once produced ≥ c·n + stop
(``wait_for``).

The random generator is used in the same order either way: a permutation,
the shifts of the whole epoch, then the distortions block by block. Same
seed, same arrays, same model, with or without the thread.
"""

from __future__ import annotations

import threading

import numpy as np

from .augment import draw_shifts, gather_shifted, image_side
from .blas import aligned_empty, aligned_zeros
from .distort import BLOCK, Distorter

#: Rows prepared at a time: a multiple of distort.BLOCK (so the random draws do not depend
#: on it), 12.5 MB of MNIST images, ~1/12 of an epoch; ~50 ms of work with elastic distortions.
CHUNK = 32 * BLOCK


class _Stopped(Exception):
    """Training ended: the preparation is abandoned."""


class EpochImages:
    """The training set of each of ``epochs`` epochs, shuffled, shifted and distorted, in one buffer.

    ``next()`` starts an epoch and returns its (x, y_onehot) arrays; with
    ``background=True`` their rows are
    filled as training goes, so the reader calls ``wait_for(stop)`` before
    reading rows below ``stop`` and ``release(stop)`` when done with them
    (``run_epoch(prepared=...)`` does both).
    Use as a context manager, or call :meth:`close`: it stops the thread
    (training ended early, Ctrl-C, an error) and waits for it.
    ``buffers``: an (x, y_onehot) pair to fill instead of new arrays (``bench``
    times several settings on one pair).
    """

    def __init__(self, x: np.ndarray, labels: np.ndarray, n_classes: int, dtype, rng: np.random.Generator,
                 epochs: int, *, shift: int = 0, distorter: Distorter | None = None,
                 background: bool = False, chunk: int = CHUNK,
                 buffers: tuple[np.ndarray, np.ndarray] | None = None):
        if shift:
            image_side(x.shape[1])  # refuse non-square images before any work
        self._x = x if x.dtype == dtype else x.astype(dtype)
        self._labels = labels
        self._rng = rng
        self._epochs = epochs
        self._shift = shift
        self._distorter = distorter if distorter is not None and distorter.distortion.active else None
        self._chunk = chunk
        n = len(x)
        if buffers is None:
            self.x = aligned_empty((n, x.shape[1]), dtype)  # batches start on cache lines: blas.CACHE_LINE
            self.y = aligned_zeros((n, n_classes), dtype)
        else:
            self.x, self.y = buffers
            if self.x.shape != (n, x.shape[1]) or self.y.shape != (n, n_classes):
                raise ValueError(f"buffers of shapes {self.x.shape} and {self.y.shape} cannot hold "
                                 f"{n} images of {x.shape[1]} pixels and {n_classes} classes")
        # the shifts gather each shift's images of a chunk here first (augment.gather_shifted)
        self._scratch = np.empty((min(chunk, n), x.shape[1]), dtype) if shift else None
        self._epoch = -1  # the epoch the reader is in (0-based)
        self._produced = 0
        self._consumed = 0
        self._stopping = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = None
        if background and epochs > 0:
            self._thread = threading.Thread(target=self._produce, name="bptrain-epoch-images", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ the work
    def _prepare_epoch(self, epoch: int) -> None:
        """Write epoch ``epoch`` into the buffer, chunk by chunk, each chunk once its rows are free."""
        n = len(self._x)
        order = self._rng.permutation(n)
        codes = draw_shifts(self._rng, n, self._shift) if self._shift else None
        for start in range(0, n, self._chunk):
            stop = min(start + self._chunk, n)
            self._wait(lambda: self._consumed >= (epoch - 1) * n + stop)
            rows = slice(start, stop)
            if codes is None:
                # mode="clip": with the default "raise", take() first copies into a hidden temporary;
                # a permutation has no bad index to clip.
                np.take(self._x, order[rows], axis=0, out=self.x[rows], mode="clip")
            else:
                gather_shifted(self._x, order[rows], codes[rows], self._shift, self.x[rows], self._scratch)
            if self._distorter is not None:
                self._distorter(self.x[rows], self._rng)
            self.y[rows] = 0
            self.y[np.arange(start, stop), self._labels[order[rows]]] = 1
            with self._changed:
                self._produced = epoch * n + stop
                self._changed.notify_all()

    def _produce(self) -> None:
        try:
            for epoch in range(self._epochs):
                self._prepare_epoch(epoch)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the reader by wait_for()
            with self._changed:
                self._error = exc
                self._changed.notify_all()

    def _wait(self, ready) -> None:
        """The producer's wait for free rows (returns at once when preparing inline)."""
        if self._thread is None:
            return
        with self._changed:
            while not ready():
                if self._stopping:
                    raise _Stopped
                self._changed.wait()
            if self._stopping:
                raise _Stopped

    # -------------------------------------------------------------- the reader
    @property
    def distorts(self) -> bool:
        """Whether the epochs are distorted (then preparing one costs as much as training it: bptrain.cores)."""
        return self._distorter is not None

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """Start the next epoch: all rows of the previous one are released; returns (x, y_onehot)."""
        if self._epoch + 1 >= self._epochs:
            raise StopIteration
        self.release(len(self._x))
        self._epoch += 1
        if self._thread is None:
            self._prepare_epoch(self._epoch)
        return self.x, self.y

    __next__ = next

    def __iter__(self):
        return self

    def wait_for(self, stop: int) -> None:
        """Block until rows [0, stop) of the current epoch are prepared; re-raise the thread's error."""
        target = self._epoch * len(self._x) + stop
        with self._changed:
            while self._produced < target:
                if self._error is not None:  # those rows will never come
                    raise self._error
                self._changed.wait()

    def release(self, stop: int) -> None:
        """The reader is done with rows [0, stop) of the current epoch: the thread may overwrite them."""
        with self._changed:
            self._consumed = max(self._consumed, self._epoch * len(self._x) + stop)
            self._changed.notify_all()

    def close(self) -> None:
        """Stop the thread (within one chunk of work) and wait for it."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
