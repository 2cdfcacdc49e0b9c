"""Stop signals (Ctrl-C, SIGTERM, SIGHUP) as a clean stop that keeps what was done.

``timeout``, ``kill PID``, a batch scheduler's time limit and ``docker stop``
send SIGTERM; closing the terminal sends SIGHUP. Their default action kills
the process on the spot, without running ``finally`` blocks: an hour of
training lost, a half-downloaded temporary file left behind. Inside
:class:`StopSignals` they behave like Ctrl-C instead::

    with StopSignals() as stop:
        result = train(...)      # the first signal raises Stopped (a KeyboardInterrupt) here
        stop.defer()             # from here on, signals only are recorded
        save(...)                # so a second one cannot cut the save short
    if stop.signum is not None:
        sys.exit(exit_status(stop.signum))   # 128 + the signal number: 130, 143, 129

After the first signal every further one is recorded, not raised, until the
block ends: a second Ctrl-C or SIGTERM during the save waits for it. The old
handlers are restored when the block ends, so a library user's own handlers
are only replaced for the duration of the block. The handlers belong to the
command line, not to :func:`bptrain.train`: only the caller knows that it
will save the model and exit, and a notebook kernel asked to terminate should
terminate rather than carry on with the next line.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

#: The signals that mean "stop": Ctrl-C, kill/timeout/schedulers, a closed terminal (POSIX only).
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived. A KeyboardInterrupt, so code that handles Ctrl-C handles this too."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number (SIGTERM: 143)."""
    return 128 + signum


class StopSignals:
    """Within the block, the first stop signal raises :class:`Stopped`; later ones are only recorded."""

    def __init__(self, signals=STOP_SIGNALS):
        self.signals = tuple(signals)
        self.signum: int | None = None  # the first stop signal received
        self._deferring = False
        self._previous = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # Python only delivers signals to the main thread; elsewhere leave everything be
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            # None: a handler installed from C, which Python cannot reinstall; the default is the closest
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def defer(self) -> None:
        """From now on, record signals without raising: what follows must not be cut short."""
        self._deferring = True

    @contextmanager
    def held(self):
        """Signals wait until the block ends, then the first one raises :class:`Stopped`: two writes that
        must agree (a checkpoint and what it records) are made both or neither. A block that fails lets
        its own error through; one entered after a stop or a :meth:`defer` changes nothing."""
        if self._deferring:
            yield
            return
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = self.signum is not None
        if self.signum is not None:
            raise Stopped(self.signum)

    @property
    def stopped(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None or self._deferring:
            self.signum = self.signum or signum
            return
        self.signum = signum
        self._deferring = True
        raise Stopped(signum)
