"""What the server promises about a connection, under the routes of :mod:`.http`.

- Every method goes to one dispatcher, known or made up (TRACE, PROPFIND, BREW): a known path answers
  405 with ``Allow``, any other 404, with the JSON error every refusal has; http.server's own refusals
  (a malformed request line, a version it does not speak, a line or headers too long) are JSON too.
- A body nobody reads is never read as the next request: a request that declares one (``Content-Length``
  other than 0, or ``Transfer-Encoding``) and whose route does not read it is answered with
  ``Connection: close``, and what still comes is discarded, a bounded amount for a bounded time.
- A slow client holds only its own thread, and not for long: the request line and headers must arrive
  within ``HEAD_SECONDS`` of the server starting to wait for them, a body within ``BODY_SECONDS``
  (a per-read timeout alone lets a client that sends a byte every few seconds stay for ever).
  :class:`Deadlines` shuts the socket of whoever overstays.
"""

from __future__ import annotations

import socket
import threading
import time
from functools import partial

#: After answering a request whose body was not read (refused as too big, or a GET's), discard at most
#: this much of what still comes, for at most this long.
LINGER_BYTES = 4 * 1024 * 1024
LINGER_SECONDS = 2


class Deadlines:
    """One thread per server that shuts down the sockets whose deadline has passed.

    A shut-down socket wakes the handler thread blocked on it with end-of-file, so the request fails
    as a short one would, and the thread is free again.
    """

    def __init__(self):
        self._due: dict[socket.socket, float] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._wakes = float("inf")

    def arm(self, sock: socket.socket, seconds: float) -> None:
        due = time.monotonic() + seconds
        with self._changed:
            if self._closed:
                return
            self._due[sock] = due
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="bptrain-deadlines", daemon=True)
                self._thread.start()
            if due < self._wakes:
                self._changed.notify()

    def disarm(self, sock: socket.socket) -> None:
        with self._changed:
            self._due.pop(sock, None)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._due.clear()
            self._changed.notify()

    def _watch(self) -> None:
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                for sock, due in list(self._due.items()):
                    if due <= now:
                        del self._due[sock]
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:  # already closed by its handler
                            pass
                self._wakes = min(self._due.values(), default=now + 3600)
                self._changed.wait(timeout=max(self._wakes - now, 0.01))


class ConnectionRules:
    """The part of the request handler that :mod:`.http`'s docstring does not need a reader to see.

    Mixed into :class:`.http.Handler` before ``BaseHTTPRequestHandler``; it calls the handler's
    ``_dispatch(method)`` and ``_send_json(document, status)``.
    """

    #: Set per request: whether a body was declared that nobody has read yet.
    _unread_body = False

    def __getattr__(self, name: str):
        # http.server calls do_<METHOD> for whatever word a request line starts with, and answers HTML
        # 501 when there is none: here every method has one, the dispatcher
        if name.startswith("do_") and len(name) > 3:
            return partial(self._dispatch, name[3:])
        raise AttributeError(name)

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals, as the one-line JSON of every other error (and the connection closed)."""
        self.close_connection = True
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):  # an unreadable version: answer in ours
            self.request_version = self.protocol_version
        text = message or self.responses.get(code, ("refused",))[0]
        self._send_json({"error": " ".join(str(text).split())[:200]}, int(code))

    def declares_body(self) -> bool:
        """Whether the request says a body follows (``Transfer-Encoding``, or a ``Content-Length`` not 0)."""
        if self.headers.get("Transfer-Encoding") is not None:
            return True
        for value in self.headers.get_all("Content-Length") or ():
            value = value.strip()
            if not (value.isascii() and value.isdigit() and int(value) == 0):
                return True
        return False

    def _linger(self) -> None:
        """Let a client that is still sending a body nobody reads (refused, or a GET's) read our answer.

        Closing a socket with unread data makes the system reset the connection, and the client
        (a browser uploading a big photo) may then lose the 413 it was sent. So, like web servers
        do, stop writing and discard what still comes, a bounded amount for a bounded time.
        """
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS)
            discarded = 0
            while discarded < LINGER_BYTES:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                discarded += len(chunk)
        except OSError:
            pass
