"""The page's training API as the tests use it: a server on a free port in a thread, its clients, its data.

The runs train small networks on small synthetic data (784 features, 10 classes: square images like
MNIST's, so the weight tiles and the drawing pad work), with the same trainer as `bptrain train`.
The event stream is read with a raw socket client, line by line, as a browser's EventSource reads it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bptrain.app.serve import http as server
from bptrain.app.serve.session import LiveTraining
from bptrain.data.loader import load_dataset
from conftest import write_py2_pickle

SMALL = "784,16,10"  # a network that trains in milliseconds an epoch


def smooth_digits(n_train=600, n_validation=200, n_test=100, seed=1, noise=1.0):
    """Synthetic 28x28 "digits": each class a few soft blobs of ink at its own places, under strong noise.
    Smooth, so shifting an image by a pixel (train's default augmentation) keeps its class; noisy, so a
    small network takes a few epochs to read them (about 50, 80, 90% after 1, 2, 4 epochs)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:28, 0:28]
    centres = []
    for _ in range(10):
        picture = np.zeros((28, 28))
        for cy, cx in rng.uniform(6, 22, size=(3, 2)):
            picture += np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * 3.0 ** 2))
        centres.append(np.clip(picture, 0, 1).reshape(-1))
    splits = []
    for n in (n_train, n_validation, n_test):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        x = np.array(centres)[labels] + rng.normal(0, noise, size=(n, 784))
        splits.append((np.clip(x, 0, 1).astype(np.float32), labels.astype(np.int64)))
    return tuple(splits)


@pytest.fixture(scope="module")
def digits_path(tmp_path_factory) -> Path:
    """Synthetic data shaped like MNIST: 784 features in [0, 1], 10 classes; 600 training images."""
    return write_py2_pickle(tmp_path_factory.mktemp("data") / "digits.pkl.gz", smooth_digits())


@pytest.fixture(scope="module")
def digits(digits_path):
    return load_dataset(digits_path)


@contextlib.contextmanager
def live_server(dataset=None, **options):
    """A training server on 127.0.0.1 at a free port, in a thread; yields (port, its LiveTraining)."""
    live = LiveTraining(dataset=dataset, **options)
    httpd = server.make_server(None, "127.0.0.1", 0, live=live)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], live
    finally:
        live.close(timeout=30)
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def trainer(digits, tmp_path):
    with live_server(digits, out_dir=tmp_path) as (port, live):
        yield port, live


def request(port, method, path, body=None, headers=None):
    """One request on a fresh connection, with this server's own Host; returns (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def call(port, method, path, document=None, headers=None):
    """(status, JSON answer) of a request with a JSON body."""
    body = None if document is None else json.dumps(document).encode()
    sent = {"Content-Type": "application/json", **(headers or {})} if document is not None else headers
    status, _, answer = request(port, method, path, body, sent)
    return status, json.loads(answer)


def start(port, **settings):
    status, answer = call(port, "POST", "/api/train", {"sizes": SMALL, "batch_size": 10, **settings})
    assert status == 200, answer
    return answer


def state(port):
    return call(port, "GET", "/api/train")[1]


def progress_now(port):
    return state(port)["progress"]


def wait_until(condition, timeout=60, every=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def one_line_error(status_answer, status=400):
    got, answer = status_answer
    assert got == status, answer
    assert answer["error"] and "\n" not in answer["error"]
    return answer["error"]


class Events:
    """A client of GET /api/train/events on a raw socket: reads the stream in a thread, keeps every event."""

    def __init__(self, port, host=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(f"GET /api/train/events HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        self.file = self.sock.makefile("rb")
        self.status_line = self.file.readline().decode()
        self.headers = {}
        while (line := self.file.readline().decode().strip()):
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.events, self.comments, self.ended = [], [], False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while line := self.file.readline():
                text = line.decode("utf-8").rstrip("\n")
                with self.changed:
                    if text.startswith("data: "):
                        self.events.append(json.loads(text[6:]))
                    elif text.startswith(":"):
                        self.comments.append(text)
                    self.changed.notify_all()
        except (OSError, ValueError):
            pass
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_for(self, predicate, timeout=60):
        """The first event (from the start) for which ``predicate(event)`` holds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = next((e for e in self.events if predicate(e)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    raise AssertionError(f"no such event; got {[e['type'] for e in self.events]}")
                self.changed.wait(left)

    def of(self, kind):
        with self.changed:
            return [e for e in self.events if e["type"] == kind]

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@contextlib.contextmanager
def events(port, **kwargs):
    client = Events(port, **kwargs)
    try:
        yield client
    finally:
        client.close()



def serve_process(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "bptrain", "serve", "--port", "0", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def port_of(process) -> int:
    line = process.stdout.readline()
    assert line.startswith("serving the training page at http://127.0.0.1:"), line + process.stderr.read()
    return int(line.split()[5].rstrip("/").rsplit(":", 1)[1])

