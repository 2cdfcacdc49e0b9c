"""`bptrain serve` at HTTP's edges, spoken to over raw sockets: too many query fields, methods nobody
routes, a body on a GET (a request hidden in it must never be served), a client that trickles its
request, and a server whose decodes are bounded by memory."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from bptrain.app.serve import http as server
from bptrain.core.network import MLP
from test_server import request, running


@pytest.fixture(scope="module")
def port():
    with running(MLP((784, 24, 12, 10), loss="ce", seed=3), {"val_accuracy": 0.5}) as port:
        yield port


def exchange(port: int, raw: bytes, timeout: float = 20) -> bytes:
    """Send ``raw`` on one connection and read until the server closes it (or ``timeout`` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (socket.timeout, ConnectionResetError):
            pass
    return b"".join(chunks)


def answers(raw: bytes) -> list[int]:
    """The statuses of the answers in the bytes a connection received."""
    return [int(status) for status in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


def only_one_answer(raw: bytes) -> None:
    """The bytes hold one whole answer and nothing after it (not even an answer without a status line)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(re.search(rb"\r\nContent-Length: (\d+)\r\n", head + b"\r\n").group(1))
    assert len(answers(head)) == 1 and len(body) == length, raw[:600]


def json_error(raw: bytes) -> str:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head, head
    message = json.loads(body)["error"]
    assert message and "\n" not in message
    return message


def head(port: int, line: str, extra: str = "") -> bytes:
    return f"{line}\r\nHost: 127.0.0.1:{port}\r\n{extra}".encode()


# ------------------------------------------------------------------ the query string
MANY = "&".join(f"f{i}=1" for i in range(11))


@pytest.mark.parametrize("method, path", [
    ("GET", "/"), ("GET", "/api/model"), ("GET", "/api/digits"), ("GET", "/api/digits/cell"),
    ("GET", "/api/digits/random"), ("GET", "/api/digits/confusion"), ("POST", "/api/predict"),
    ("POST", "/api/explain"), ("POST", "/api/lesson")])
@pytest.mark.parametrize("content_type", ["application/json", "image/png"])
def test_eleven_query_fields_are_a_400_on_every_route(port, method, path, content_type):
    body = json.dumps({"width": 1, "height": 1, "pixels": [0]}).encode() if method == "POST" else None
    status, headers, answer = request(port, method, f"{path}?{MANY}", body, {"Content-Type": content_type})
    assert status == 400 and headers["Content-Type"] == "application/json", (status, answer[:200])
    assert "query" in json.loads(answer)["error"]
    status, _, _ = request(port, "GET", "/api/model")  # and the server goes on
    assert status == 200


# ------------------------------------------------------------------ methods
@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "CONNECT", "BREW", "M-SEARCH"])
def test_any_method_gets_json_and_allow_on_a_route_and_404_elsewhere(port, method):
    raw = exchange(port, head(port, f"{method} /api/model HTTP/1.1", "Connection: close\r\n\r\n"))
    assert answers(raw) == [405], raw[:300]
    assert b"\r\nAllow: GET, HEAD\r\n" in raw and method in json_error(raw)
    raw = exchange(port, head(port, f"{method} /nowhere HTTP/1.1", "Connection: close\r\n\r\n"))
    assert answers(raw) == [404] and json_error(raw) == "not found"


@pytest.mark.parametrize("request_line", ["GET / HTTP/2.0", "GET / HTTP/1.1 extra", "GET / HTTX/1.1",
                                          "GET /" + "x" * 70_000 + " HTTP/1.1"])
def test_http_servers_own_refusals_are_json_too(port, request_line):
    raw = exchange(port, head(port, request_line, "\r\n"))
    assert answers(raw) and answers(raw)[0] in (400, 414, 505), raw[:200]
    assert b"<html" not in raw.lower() and json_error(raw)


# ------------------------------------------------------------------ a body on a GET
SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("path", ["/api/model", "/", "/nowhere", "/api/digits"])
def test_a_request_hidden_in_a_gets_body_is_never_served(port, path):
    hidden = SMUGGLED.format(port=port).encode()
    raw = exchange(port, head(port, f"GET {path} HTTP/1.1", f"Content-Length: {len(hidden)}\r\n\r\n") + hidden)
    only_one_answer(raw)
    assert b"\r\nConnection: close\r\n" in raw


def test_a_request_hidden_in_a_chunked_gets_body_is_never_served(port):
    hidden = SMUGGLED.format(port=port).encode()
    body = f"{len(hidden):x}\r\n".encode() + hidden + b"\r\n0\r\n\r\n"
    raw = exchange(port, head(port, "GET /api/model HTTP/1.1", "Transfer-Encoding: chunked\r\n\r\n") + body)
    only_one_answer(raw)


def test_two_content_lengths_are_refused(port):
    body = b'{"width": 1, "height": 1, "pixels": [0]}'
    raw = exchange(port, head(port, "POST /api/predict HTTP/1.1", "Content-Type: application/json\r\n"
                              f"Content-Length: {len(body)}\r\nContent-Length: 3\r\n\r\n") + body)
    assert answers(raw) == [400] and "Content-Length" in json_error(raw)


def test_requests_without_a_body_keep_the_connection(port):
    one = head(port, "GET /api/model HTTP/1.1", "\r\n")
    raw = exchange(port, one + one + head(port, "GET /api/model HTTP/1.1", "Content-Length: 0\r\n\r\n")
                   + head(port, "GET /api/model HTTP/1.1", "Connection: close\r\n\r\n"))
    assert answers(raw) == [200, 200, 200, 200]


# ------------------------------------------------------------------ slow clients
def test_a_client_that_trickles_its_request_is_dropped(monkeypatch):
    """A byte every 0.2 s keeps a per-read timeout happy forever; the whole head has a deadline."""
    monkeypatch.setattr(server, "HEAD_SECONDS", 1)
    with running(MLP((784, 8, 10), seed=1)) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        closed = False
        for byte in head(port, "GET /api/model HTTP/1.1", "X-Slow: " + "a" * 200):
            try:
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
                sock.setblocking(False)
                try:
                    sock.recv(1)  # an answer or the end: either way the server stopped waiting
                    closed = True
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            if closed:
                break
        assert closed, "the server still waits for a request that has trickled in for 40 s"


def test_a_client_that_trickles_its_body_is_dropped(monkeypatch):
    monkeypatch.setattr(server, "BODY_SECONDS", 1)
    with running(MLP((784, 8, 10), seed=1)) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head(port, "POST /api/predict HTTP/1.1", "Content-Type: application/json\r\n"
                                                              "Content-Length: 1000\r\n\r\n"))
        received = b""
        for _ in range(200):
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
            sock.setblocking(False)
            try:
                chunk = sock.recv(4096)
                received += chunk
                if not chunk:
                    break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
        else:
            pytest.fail("the server still waits for a body that has trickled in for 40 s")
