"""A cluster that does not answer: an address that accepts connections and never answers is one line (not
a wait without end), and a scheduler killed mid-sweep is bptrain's line without `distributed`'s tracebacks."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest

from conftest import make_blobs, require_test_extra, write_py2_pickle

require_test_extra("distributed")  # the scheduler and worker these tests start

TINY = ("--sizes", "20,16,3", "--batch-size", "8")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def data(tmp_path):
    return write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())


@pytest.fixture
def silent_listener():
    """A TCP port that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for connection in held:
        connection.close()


def test_an_address_that_accepts_and_never_answers_is_one_line(tmp_path, data, silent_listener):
    address = f"tcp://127.0.0.1:{silent_listener}"
    result = subprocess.run([sys.executable, "-m", "bptrain", "sweep", "--data", str(data), *TINY, "--epochs", "1",
                             "--lr", "0.1,0.2", "--out-dir", "runs", "--scheduler", address],
                            cwd=tmp_path, capture_output=True, text=True, timeout=90, env=ENV)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot reach the Dask scheduler at {address}"), lines
    assert "answer" in lines[0], lines


def _started(process, pattern):
    for line in process.stderr:
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"{pattern!r} never came")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_scheduler_killed_mid_sweep_is_bptrains_line_without_tracebacks(tmp_path, data):
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--dashboard-address", ":0", "--no-dashboard"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    worker = sweep = None
    try:
        address = _started(scheduler, r"Scheduler at:\s+(tcp://\S+)").group(1)
        threading.Thread(target=scheduler.stderr.read, daemon=True).start()
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        sweep = subprocess.Popen([sys.executable, "-m", "bptrain", "sweep", "--data", str(data), *TINY, "--epochs",
                                  "3000", "--lr", "0.1,0.2", "--out-dir", "runs", "--scheduler", address],
                                 cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        seen = [_started(sweep, r"running on").string]
        scheduler.kill()
        scheduler.wait(timeout=30)
        out, err = sweep.communicate(timeout=120)
        stderr = "".join(seen) + err
        assert sweep.returncode != 0
        assert "lost the Dask scheduler" in stderr, stderr
        assert "Traceback" not in stderr and "distributed." not in stderr, stderr
    finally:
        for process in (sweep, worker, scheduler):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
