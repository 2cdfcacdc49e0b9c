"""Shared fixtures: a small learnable synthetic data set in the classic pickle layout, a CLI runner,
and the location of the real MNIST (for the integration tests, which skip without it).

The synthetic set is written byte for byte the way Python 2's cPickle wrote numpy arrays (the layout
of the real ``mnist.pkl.gz``; see ``python -m pickletools`` on its first few KB), so the loader is
tested on the same opcodes it meets in the wild without any real data in the repository.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import http.server
import os
import threading
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

REPO_ROOT = Path(__file__).resolve().parent.parent

# Shape of the default synthetic set: 3 well-separated classes in 20 features.
N_FEATURES = 20
N_CLASSES = 3
N_TRAIN, N_VALIDATION, N_TEST = 600, 150, 150


# ------------------------------------------------------------------ Python 2 pickle writer
def _py2_int(value: int) -> bytes:
    """An int the way the shared file encodes it: BININT1 below 256, else 4-byte BININT."""
    if 0 <= value < 256:
        return pickle.BININT1 + bytes([value])
    return pickle.BININT + struct.pack("<i", value)


def _py2_str(raw: bytes) -> bytes:
    """A Python 2 ``str`` (bytes): SHORT_BINSTRING up to 255 bytes, else BINSTRING with a 4-byte length."""
    if len(raw) < 256:
        return pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw
    return pickle.BINSTRING + struct.pack("<i", len(raw)) + raw


def py2_array_header(shape, dtype) -> bytes:
    """The opcodes of a Python 2 numpy array pickle up to its raw data (see :func:`py2_array_opcodes`)."""
    dtype = np.dtype(dtype)
    if dtype.byteorder == ">":
        raise ValueError("little-endian arrays only")
    kind = dtype.str[1:]  # 'f4', 'i8', 'u1', ...
    order = "|" if dtype.itemsize == 1 else "<"
    out = bytearray()
    out += pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n"
    out += pickle.GLOBAL + b"numpy\nndarray\n"
    out += _py2_int(0) + pickle.TUPLE1
    out += _py2_str(b"b")
    out += pickle.TUPLE3 + pickle.REDUCE
    # state tuple: (version, shape, dtype, is_fortran, data)
    out += pickle.MARK + _py2_int(1)
    out += pickle.MARK + b"".join(_py2_int(n) for n in shape) + pickle.TUPLE
    out += pickle.GLOBAL + b"numpy\ndtype\n"
    out += _py2_str(kind.encode("ascii")) + _py2_int(0) + _py2_int(1) + pickle.TUPLE3 + pickle.REDUCE
    out += pickle.MARK + _py2_int(3) + _py2_str(order.encode("ascii"))
    out += pickle.NONE * 3
    out += pickle.BININT + struct.pack("<i", -1) + pickle.BININT + struct.pack("<i", -1) + _py2_int(0)
    out += pickle.TUPLE + pickle.BUILD
    out += pickle.NEWFALSE
    return bytes(out)


def py2_array_opcodes(array: np.ndarray) -> bytes:
    """Opcodes that rebuild ``array`` as Python 2 cPickle wrote numpy arrays (protocol 2).

        numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b')   -> an empty array
        BUILD with (1, shape, dtype, is_fortran, raw data as a py2 str) -> its state
    where the dtype is numpy.dtype('f4', 0, 1) BUILT with (3, '<', None, None, None, -1, -1, 0).
    """
    array = np.ascontiguousarray(array)
    header = py2_array_header(array.shape, array.dtype)
    return header + _py2_str(array.tobytes()) + pickle.TUPLE + pickle.BUILD


def py2_pickle_bytes(splits) -> bytes:
    """The uncompressed pickle of a tuple of (x, y) pairs, Python 2 style: PROTO 2 ... TUPLE2 ... TUPLE3 STOP."""
    out = bytearray(pickle.PROTO + b"\x02")
    for x, y in splits:
        out += py2_array_opcodes(x) + py2_array_opcodes(y) + pickle.TUPLE2
    out += {1: pickle.TUPLE1, 2: pickle.TUPLE2, 3: pickle.TUPLE3}[len(splits)]
    out += pickle.STOP
    return bytes(out)


def write_py2_pickle(path: Path, splits) -> Path:
    """Write ``splits`` as a gzip-compressed Python 2 style pickle (like mnist.pkl.gz) at ``path``."""
    path.write_bytes(gzip.compress(py2_pickle_bytes(splits), mtime=0))
    return path


def write_gz(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload, mtime=0))
    return path


# ------------------------------------------------------------------ synthetic data
def make_blobs(n_train=N_TRAIN, n_validation=N_VALIDATION, n_test=N_TEST, n_features=N_FEATURES,
               n_classes=N_CLASSES, seed=0, spread=0.08):
    """Three splits of well-separated Gaussian blobs: float32 x in [0, 1], int64 y in 0..n_classes-1."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.15, 0.85, size=(n_classes, n_features))
    splits = []
    for n in (n_train, n_validation, n_test):
        y = np.arange(n) % n_classes  # every class present in every split
        rng.shuffle(y)
        x = centres[y] + rng.normal(0.0, spread, size=(n, n_features))
        splits.append((np.clip(x, 0.0, 1.0).astype(np.float32), y.astype(np.int64)))
    return tuple(splits)


