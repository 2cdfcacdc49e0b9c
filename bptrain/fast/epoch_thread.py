"""The next epoch's images, prepared in a thread while this epoch trains.

The data side's preparation (:class:`bptrain.data.epochs.EpochPreparation`) overlapped with the steps
(NumPy releases the GIL in large array operations), in one buffer (a second would cost 157 MB): the
thread writes epoch e + 1's rows into those epoch e is done with. Two counters, in rows since training began::

    produced   rows written   (epoch p, row r  ->  p·n + r)
    consumed   rows released by the steps (``release``)

The thread writes rows [a, b) of epoch p once consumed ≥ (p − 1)·n + b; the steps read rows below
``stop`` of epoch c once produced ≥ c·n + stop (``wait_for``). Steps on several BLAS threads leave
no core: behind their shut ``gate`` (:mod:`.threads`) the thread works only while the steps wait for
it, and times those chunks (:meth:`BackgroundEpochImages.serial_seconds_per_row`).
"""

from __future__ import annotations

import threading
import time

from ..data.epochs import EpochImages
from . import blas


class _Stopped(Exception):
    """Training ended: the preparation is abandoned."""


class BackgroundEpochImages:
    """The epochs of ``images``, prepared ahead by a thread (``background=False``: inline, on at most
    ``threads()`` BLAS threads). The reader calls ``wait_for(stop)`` before reading rows below ``stop``
    and ``release(stop)`` when done with them."""

    def __init__(self, images: EpochImages, *, background: bool = True, threads=None, gate=None):
        self.images, self.preparation = images, images.preparation
        self.x, self.y, self.epochs, self.training_set = images.x, images.y, images.epochs, images.training_set
        self.epoch = -1
        self._threads = threads  # inline: how many BLAS threads the preparation may use now (None: any)
        self._gate = gate        # () -> whether the thread may work beside the steps now (None: always)
        self._waiting = False    # the steps wait for rows ...
        self._wanted = 0         # ... up to this one (in rows since the start of training)
        self._produced = 0
        self._consumed = 0
        self._stopping = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._in_chunk = False  # the thread is preparing a chunk (it looks at the gate between chunks)
        self._prepare_seconds = 0.0  # the thread's time in the chunks it prepared while the steps waited, and their rows
        self._prepare_rows = 0
        self._thread = None
        if background and self.epochs > 0:
            self._thread = threading.Thread(target=self._produce, name="bptrain-epoch-images", daemon=True)
            self._thread.start()

    @property
    def background(self) -> bool:
        return self._thread is not None

    def first_epoch_prepared(self) -> bool:
        """Whether the thread has written the whole first epoch (inline: always). Until then, steps that
        shut the gate would wait for it alone, page faults and all."""
        with self._changed:
            return self._thread is None or self._produced >= self.preparation.n

    # -------------------------------------------------------------- the reader
    def next(self):
        """Start the next epoch: all rows of the previous one are released; returns (x, Y)."""
        if self.epoch + 1 >= self.epochs:
            raise StopIteration
        self.release(self.preparation.n)
        if self._thread is None:
            # distortions are many small products: on a busy machine, as slow on two threads as the steps
            with blas.threads_at_most(self._threads() if self._threads is not None else None):
                self.images.next()
        self.epoch += 1
        return self.x, self.y

    __next__ = next

    def rng_state(self) -> dict:
        """The generator's state that the next epoch's preparation starts from (what a checkpoint keeps)."""
        return self.preparation.rng_after(self.epoch)

    def wait_for(self, stop: int) -> None:
        """Block until rows [0, stop) of the current epoch are prepared; re-raise the thread's error. Behind a
        shut gate, wait for the whole epoch: each wait lets OpenBLAS's threads fall asleep, and waking them
        costs more than a chunk."""
        if self._thread is None:
            return  # inline: next() prepared the whole epoch
        n = self.preparation.n
        target = self.epoch * n + stop
        if self._produced < target and self._gate is not None and not self._gate():
            target = self.epoch * n + n
        with self._changed:
            while self._produced < target:
                if self._error is not None:  # those rows will never come
                    raise self._error
                self._waiting, self._wanted = True, target
                self._changed.notify_all()
                self._changed.wait()
            self._waiting = False

    def serial_seconds_per_row(self) -> float:
        """Seconds per row the steps wait for the preparation while they give the thread no core (0 once
        every epoch is prepared, or before they have waited for a chunk with the gate shut)."""
        with self._changed:
            if (self._thread is None or self._prepare_rows == 0
                    or self._produced >= self.epochs * self.preparation.n):
                return 0.0
            return self._prepare_seconds / self._prepare_rows

    def between_chunks(self) -> None:
        """Block until the thread is between two chunks: with the gate shut, it then starts no other
        until the steps wait for its rows (what timing steps on several threads needs)."""
        with self._changed:
            while self._in_chunk:
                self._changed.wait()

    def release(self, stop: int) -> None:
        """The reader is done with rows [0, stop) of the current epoch: the thread may overwrite them. It is
        told only if it may work now (behind a shut gate each look would take the GIL from the steps)."""
        with self._changed:
            self._consumed = max(self._consumed, self.epoch * self.preparation.n + stop)
            if self._may_work():
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

    # -------------------------------------------------------------- the thread
    def _produce(self) -> None:
        preparation = self.preparation
        try:
            for epoch in range(self.epochs):
                preparation.begin(epoch)
                for start, stop in preparation.chunks():
                    timed = self._claim_rows(epoch, stop)
                    began = time.perf_counter()
                    preparation.write(start, stop)
                    self._rows_ready(epoch, stop, time.perf_counter() - began if timed else None)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the reader by wait_for()
            with self._changed:
                self._error = exc
                self._changed.notify_all()
        finally:
            with self._changed:
                self._in_chunk = False
                self._changed.notify_all()

    def _claim_rows(self, epoch: int, stop: int) -> bool:
        """Wait until rows [.., stop) of ``epoch`` are free and the thread may work; whether to time the chunk:
        only one the steps wait for with the gate shut (then it runs alone), and not the first epoch's
        (it writes pages the system has not mapped yet)."""
        n = self.preparation.n
        with self._changed:
            while not (self._consumed >= (epoch - 1) * n + stop and self._may_work()):
                if self._stopping:
                    raise _Stopped
                self._changed.wait()
            if self._stopping:
                raise _Stopped
            self._in_chunk = True
            return epoch > 0 and self._waiting and self._gate is not None and not self._gate()

    def _may_work(self) -> bool:
        return self._gate is None or self._waiting or self._gate()

    def _rows_ready(self, epoch: int, stop: int, seconds: float | None) -> None:
        with self._changed:
            produced = epoch * self.preparation.n + stop
            if seconds is not None:
                self._prepare_seconds += seconds
                self._prepare_rows += produced - self._produced
            self._produced = produced
            self._in_chunk = False
            if self._produced >= self._wanted:
                self._waiting = False  # served (a reader still short of its rows sleeps on)
                self._changed.notify_all()
