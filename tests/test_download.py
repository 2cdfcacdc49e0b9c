"""Downloading against a local HTTP server: only verified files ever reach their final name.

Everything here talks to 127.0.0.1 only; nothing contacts the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ended_at_exit, local_http_server

from bptrain.data import download
from bptrain.data.download import MNIST_FILENAME, download_mnist, ensure_data
from bptrain.core.errors import DataError, DownloadError
from bptrain.data.loader import DEFAULT_DATA_PATH

PAYLOAD = os.urandom(50_000)
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
OTHER_PAYLOAD = os.urandom(len(PAYLOAD))  # right size, wrong bytes


class FakeMirror(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD in the ways real mirrors succeed and fail, chosen by the URL path."""

    requests: list[str] = []  # replaced per server by the fixture

    def do_GET(self):
        self.requests.append(self.path)
        if self.path == "/good/mnist.pkl.gz":
            self._send(PAYLOAD)
        elif self.path == "/wrong-bytes":
            self._send(OTHER_PAYLOAD)
        elif self.path == "/cut-short":
            self._send(PAYLOAD[: len(PAYLOAD) // 2], content_length=len(PAYLOAD))
            self.close_connection = True
        elif self.path == "/too-long-no-length":
            self._send(PAYLOAD + b"extra", content_length=None)
            self.close_connection = True
        elif self.path == "/wrong-length":
            self._send(PAYLOAD[:100])
        elif self.path == "/slow":
            time.sleep(0.6)
            self._send(PAYLOAD)
        elif self.path == "/error":
            self.send_error(500, "Internal Server Error")
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes, content_length: int | None = -1):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if content_length is not None:
            self.send_header("Content-Length", str(len(body) if content_length == -1 else content_length))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 (random port); yields (base_url, list of request paths)."""
    requests: list[str] = []
    handler = type("Handler", (FakeMirror,), {"requests": requests})
    with local_http_server(handler) as base_url:
        yield base_url, requests


@pytest.fixture
def dead_url():
    """A URL on a local port where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist.pkl.gz"


def fetch(dest: Path, mirrors, **kwargs) -> Path:
    options = dict(mirrors=mirrors, expected_size=len(PAYLOAD), expected_md5=PAYLOAD_MD5, progress=False, timeout=5)
    options.update(kwargs)
    return download_mnist(dest, **options)


def leftovers(directory: Path) -> list[str]:
    """Names in ``directory`` other than the final file: temporary or partial downloads."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name != MNIST_FILENAME)


def test_success_writes_verified_file(server, tmp_path):
    base, requests = server
    dest = tmp_path / "new" / "data"  # created on demand
    path = fetch(dest, [f"{base}/good/mnist.pkl.gz"])
    assert path == dest / MNIST_FILENAME
    assert path.read_bytes() == PAYLOAD
    assert leftovers(dest) == []
    assert requests == ["/good/mnist.pkl.gz"]


def test_existing_file_is_kept_without_any_request(server, tmp_path):
    base, requests = server
    existing = tmp_path / MNIST_FILENAME
    existing.write_bytes(b"already here")
    assert fetch(tmp_path, [f"{base}/good/mnist.pkl.gz"]) == existing
    assert existing.read_bytes() == b"already here"
    assert requests == []


def test_force_replaces_existing_file(server, tmp_path):
    base, _ = server
    existing = tmp_path / MNIST_FILENAME
    existing.write_bytes(b"old copy")
    fetch(tmp_path, [f"{base}/good/mnist.pkl.gz"], force=True)
    assert existing.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("route,problem", [
    ("/wrong-bytes", "checksum mismatch"),
    ("/cut-short", "cut short"),
    ("/too-long-no-length", "more than the expected"),  # a server sending too much is stopped
    ("/wrong-length", "offers 100 bytes"),  # an announced wrong size is refused up front
])
def test_bad_transfer_is_refused_and_leaves_nothing(server, tmp_path, route, problem):
    base, _ = server
    with pytest.raises(DownloadError, match=problem):
        fetch(tmp_path, [f"{base}{route}"])
    assert list(tmp_path.iterdir()) == []


def test_failed_forced_download_keeps_good_file(server, tmp_path):
    base, _ = server
    existing = tmp_path / MNIST_FILENAME
    existing.write_bytes(PAYLOAD)
    with pytest.raises(DownloadError):
        fetch(tmp_path, [f"{base}/wrong-bytes", f"{base}/cut-short"], force=True)
    assert existing.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == []


def test_server_error_falls_through_to_next_mirror(server, tmp_path):
    base, requests = server
    path = fetch(tmp_path, [f"{base}/error", f"{base}/good/mnist.pkl.gz"])
    assert path.read_bytes() == PAYLOAD
    assert requests == ["/error", "/good/mnist.pkl.gz"]
    assert leftovers(tmp_path) == []


def test_all_mirrors_failing_lists_each_and_says_what_to_do(server, dead_url, tmp_path):
    base, _ = server
    mirrors = [dead_url, f"{base}/error", f"{base}/missing"]
    with pytest.raises(DownloadError) as caught:
        fetch(tmp_path, mirrors)
    message = str(caught.value)
    assert "\n" not in message
    assert all(url in message for url in mirrors)
    assert "refused" in message.lower() and "HTTP 500" in message and "HTTP 404" in message
    assert f"from {dead_url}" in message and str(tmp_path / MNIST_FILENAME) in message and "--data" in message
    assert list(tmp_path.iterdir()) == []


def test_nothing_listening_gives_download_error(dead_url, tmp_path):
    with pytest.raises(DownloadError, match="(?i)refused"):
        fetch(tmp_path, [dead_url])


def test_failed_download_removes_the_directories_it_made(dead_url, tmp_path):
    keep = tmp_path / "existing"
    keep.mkdir()
    with pytest.raises(DownloadError):
        fetch(keep / "data" / "mnist", [dead_url])
    assert list(tmp_path.iterdir()) == [keep] and list(keep.iterdir()) == []


def test_timeout_moves_on(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="timed out"):
        fetch(tmp_path, [f"{base}/slow"], timeout=0.1)
    assert leftovers(tmp_path) == []


def test_interrupt_removes_temporary_file(server, tmp_path, monkeypatch):
    base, _ = server

    def interrupt(_file):
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_flush_to_disk", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch(tmp_path, [f"{base}/good/mnist.pkl.gz"])
    assert list(tmp_path.iterdir()) == []


def test_destination_that_cannot_be_a_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DownloadError, match="cannot create directory"):
        fetch(blocker, ["http://127.0.0.1:9/never-contacted"])


# --- ensure_data ---------------------------------------------------------------------------------


def test_ensure_data_returns_existing_path(tmp_path):
    path = tmp_path / "mine.pkl.gz"
    path.write_bytes(b"x")
    assert ensure_data(path, allow_download=True) == path


def test_ensure_data_without_download_mentions_no_download(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(download, "download_mnist", _must_not_download)
    with pytest.raises(DataError) as caught:
        ensure_data(DEFAULT_DATA_PATH, allow_download=False)
    assert not isinstance(caught.value, DownloadError)
    assert "--no-download" in str(caught.value) and "bptrain download" in str(caught.value)


def test_ensure_data_downloads_only_the_default_location(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_download(dest_dir, **kwargs):
        calls.append(Path(dest_dir))
        return Path(dest_dir) / MNIST_FILENAME

    monkeypatch.setattr(download, "download_mnist", fake_download)
    assert ensure_data(Path("data") / "mnist.pkl.gz", allow_download=True, progress=False) == DEFAULT_DATA_PATH
    assert calls == [DEFAULT_DATA_PATH.parent]
    assert "downloading it" in capsys.readouterr().err


def test_ensure_data_never_downloads_to_a_user_given_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(download, "download_mnist", _must_not_download)
    with pytest.raises(DataError) as caught:
        ensure_data(tmp_path / "elsewhere" / "mnist.pkl.gz", allow_download=True)
    assert "elsewhere" in str(caught.value) and "--no-download" not in str(caught.value)


def _must_not_download(*args, **kwargs):
    raise AssertionError("download_mnist must not be called")


# ====================================================================== a signal mid-download
class Trickle(http.server.BaseHTTPRequestHandler):
    """Announces the full MNIST size, then sends a little at a time until the client goes away."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(download.MNIST_SIZE))
        self.end_headers()
        try:
            for _ in range(6000):  # at most a minute
                self.wfile.write(bytes(4096))
                self.wfile.flush()
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


DOWNLOAD_FROM = """
import sys
import bptrain.data.download, bptrain.app.cli
bptrain.data.download.MIRRORS = (sys.argv.pop(1),)
sys.argv[0] = "bptrain"
bptrain.app.cli.main()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
@pytest.mark.parametrize("name, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_during_download_leaves_no_partial_file(tmp_path, name, status):
    """SIGTERM's default action would skip the cleanup; bptrain turns it into a clean stop."""
    dest = tmp_path / "new" / "data"
    with local_http_server(Trickle) as base:
        proc = subprocess.Popen([sys.executable, "-c", DOWNLOAD_FROM, f"{base}/mnist.pkl.gz", "download",
                                 "--dest", str(dest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with ended_at_exit(proc):
            for _ in range(3000):  # wait (up to a minute) until bytes have reached the partial file
                parts = list(dest.glob(".mnist.*.part")) if dest.exists() else []
                if parts and parts[0].stat().st_size > 0:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the download never started")
            proc.send_signal(getattr(signal, name))
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == status, stderr
    assert "the download was cancelled; no partial file was left" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "new").exists()  # neither the partial file nor the directories it made
