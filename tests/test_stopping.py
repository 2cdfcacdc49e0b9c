"""Stop signals in-process: the first raises Stopped, later ones wait, the old handlers come back."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from bptrain.app.stopping import STOP_SIGNALS, StopSignals, Stopped, exit_status, signal_name

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")


def send(signum):
    """Deliver ``signum`` to this process; Python runs its handler before the next bytecode after the call."""
    os.kill(os.getpid(), signum)


def test_the_first_signal_raises_stopped_a_keyboard_interrupt():
    with StopSignals() as stop:
        with pytest.raises(KeyboardInterrupt) as caught:
            send(signal.SIGTERM)
    assert isinstance(caught.value, Stopped) and caught.value.signum == signal.SIGTERM
    assert stop.signum == signal.SIGTERM and stop.stopped


def test_later_signals_are_recorded_not_raised():
    with StopSignals() as stop:
        with pytest.raises(Stopped):
            send(signal.SIGHUP)
        send(signal.SIGTERM)  # during the save: must not raise
        send(signal.SIGINT)
    assert stop.signum == signal.SIGHUP


def test_after_defer_the_first_signal_is_only_recorded():
    with StopSignals() as stop:
        stop.defer()
        send(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
    assert stop.stopped


def test_the_previous_handlers_come_back():
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        with StopSignals():
            assert all(signal.getsignal(s) != before[s] for s in STOP_SIGNALS)
        assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before
        send(signal.SIGTERM)
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_nothing_is_installed():
    seen = []

    def work():
        with StopSignals():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [before]


def test_exit_status_and_names():
    assert exit_status(signal.SIGTERM) == 143 and exit_status(signal.SIGINT) == 130
    assert exit_status(signal.SIGHUP) == 129
    assert signal_name(signal.SIGTERM) == "SIGTERM"


def test_train_itself_leaves_the_handlers_alone(synthetic_data):
    """A library user's train() call (a notebook) keeps its own handlers: the CLI installs ours."""
    from bptrain import MLP, TrainSettings, load_dataset, train

    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    seen = []
    train(MLP((20, 8, 3)), load_dataset(synthetic_data), TrainSettings(epochs=1), progress=False,
          on_epoch=lambda record, improved: seen.append({s: signal.getsignal(s) for s in STOP_SIGNALS}))
    assert seen == [before]


def test_a_held_block_finishes_before_the_stop_it_held_is_raised():
    done = []
    with StopSignals() as stop:
        with pytest.raises(Stopped):
            with stop.held():
                send(signal.SIGTERM)
                done.append("the write")
        send(signal.SIGINT)  # stopped already: only recorded
    assert done == ["the write"] and stop.signum == signal.SIGTERM


def test_a_held_block_without_a_signal_changes_nothing():
    with StopSignals() as stop:
        with stop.held():
            pass
        with pytest.raises(Stopped):
            send(signal.SIGINT)
