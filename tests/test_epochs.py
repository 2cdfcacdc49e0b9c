"""Epoch preparation in a background thread: exactly the arrays of preparing inline, and a thread that always stops.

Also the options end to end: distortions through `bptrain train` and config files.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from bptrain.data.shifts import shift_images
from bptrain.data.distort import BLOCK, Distorter, Distortion
from bptrain.data.epochs import EpochImages
from bptrain.fast.epoch_thread import BackgroundEpochImages
from bptrain.core.errors import ConfigError, TrainingDiverged
from bptrain.data.loader import validate_splits
from bptrain.data.model_io import load_model
from bptrain.core.network import MLP
from bptrain.app.config import check_config
from bptrain import TrainSettings, train

from conftest import assert_clean_error, invoke, make_blobs, write_py2_pickle

DISTORTION = Distortion(elastic_alpha=8.0, elastic_sigma=2.0, rotate=10.0, scale=0.1, shear=0.1, shift=0.5)
THREAD_NAME = "bptrain-epoch-images"


def square_problem(n=700, side=7, n_classes=3, seed=0):
    x = np.random.default_rng(seed).random((n, side * side), dtype=np.float32)
    y = np.arange(n) % n_classes
    return x, y


def prepared_ahead(*args, background=True, threads=None, gate=None, **preparation) -> BackgroundEpochImages:
    """The epochs of ``EpochImages(*args, **preparation)``, prepared by the fast engine's thread."""
    return BackgroundEpochImages(EpochImages(*args, **preparation), background=background, threads=threads,
                                 gate=gate)


def epoch_thread_alive() -> bool:
    return any(t.name == THREAD_NAME and t.is_alive() for t in threading.enumerate())