@pytest.fixture(scope="session")
def blobs():
    """The default synthetic splits (arrays only; do not modify them)."""
    return make_blobs()


@pytest.fixture
def synthetic_data(tmp_path, blobs) -> Path:
    """Path of the default synthetic set written as a Python 2 style mnist.pkl.gz in tmp_path."""
    return write_py2_pickle(tmp_path / "synthetic.pkl.gz", blobs)


# ------------------------------------------------------------------ CLI
@pytest.fixture
def runner() -> CliRunner:
    """A CliRunner with stdout and stderr kept apart (click >= 8.2 does so by default)."""
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


@pytest.fixture(autouse=True)
def _no_stray_data_env(monkeypatch):
    """Tests must not pick up a developer's BPTRAIN_DATA."""
    monkeypatch.delenv("BPTRAIN_DATA", raising=False)


# ------------------------------------------------------------------ the real MNIST
def shared_data_dir() -> Path:
    """$BPTRAIN_SHARED_DATA, else ../shared/data beside the repository."""
    from_env = os.environ.get("BPTRAIN_SHARED_DATA")
    return Path(from_env) if from_env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def real_mnist_path() -> Path:
    path = shared_data_dir() / "mnist.pkl.gz"
    if not path.is_file():
        pytest.skip(f"real MNIST not found at {path} (set BPTRAIN_SHARED_DATA to a directory holding mnist.pkl.gz)")
    return path


# ------------------------------------------------------------------ CLI helpers
def invoke(runner, *args):
    """Run `bptrain ARGS...` in-process (paths and numbers may be given as objects)."""
    from bptrain.app.commands import cli

    return runner.invoke(cli, [str(a) for a in args])


def assert_clean_error(result, phrase: str | None = None, exit_code: int | None = None) -> str:
    """Non-zero exit through click, one Error line (containing ``phrase``), no traceback. Returns the line."""
    assert result.exit_code != 0, f"expected a failure, got exit 0:\n{result.output}"
    if exit_code is not None:
        assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), f"an exception escaped: {result.exception!r}"
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and lines == errors, f"expected one error line on stderr, got:\n{result.stderr}"
    if phrase is not None:
        assert phrase in errors[0], errors[0]
    return errors[0]


# ------------------------------------------------------------------ a web server on 127.0.0.1
@contextlib.contextmanager
def local_http_server(handler_class):
    """Serve ``handler_class`` on 127.0.0.1 (a free port) in a thread; yields the base URL. Never leaves the machine."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------ errors
def one_line_error(error_type, function, *args) -> str:
    """Call ``function(*args)``, expect ``error_type``, and return its message, checked to be one line."""
    with pytest.raises(error_type) as caught:
        function(*args)
    message = str(caught.value)
    assert message and "\n" not in message, message
    return message


# ------------------------------------------------------------------ the fast engine, one epoch
def run_fast_epoch(model, x, y_onehot, batch_size, lr=0.1, epoch=1, **settings):
    """One epoch of the fast engine's steps over (x, Y), as ``train()`` runs them; (engine, steps, mean loss).

    ``settings``: TrainSettings fields (the optimizer's); plain SGD unless given.
    """
    from bptrain.core.epoch_steps import EpochSteps
    from bptrain.core.training import TrainSettings
    from bptrain.fast.engine import FastEngine

    settings = {"momentum": 0.0, "weight_decay": 0.0, **settings}
    engine = FastEngine(model, TrainSettings(batch_size=batch_size, **settings), batch_size)
    steps = EpochSteps(model, epoch, len(x), batch_size, lr)
    return engine, steps, engine.run_epoch(x, y_onehot, steps)


def fast_train_step(network, x, y_onehot, lr):
    """The fast network's forward and backward pass of one batch: (activations, ηΔ_l, its workspace)."""
    work = network.workspace(len(x))
    with np.errstate(over="ignore", under="ignore"):
        activations = network.forward(x, work)
        deltas = network.backward(activations, y_onehot, work, lr)
    return activations, deltas, work


@contextlib.contextmanager
def serving(live=None, predictor=None):
    """`bptrain serve`'s server on 127.0.0.1 at a free port, in a thread; yields it. On the way out the run in
    progress is stopped and the server closed."""
    from bptrain.app.serve import http as server

    httpd = server.make_server(predictor, "127.0.0.1", 0, live=live)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        if live is not None:
            live.close(timeout=30)
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def ended_at_exit(process, watchdog=None):
    """Run the block with ``process`` (a subprocess.Popen); after it, whatever happened, the process is gone
    (killed if it still runs, and reaped) and ``watchdog`` (a threading.Timer) cancelled."""
    try:
        yield process
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.communicate()


def require_test_extra(name: str):
    """Import ``name``, a module of the test extra: skip the file without it locally, fail under CI=true (a CI
    without the test extra is a broken CI, not a skip)."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"`{name}` is missing: pip install -e '.[test]'")
