"""The next epoch's images, prepared in a thread while this epoch trains.

The same preparation as :class:`bptrain.data.epochs.EpochImages` (same random
draws, same arrays), overlapped with the steps: NumPy releases the GIL inside
its large array operations, so with a free core it costs the steps nothing.

One buffer, not two (a second 50,000-image buffer would cost 157 MB): the
thread writes the rows of epoch e + 1 into the rows that epoch e has finished
with, and the steps wait (rarely) for rows not yet written. Two counters, in
rows since the start of training, say how far each side is::

    produced   rows written   (epoch p, row r  ->  p·n + r)
    consumed   rows released by the steps (``release``)

The thread writes rows [a, b) of epoch p once consumed ≥ (p − 1)·n + b; the
steps read rows below ``stop`` of epoch c once produced ≥ c·n + stop (``wait_for``).

A ``gate`` says whether the thread may work beside the steps now. Steps on
several BLAS threads have no core to spare, and a thread working beside them
makes every product wait; so while the gate is shut the thread works only when
the steps wait for its rows (then it runs alone, as inline preparation would,
and prepares the rest of the epoch).
What that costs the steps, :meth:`BackgroundEpochImages.serial_seconds_per_row`
says: the thread times the chunks it prepares while they wait (beside the steps,
a chunk's time also counts the waits for the GIL, a core and memory, and says
little about how long it takes alone), from the second epoch on (the first
writes a buffer the system has not mapped yet, and its page faults make it
several times slower than every later epoch).
"""

from __future__ import annotations

import threading
import time

from ..data.epochs import EpochImages
from . import blas


class _Stopped(Exception):
    """Training ended: the preparation is abandoned."""


class BackgroundEpochImages(EpochImages):
    """:class:`EpochImages` whose epochs a thread prepares ahead (``background=False``: inline, like its base).

    The reader calls ``wait_for(stop)`` before reading rows below ``stop`` and
    ``release(stop)`` when done with them (the fast engine's steps do both).
    """

    def __init__(self, *args, background: bool = True, threads=None, gate=None, **kwargs):
        super().__init__(*args, **kwargs)
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
        self._chunk_began = 0.0
        self._timed = False
        self._prepare_seconds = 0.0  # the thread's time in its chunks, and their rows
        self._prepare_rows = 0
        self._thread = None
        if background and self._epochs > 0:
            self._thread = threading.Thread(target=self._produce, name="bptrain-epoch-images", daemon=True)
            self._thread.start()

    @property
    def background(self) -> bool:
        return self._thread is not None

    def first_epoch_prepared(self) -> bool:
        """Whether the thread has written the whole first epoch (inline: always). Until then, steps that
        shut the gate would wait for it alone, page faults and all: the first epoch writes a buffer the
        system has not mapped yet, many times slower than every later epoch."""
        with self._changed:
            return self._thread is None or self._produced >= len(self._x)

    # -------------------------------------------------------------- the reader
    def next(self):
        """Start the next epoch: all rows of the previous one are released; returns (x, Y)."""
        if self._epoch + 1 >= self._epochs:
            raise StopIteration
        self.release(len(self._x))
        if self._thread is None:
            # distortions are many small products: on a busy machine, as slow on two threads as the steps
            with blas.threads_at_most(self._threads() if self._threads is not None else None):
                return super().next()
        self._epoch += 1
        return self.x, self.y

    __next__ = next

    def wait_for(self, stop: int) -> None:
        """Block until rows [0, stop) of the current epoch are prepared; re-raise the thread's error.

        Behind a shut gate, a wait is for the whole epoch: the steps then wait once an epoch, not once
        a chunk (each wait lets OpenBLAS's threads fall asleep, and waking them costs more than a chunk).
        """
        n = len(self._x)
        target = self._epoch * n + stop
        if self._produced < target and self._gate is not None and not self._gate():
            target = self._epoch * n + n
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
            if self._thread is None or self._prepare_rows == 0 or self._produced >= self._epochs * len(self._x):
                return 0.0
            return self._prepare_seconds / self._prepare_rows

    def between_chunks(self) -> None:
        """Block until the thread is between two chunks: with the gate shut, it then starts no other
        until the steps wait for its rows (what timing steps on several threads needs)."""
        with self._changed:
            while self._in_chunk:
                self._changed.wait()

    def release(self, stop: int) -> None:
        """The reader is done with rows [0, stop) of the current epoch: the thread may overwrite them.

        The thread hears of it only if it may work now: behind a shut gate it would wake just to look
        and sleep again, and each look takes the GIL from the steps. A gate that opens is seen at the
        next release.
        """
        with self._changed:
            self._consumed = max(self._consumed, self._epoch * len(self._x) + stop)
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

    # -------------------------------------------------------------- the thread
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
        finally:
            with self._changed:
                self._in_chunk = False
                self._changed.notify_all()

    def _claim_rows(self, epoch: int, stop: int) -> None:
        if self._thread is None:
            return
        n = len(self._x)
        with self._changed:
            while not (self._consumed >= (epoch - 1) * n + stop and self._may_work()):
                if self._stopping:
                    raise _Stopped
                self._changed.wait()
            if self._stopping:
                raise _Stopped
            self._in_chunk = True
            # only a chunk the steps wait for with the gate shut is timed (then it runs alone), and not
            # the first epoch's: its page faults are no guide to the epochs after it
            self._timed = epoch > 0 and self._waiting and self._gate is not None and not self._gate()
        self._chunk_began = time.perf_counter()

    def _may_work(self) -> bool:
        return self._gate is None or self._waiting or self._gate()

    def _rows_ready(self, epoch: int, stop: int) -> None:
        seconds = time.perf_counter() - self._chunk_began
        with self._changed:
            if self._timed:
                self._prepare_seconds += seconds
                self._prepare_rows += epoch * len(self._x) + stop - self._produced
            self._produced = epoch * len(self._x) + stop
            self._in_chunk = False
            if self._produced >= self._wanted:
                self._waiting = False  # served (a reader still short of its rows sleeps on)
                self._changed.notify_all()