def read_epochs(images: BackgroundEpochImages, epochs: int, group: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read like the fast engine's steps: wait for each group of rows, copy it, release it."""
    seen = []
    for _ in range(epochs):
        x, y = images.next()
        xs, ys = [], []
        for start in range(0, len(x), group):
            stop = min(start + group, len(x))
            images.wait_for(stop)
            xs.append(x[start:stop].copy())
            ys.append(y[start:stop].copy())
            images.release(stop)
        seen.append((np.concatenate(xs), np.concatenate(ys)))
    return seen


def old_inline_epochs(x, y, n_classes, seed, epochs, shift, distortion):
    """What train() did before epochs.py, written out: permutation, gather, shifts, distortions, one-hot."""
    rng = np.random.default_rng(seed)
    distorter = Distorter(x.shape[1], distortion)
    out = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        xs = x[order].copy()
        shift_images(xs, rng, shift)
        distorter(xs, rng)
        ys = np.zeros((len(x), n_classes), np.float32)
        ys[np.arange(len(x)), y[order]] = 1
        out.append((xs, ys))
    return out


@pytest.mark.parametrize("shift,distortion", [(1, Distortion()), (0, DISTORTION), (2, DISTORTION)],
                         ids=["shifts", "distortions", "both"])
@pytest.mark.parametrize("chunk", [BLOCK, 4 * BLOCK])
def test_background_gives_exactly_the_inline_arrays(shift, distortion, chunk):
    x, y = square_problem()
    expected = old_inline_epochs(x, y, 3, 5, 3, shift, distortion)
    for background, group in ((False, 700), (True, 64), (True, 700)):
        with prepared_ahead(x, y, 3, np.float32, np.random.default_rng(5), 3, shift=shift,
                         distorter=Distorter(49, distortion), background=background, chunk=chunk) as images:
            got = read_epochs(images, 3, group)
        for (gx, gy), (ex, ey) in zip(got, expected):
            np.testing.assert_array_equal(gx, ex)
            np.testing.assert_array_equal(gy, ey)
    with EpochImages(x, y, 3, np.float32, np.random.default_rng(5), 3, shift=shift,
                     distorter=Distorter(49, distortion), chunk=chunk) as images:  # the data side's own, inline
        for ex, ey in expected:
            gx, gy = images.next()
            np.testing.assert_array_equal(gx, ex)
            np.testing.assert_array_equal(gy, ey)
    assert not epoch_thread_alive()


def test_close_stops_a_thread_waiting_for_rows():
    x, y = square_problem(n=3 * BLOCK)
    images = prepared_ahead(x, y, 3, np.float32, np.random.default_rng(0), 50, shift=1,
                         distorter=Distorter(49, DISTORTION), background=True, chunk=BLOCK)
    images.next()
    images.wait_for(BLOCK)  # epoch 1 is being prepared; nothing released: the thread must wait
    assert epoch_thread_alive()
    images.close()
    assert not epoch_thread_alive()
    images.close()  # twice is harmless


def test_an_error_in_the_thread_reaches_the_reader():
    class Broken(Distorter):
        calls = 0

        def __call__(self, images, rng):
            Broken.calls += 1
            if Broken.calls == 2:
                raise ValueError("broken distorter")
            super().__call__(images, rng)

    x, y = square_problem(n=2 * BLOCK)
    with prepared_ahead(x, y, 3, np.float32, np.random.default_rng(0), 3, distorter=Broken(49, DISTORTION),
                     background=True, chunk=BLOCK) as images:
        images.next()
        images.wait_for(BLOCK)
        with pytest.raises(ValueError, match="broken distorter"):
            images.wait_for(2 * BLOCK)
    assert not epoch_thread_alive()


def test_more_epochs_than_asked_is_stop_iteration():
    x, y = square_problem(n=10)
    with EpochImages(x, y, 3, np.float32, np.random.default_rng(0), 2) as images:
        assert len(list(images)) == 2


# ====================================================================== inside train()
def square_dataset(seed=0):
    (xt, yt), (xv, yv), (xs, ys) = make_blobs(n_train=300, n_validation=60, n_test=60, n_features=49, seed=seed)
    return validate_splits(((xt, yt), (xv, yv), (xs, ys)))


def test_ctrl_c_during_training_stops_the_thread(monkeypatch):
    monkeypatch.setenv("BPTRAIN_EPOCH_THREAD", "1")
    data = square_dataset()
    model = MLP((49, 8, 3), "ce", seed=0)

    def interrupt(record, improved):
        assert epoch_thread_alive()  # preparing the next epoch
        raise KeyboardInterrupt

    result = train(model, data, TrainSettings(epochs=20, batch_size=16, augment=1, elastic_alpha=5.0),
                   progress=False, on_epoch=interrupt)
    assert result.interrupted and len(result.history) == 1
    assert not epoch_thread_alive()


def test_divergence_stops_the_thread_too(monkeypatch):
    monkeypatch.setenv("BPTRAIN_EPOCH_THREAD", "1")
    data = square_dataset()
    model = MLP((49, 8, 3), "mse", init="normal", seed=0)
    with pytest.raises(TrainingDiverged):
        train(model, data, TrainSettings(lr=1e6, epochs=20, batch_size=4, augment=1, affine_rotate=10.0),
              progress=False)
    assert not epoch_thread_alive()


def test_distorted_training_is_reproducible_with_or_without_the_thread_and_differs_from_plain(monkeypatch):
    data = square_dataset()
    runs = []
    for thread, settings in (("1", TrainSettings(epochs=3, batch_size=16, elastic_alpha=6.0, affine_rotate=10.0)),
                             ("0", TrainSettings(epochs=3, batch_size=16, elastic_alpha=6.0, affine_rotate=10.0)),
                             ("1", TrainSettings(epochs=3, batch_size=16))):
        monkeypatch.setenv("BPTRAIN_EPOCH_THREAD", thread)
        model = MLP((49, 8, 3), "ce", seed=0)
        train(model, data, settings, progress=False)
        runs.append(model.weights[0].copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


# ====================================================================== the command and configs
@pytest.fixture
def square_data(tmp_path):
    return write_py2_pickle(tmp_path / "square.pkl.gz", make_blobs(n_features=49, seed=3))


DISTORT_FLAGS = ["--elastic-alpha", "6", "--elastic-sigma", "2", "--affine-rotate", "10", "--affine-scale", "0.1",
                 "--affine-shear", "0.1", "--affine-shift", "0.5"]


def test_train_with_distortions_records_them_and_repeats_byte_for_byte(runner, tmp_path, square_data):
    files = []
    for name in ("a.npy", "b.npy"):
        out = tmp_path / name
        result = invoke(runner, "train", "--data", square_data, "--out", out, "--sizes", "49,8,3", "--epochs", "2",
                        "--batch-size", "16", "-q", *DISTORT_FLAGS)
        assert result.exit_code == 0, result.output
        files.append(out.read_bytes())
    assert files[0] == files[1]
    _, meta = load_model(tmp_path / "a.npy")
    settings = meta["settings"]
    assert (settings["elastic_alpha"], settings["elastic_sigma"], settings["affine_rotate"], settings["affine_scale"],
            settings["affine_shear"], settings["affine_shift"]) == (6.0, 2.0, 10.0, 0.1, 0.1, 0.5)


def test_distortions_of_non_square_inputs_are_refused_before_training(runner, tmp_path, synthetic_data):
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", "20,8,3",
                    "--elastic-alpha", "34", "--affine-rotate", "5")
    assert_clean_error(result, "--elastic-alpha, --affine-rotate distort square images", exit_code=2)
    assert not out.exists()


@pytest.mark.parametrize("flag,value", [("--elastic-alpha", "-1"), ("--elastic-sigma", "0"),
                                        ("--affine-scale", "1"), ("--affine-rotate", "nan"),
                                        ("--affine-shift", "9")])
def test_bad_distortion_options_are_one_line_errors(runner, tmp_path, square_data, flag, value):
    result = invoke(runner, "train", "--data", square_data, "--out", tmp_path / "m.npy", flag, value)
    assert_clean_error(result, flag, exit_code=2)


def test_config_keys_for_distortions():
    settings = check_config({"elastic-alpha": 34, "elastic_sigma": 4.0, "affine_rotate": 15, "affine_scale": 0.1,
                             "affine_shear": 0.2, "affine_shift": 1})
    assert settings["elastic_alpha"] == 34.0 and isinstance(settings["elastic_alpha"], float)
    assert settings["affine_shift"] == 1.0
    for key, value in (("elastic_alpha", -3), ("elastic_sigma", 0), ("affine_scale", 1.0), ("affine_rotate", 200),
                       ("affine_shear", "big")):
        with pytest.raises(ConfigError, match=key):
            check_config({key: value})


def test_plot_distortions_from_the_command_line(runner, tmp_path, square_data):
    pytest.importorskip("matplotlib")
    result = invoke(runner, "plot", "--distortions", "--data", square_data, "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "distortions.png").read_bytes()[:4] == b"\x89PNG"
    assert_clean_error(invoke(runner, "plot"), "--distortions", exit_code=2)


def test_a_shut_gate_keeps_the_thread_from_working_beside_the_steps_but_never_starves_them():
    """While the steps run on several threads the thread prepares only when they wait, and then the whole
    epoch at once (one wait an epoch); open, it works ahead. Either way the arrays are those of preparing
    inline."""
    import time
    x, y = square_problem(n=700)
    gate = {"open": False}
    with prepared_ahead(x, y, 3, np.float32, np.random.default_rng(5), 3, shift=1, chunk=100,
                               gate=lambda: gate["open"]) as images:
        first = images.next()[0]
        images.wait_for(100)                   # the steps ask for the first chunk: the epoch is made for them
        assert images._produced == 700
        seen = [(images.x.copy(), images.y.copy())]
        images.release(100)                    # a group done: epoch 1 may start there, but not beside the steps
        time.sleep(0.2)
        assert images._produced == 700
        gate["open"] = True
        images.release(200)                    # the next group: the thread hears the gate is open
        deadline = time.monotonic() + 10
        while images._produced < 900 and time.monotonic() < deadline:  # open: it works ahead
            time.sleep(0.01)
        assert images._produced == 900 and first is images.x  # epoch 1 in the rows released
        gate["open"] = False
        images.release(700)
        seen += read_epochs(images, 2, 64)
    with EpochImages(x, y, 3, np.float32, np.random.default_rng(5), 3, shift=1, chunk=100) as inline:
        expected = [(a.copy(), b.copy()) for a, b in inline]
    for (got_x, got_y), (want_x, want_y) in zip(seen, expected):
        np.testing.assert_array_equal(got_x, want_x)
        np.testing.assert_array_equal(got_y, want_y)


def test_the_serial_cost_counts_only_chunks_the_steps_waited_for_with_the_gate_shut_after_the_first_epoch():
    """What steps on several threads are charged for leaving the preparation undone: not the first
    epoch (its page faults), not chunks made ahead beside the steps (the gate open)."""
    x, y = square_problem(n=700)
    gate = {"open": False}
    with prepared_ahead(x, y, 3, np.float32, np.random.default_rng(5), 4, shift=1, chunk=100,
                               gate=lambda: gate["open"]) as images:
        read_epochs(images, 1, 100)            # epoch 0, each chunk waited for with the gate shut
        assert images._prepare_rows == 0 and images.serial_seconds_per_row() == 0.0
        read_epochs(images, 1, 100)            # epoch 1, the same: now timed
        assert images._prepare_rows == 700 and images.serial_seconds_per_row() > 0.0
        timed = images._prepare_seconds
        gate["open"] = True                    # beside the steps: made ahead, untimed
        images.release(700)
        import time
        deadline = time.monotonic() + 10
        while images._produced < 3 * 700 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert images._produced == 3 * 700
        read_epochs(images, 1, 100)
        assert images._prepare_rows == 700 and images._prepare_seconds == timed


@pytest.mark.parametrize("background", [True, False])
def test_the_thread_runs_only_when_asked(background):
    x, y = square_problem(n=50)
    with prepared_ahead(x, y, 3, np.float32, np.random.default_rng(0), 3, shift=1, background=background) as images:
        # with a thread, it has prepared the first epoch and waits for its rows to be released
        assert epoch_thread_alive() == background
        images.next()


def test_given_buffers_are_filled_and_wrong_ones_refused():
    x, y = square_problem(n=50)
    buffers = np.empty((50, 49), np.float32), np.zeros((50, 3), np.float32)
    with EpochImages(x, y, 3, np.float32, np.random.default_rng(0), 1, shift=1, buffers=buffers) as images:
        got_x, got_y = images.next()
    assert got_x is buffers[0] and got_y is buffers[1]
    expected = old_inline_epochs(x, y, 3, 0, 1, 1, Distortion())[0]
    np.testing.assert_array_equal(got_x, expected[0])
    np.testing.assert_array_equal(got_y, expected[1])
    with pytest.raises(ValueError, match="cannot hold 50 images"):
        EpochImages(x, y, 3, np.float32, np.random.default_rng(0), 1, buffers=(buffers[0][:10], buffers[1]))
