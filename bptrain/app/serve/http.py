"""HTTP for `bptrain serve`: the routes, the limits, who may ask, and the status of every answer.

Standard library only (``http.server``): the page is a few static files shipped as package data
(:data:`STATIC_FILES`). The routes are an explicit table, never a mapping of URLs onto the file
system, so no URL can read a file. Every request body is capped before it is read; every bad request
gets a status code and a one-line JSON error, and the server goes on serving.

    GET  /                      the page (bptrain/app/web/index.html, and its style.css and .js modules)
    GET  /api/model             the network's layer sizes, loss, activation, input side
    GET  /api/digits            whether the page can take digits from the data set, and if not why
    GET  /api/digits/cell       ?true=I&read=J[&limit=N]: the validation digits of class I read as J, most
                                confident first (:mod:`.digits`; the confusion matrix's cells)
    GET  /api/digits/random     [?split=test|validation]: one digit of the data set, picked at random
    GET  /api/digits/confusion  the validation split's confusion matrix
    POST /api/predict           a drawing (JSON grayscale pixels) or an image file (raw body, image/*;
                                ?ink=dark|light to say which side the ink is on, as "ink" does in the JSON)
                                -> prediction, probabilities, the preprocessed input, hidden activations
    POST /api/explain           the same inputs (or a model input, or a data-set digit: "index" and "split")
                                with a target label -> the forward and backward pass with the numbers
                                (bptrain.app.explain)
    POST /api/lesson            the same inputs, with "label", "lr", "weight": [l, i, j], "epsilon" -> the
                                lesson's steps (bptrain.app.lesson; docs/lesson.md); no input: the first
                                test digit the network reads wrong

With training on (:mod:`.session`; docs/live.md has every field):

    GET  /api/train/form        the settings form: the options table, the presets, whether data is there
    GET  /api/train             the current run's whole state
    POST /api/train             start a run with the settings (the option names of `bptrain train`)
    POST /api/train/control     {"action": "pause" | "resume" | "stop"} and/or {"lr": ..., "momentum": ...}
    GET  /api/train/events      Server-Sent Events: the state, then progress, epochs, weights, errors
    GET  /api/train/snapshots   the kept epochs; GET /api/train/snapshot?epoch=K[&format=npy] one of them
    POST /api/train/save        {"name": "NAME.npy"}: the run's model into --out-dir
    GET  /api/train/model       the same file, as a download

Predictions, explanations and the data set's digits use the network on show: the served model, the
live run's weights, or a kept epoch ("snapshot": K in the JSON, or ?snapshot=K).

Every request must name this server in its Host header (a loopback address or ``localhost`` for a
loopback server), so a web page whose domain is pointed at 127.0.0.1 (DNS rebinding) can read nothing:
not the page, not the model, not its predictions. Requests that change something (POST under
/api/train) must also come, when the browser sends an Origin, from this server's own page.

This is the only module that knows HTTP. What it serves raises domain errors
(:class:`~bptrain.core.errors.BptrainError`, :mod:`.errors`' :class:`~.errors.Conflict`, ...), and
:data:`STATUS_OF` turns them into status codes; the JSON is :mod:`.api`'s, the network :mod:`.predictor`'s.
"""

from __future__ import annotations

import http.server
import ipaddress
import socket
import sys
import time
import webbrowser
from importlib import resources

from ...core.errors import BptrainError
from ..decode_memory import DecodersBusy
from ..stopping import StopSignals
from . import api, digits
from .connection import ConnectionRules, Deadlines
from .predictor import Predictor
from .session import Conflict, NotFound, Unavailable, WriteFailed

#: Largest request body accepted (bytes). A drawing is ~80 KB of JSON, a phone photo a few MB at most
#: once exported; anything bigger is refused with 413 before a byte of it is read.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Seconds a connection may stay silent before it is dropped (a stalled client must not hold a thread).
SOCKET_TIMEOUT = 30
#: Seconds a request's line and headers may take to arrive, from when the server waits for them (keep-alive
#: included), and its body: a client that trickles a byte at a time is dropped (:mod:`.connection`).
HEAD_SECONDS = 30
BODY_SECONDS = 60
JSON_TYPE = "application/json"
IMAGE_TYPES = ("image/", "application/octet-stream")


#: The page's files: URL path -> (file in bptrain/app/web, content type). Nothing else is ever read.
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/live.js": ("live.js", "text/javascript; charset=utf-8"),
    "/charts.js": ("charts.js", "text/javascript; charset=utf-8"),
    "/backprop.js": ("backprop.js", "text/javascript; charset=utf-8"),
    "/digits.js": ("digits.js", "text/javascript; charset=utf-8"),
    "/util.js": ("util.js", "text/javascript; charset=utf-8"),
    "/lesson.js": ("lesson.js", "text/javascript; charset=utf-8"),
}
EVENT_STREAM_TYPE = "text/event-stream"


#: The status of each kind of domain error (the first that matches); any other BptrainError is a 400.
STATUS_OF = ((NotFound, 404), (Conflict, 409), (Unavailable, 503), (DecodersBusy, 503), (WriteFailed, 500),
             (BptrainError, 400))


class RequestError(Exception):
    """A request the server refuses for what it is as HTTP (route, method, headers, body): a status and a
    one-line message for the client.

    ``field``: the setting the message is about, for the page to show it beside that field.
    """

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def web_file(name: str) -> bytes:
    """One of the page's files, read from the package data (so it is there in any install, editable or not)."""
    return resources.files("bptrain.app").joinpath("web", name).read_bytes()


def refusal(exc: BptrainError) -> RequestError:
    """The HTTP answer to a domain error: its status (:data:`STATUS_OF`), its line, the field it names."""
    status = next(code for kind, code in STATUS_OF if isinstance(exc, kind))
    return RequestError(status, str(exc), getattr(exc, "field", None))


# ------------------------------------------------------------------ HTTP
class Handler(ConnectionRules, http.server.BaseHTTPRequestHandler):
    """Explicit routes; anything else is 404. Set ``predictor``, ``live`` and ``verbose`` on a subclass.

    Every method (GET, POST, TRACE, BREW, ...) reaches :meth:`_dispatch`; what is promised about the
    connection itself (deadlines, bodies nobody reads, http.server's own refusals) is :mod:`.connection`'s.

    ``predictor``: the model to read drawings with when the server does not train; ``live``: a
    :class:`.session.LiveTraining` when it does (it then says which network reads them).
    """

    predictor: Predictor | None = None
    live = None
    verbose = False
    timeout = SOCKET_TIMEOUT
    server_version = "bptrain"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive: the page sends many small requests while drawing
    # headers and body go out in two writes: with Nagle's algorithm the body then waits for the
    # client's delayed ACK, 40 ms per answer on Linux (benchmarks/README.md, "Timings behind the code's choices")
    disable_nagle_algorithm = True

    ROUTES = {
        **{path: {"GET": "static"} for path in STATIC_FILES},
        "/api/model": {"GET": "model_info"},
        "/api/predict": {"POST": "predict"},
        "/api/explain": {"POST": "explain"},
        "/api/lesson": {"POST": "lesson"},
        **{path: {"GET": "digits"} for path in ("/api/digits", "/api/digits/cell", "/api/digits/random",
                                                 "/api/digits/confusion")},
    }
    #: Served only when the server trains (``live`` is set).
    TRAIN_ROUTES = {
        "/api/train/form": {"GET": "train_form"},
        "/api/train": {"GET": "train_state", "POST": "train_start"},
        "/api/train/control": {"POST": "train_control"},
        "/api/train/events": {"GET": "train_events"},
        "/api/train/snapshots": {"GET": "train_snapshots"},
        "/api/train/snapshot": {"GET": "train_snapshot"},
        "/api/train/save": {"POST": "train_save"},
        "/api/train/model": {"GET": "train_model"},
    }

    def handle_one_request(self):
        self.server.deadlines.arm(self.connection, HEAD_SECONDS)  # disarmed once the head is in
        try:
            super().handle_one_request()
        finally:
            self.server.deadlines.disarm(self.connection)

    def _dispatch(self, method: str) -> None:
        """Every request, whatever its method: unknown paths are 404, known ones 405 for other methods."""
        self.server.deadlines.disarm(self.connection)
        self._unread_body = self.declares_body()
        # The path is compared as sent, byte for byte: no decoding, no normalising, no file system.
        path, _, query = self.path.split("#", 1)[0].partition("?")
        self._query, self._route_path, self._query_pairs = query, path, []
        methods = self.ROUTES.get(path)
        training = methods is None and self.live is not None and path in self.TRAIN_ROUTES
        if training:
            methods = self.TRAIN_ROUTES[path]
        try:
            if methods is None:
                raise RequestError(404, "not found")
            name = methods.get("GET" if method == "HEAD" else method)
            if name is None:
                self._allow = ", ".join(methods)
                raise RequestError(405, f"{method[:20]} is not allowed here; use {self._allow}")
            self._check_host(changes=training and method == "POST")  # every route: no other site reads it
            try:
                self._query_pairs = api.query_pairs(query)  # every route: at most 10 fields
                getattr(self, "route_" + name)()
            except BptrainError as exc:
                raise refusal(exc) from None
        except RequestError as exc:
            self._send_json({"error": exc.message, **({"field": exc.field} if exc.field else {})}, exc.status)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True  # the client went away: nothing to answer, nobody to tell
        except Exception as exc:  # a bug must not stop the server: report it, keep serving
            print(f"bptrain serve: internal error on {method} {path}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            self._send_json({"error": "internal server error"}, 500)
        if self._unread_body:  # answered with Connection: close; its bytes are never read as a request
            self._linger()

    # --------------------------------------------------------------- who may ask
    def _check_host(self, changes: bool) -> None:
        """Refuse a request not addressed to this server by name (DNS rebinding) and, for one that changes
        something, one a page of another web site sent (its Origin names that site)."""
        host = self.headers.get("Host", "")
        if not own_host(host, self.server.server_address):
            self.close_connection = True  # its body, if any, stays unread
            raise RequestError(403, f"refused: the Host header {host[:80]!r} does not name this server")
        origin = self.headers.get("Origin")
        if changes and origin is not None and origin.lower() != f"http://{host}".lower():
            self.close_connection = True
            raise RequestError(403, f"refused: a page of another web site ({origin[:80]}) may not change the "
                                    "training")

    # --------------------------------------------------------------- routes
    def route_static(self):
        name, content_type = STATIC_FILES[self._route_path]
        self._send(web_file(name), content_type)

    def route_model_info(self):
        self._send_json(self.live.describe() if self.live is not None else self.predictor.describe())

    def route_predict(self):
        started = time.perf_counter()
        body = self._read_body()
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        snapshot = self._query_value("snapshot")
        if content_type == JSON_TYPE:
            document = api.json_object(body, '{"width": W, "height": H, "pixels": [...]}')
            snapshot = document.get("snapshot", snapshot)
            predictor = self._predictor_for(snapshot)
            if "input" in document:  # a digit of the data set, as an earlier answer gave it
                x = api.input_from_values(document["input"], predictor.model.sizes[0])
            else:
                x = predictor.input_from_drawing(*api.drawing(document))
        elif content_type.startswith(IMAGE_TYPES):
            predictor = self._predictor_for(snapshot)
            x = predictor.input_from_image(body, api.ink_choice(self._query_value("ink") or "auto"))
        else:
            raise RequestError(415, "send application/json (a drawing) or an image file (image/png, image/jpeg, ...)")
        result = predictor.predict(x)
        if snapshot is not None:
            result["snapshot"] = snapshot
        result["milliseconds"] = round(1000 * (time.perf_counter() - started), 2)
        self._send_json(result)

    def route_explain(self):
        """A drawing, a model input or a data-set digit as JSON (with "label", "steps", "lr", "unit"), or an
        image file as the raw body (the same fields in the query string: ?label=3&steps=1&unit=1,17, and
        ?ink=dark|light as for /api/predict)."""
        predictor, x, source, true_labels, fields = self._explained_input()
        options = api.request_options(fields, predictor.model)
        self._send_json(predictor.explain(x, options, source, true_labels))

    def route_lesson(self):
        """The lesson's steps for the same inputs as /api/explain, with "label", "lr", "weight" and "epsilon"
        (for an image file, in the query string: ?label=3&weight=1,400,7&epsilon=0.001)."""
        predictor, x, source, true_labels, fields = self._explained_input(default_digit=True)
        options = api.lesson_options(fields, predictor.model)
        true_label = None if true_labels is None else true_labels[0]
        self._send_json(predictor.lesson(x, options, source, true_label))

    def _explained_input(self, default_digit: bool = False):
        """(predictor, x, source, true labels, the other fields) of an explain or lesson request."""
        body = self._read_body()
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type == JSON_TYPE:
            fields = api.json_object(body, '{"pixels": [...], "width": W, "height": H, "label": K, ...}')
            predictor = self._predictor_for(fields.pop("snapshot", self._query_value("snapshot")))
            if (default_digit and not set(fields) & set(api.EXPLAIN_INPUT_FIELDS)
                    and digits.status(predictor.dataset, None, predictor.model)["available"]):
                fields["split"], fields["index"] = "test", predictor.teaching_index("test")   # none named
            x, source, true_labels = api.explain_input(fields, predictor)
            fields = {k: v for k, v in fields.items() if k not in api.EXPLAIN_INPUT_FIELDS}
        elif content_type.startswith(IMAGE_TYPES):
            fields = api.query_fields(self.path)
            predictor = self._predictor_for(fields.pop("snapshot", None))
            ink = api.ink_choice(fields.pop("ink", "auto"))
            x, source, true_labels = predictor.input_from_image(body, ink), {"kind": "image"}, None
        else:
            raise RequestError(415, "send application/json (a drawing, an input or a data-set digit) or an image "
                                    "file (image/png, image/jpeg, ...)")
        return predictor, x, source, true_labels, fields

    def _predictor_for(self, snapshot) -> Predictor:
        if snapshot is not None:
            if isinstance(snapshot, str) and snapshot.isascii() and snapshot.isdigit():
                snapshot = int(snapshot)
            if not isinstance(snapshot, int) or isinstance(snapshot, bool) or snapshot < 0:
                raise RequestError(400, '"snapshot" must be the epoch of a kept snapshot (GET /api/train/snapshots)')
        if self.live is not None:
            return self.live.predictor(snapshot)
        if snapshot is not None:
            raise RequestError(404, "this server does not train, so it keeps no snapshots")
        return self.predictor

    # the data set's digits (:mod:`.digits`): built once, for the confusion matrix, the random digit, the lessons
    def route_digits(self):
        """GET /api/digits[/cell|/random|/confusion], read by the network on show (?snapshot=K: a kept epoch);
        the Host is checked by the dispatcher, as for every route."""
        kind = self._route_path.removeprefix("/api/digits").lstrip("/") or "status"
        fields = api.digit_query(self._query, kind)
        dataset, reason = (self.live.dataset, self.live.data_problem) if self.live else (self.predictor.dataset, None)
        if kind == "status":
            has_network = self.live is None or self.live.run is not None or self.live.base_model is not None
            self._send_json(digits.status(dataset, reason, self._predictor_for(None).model if has_network else None))
            return
        snapshot = fields.pop("snapshot", None)
        answer = digits.ANSWERS[kind](self._predictor_for(snapshot), reason, **fields)
        self._send_json({**answer, "snapshot": int(snapshot) if snapshot is not None else None})

    def route_train_form(self):
        self._send_json(self.live.form())

    def route_train_state(self):
        self._send_json(self.live.state())

    def route_train_start(self):
        self._send_json(self.live.start(self._read_json()))

    def route_train_control(self):
        self._send_json(self.live.control(self._read_json()))

    def route_train_save(self):
        self._send_json(self.live.save(self._read_json()))

    def route_train_snapshots(self):
        self._send_json(self.live.snapshots())

    def route_train_snapshot(self):
        epoch = self._query_value("epoch")
        if epoch is None or not (epoch.isascii() and epoch.isdigit()) or len(epoch) > 9:
            raise RequestError(400, "give the snapshot's epoch: /api/train/snapshot?epoch=K (see /api/train/snapshots)")
        kind = self._query_value("format") or "json"
        if kind == "npy":
            body, name = self.live.snapshot_file(int(epoch))
            self._send(body, "application/octet-stream", headers={"Content-Disposition": f'attachment; filename="{name}"'})
        elif kind == "json":
            self._send_json(self.live.snapshot(int(epoch)))
        else:
            raise RequestError(400, f'"format" must be json or npy, got {kind[:40]!r}')

    def route_train_model(self):
        body, name = self.live.model_file()
        self._send(body, "application/octet-stream", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def route_train_events(self):
        """Server-Sent Events until the client goes or the server stops; a dead client ends only its own stream."""
        events = self.live.events
        events.open_stream()
        try:
            self.close_connection = True  # the body has no length: it ends when the connection does
            self.send_response(200)
            self.send_header("Content-Type", EVENT_STREAM_TYPE)
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            for chunk in events.stream():
                self.wfile.write(chunk)  # unbuffered: each event leaves at once
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        finally:
            events.close_stream()

    # -------------------------------------------------------------- helpers
    def _query_value(self, name: str) -> str | None:
        return next((value for key, value in self._query_pairs if key == name and value), None)

    def _read_json(self):
        """The JSON body of a request that changes something."""
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type != JSON_TYPE:
            self.close_connection = True
            raise RequestError(415, "send the settings as application/json")
        return api.parse_json(self._read_body())

    def _read_body(self) -> bytes:
        """The request body, refused unread when its declared length is missing, invalid or too big."""
        if self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True
            raise RequestError(411, "send the body with a Content-Length, not chunked")
        if len(self.headers.get_all("Content-Length") or ()) > 1:
            self.close_connection = True
            raise RequestError(400, "more than one Content-Length header")
        declared = self.headers.get("Content-Length")
        if declared is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required")
        if not (declared.strip().isascii() and declared.strip().isdigit()):
            self.close_connection = True
            raise RequestError(400, f"invalid Content-Length {declared[:40]!r}")
        length = int(declared)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body stays unread: this connection cannot be reused
            self._unread_body = True
            raise RequestError(413, f"the request body is {length:,} bytes; the limit is {MAX_BODY_BYTES:,}")
        self.server.deadlines.arm(self.connection, BODY_SECONDS)
        try:
            body = self.rfile.read(length)
        finally:
            self.server.deadlines.disarm(self.connection)
        if len(body) != length:
            self.close_connection = True
            raise RequestError(400, "the request body ended before its Content-Length")
        self._unread_body = False
        return body

    def _send_json(self, document: dict, status: int = 200) -> None:
        self._send(api.to_json(document), JSON_TYPE, status)

    def _send(self, body: bytes, content_type: str, status: int = 200, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy",
                         "default-src 'none'; script-src 'self'; style-src 'self'; "
                         "img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; "
                         "frame-ancestors 'none'; base-uri 'none'")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status == 405:
            self.send_header("Allow", self._allow + (", HEAD" if "GET" in self._allow else ""))
        if self._unread_body:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args):
        if self.verbose:
            super().log_message(format, *args)


class Server(http.server.ThreadingHTTPServer):
    """A threading HTTP server whose handler threads never keep the process alive on exit."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # the default listen backlog of 5 resets connections when many arrive at once

    def __init__(self, *args, **kwargs):
        self.deadlines = Deadlines()
        super().__init__(*args, **kwargs)

    def server_close(self):
        self.deadlines.close()
        super().server_close()

    def handle_error(self, request, client_address):
        """A client that went away is no error of ours; anything else is reported (and the server goes on)."""
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)


class Server6(Server):
    address_family = socket.AF_INET6


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def own_host(host_header: str, server_address) -> bool:
    """Whether a request's Host header names this server: its port, and its address or a name of it.

    A loopback server answers to loopback addresses and ``localhost``; one on a wildcard address to any
    IP address and this machine's host names. A web page whose domain an attacker points at 127.0.0.1
    (DNS rebinding) sends its own domain as the Host, and is refused.
    """
    bound, port = str(server_address[0]).lower(), server_address[1]
    name, given_port = host_header.strip().lower(), "80"
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            return False
        name, rest = name[1:end], name[end + 1:]
        if rest:
            if not rest.startswith(":"):
                return False
            given_port = rest[1:]
    elif name.count(":") == 1:
        name, given_port = name.split(":")
    if not (given_port.isascii() and given_port.isdigit()) or int(given_port) != port or not name:
        return False
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if is_loopback(bound):
        return name == "localhost" or (address is not None and address.is_loopback)
    names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
    if bound in ("0.0.0.0", "::"):
        return address is not None or name in names
    return name == bound or name in names


def make_server(predictor: Predictor | None, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False,
                live=None) -> Server:
    """Bind the server (port 0: a free one); raises BptrainError if the address cannot be used.

    ``predictor``: the model the page reads drawings with; ``live``: a
    :class:`.session.LiveTraining` to train from the page (it then decides which network reads them).
    """
    handler = type("BoundHandler", (Handler,), {"predictor": predictor, "verbose": verbose, "live": live})
    host = host.strip("[]")
    server_class = Server6 if ":" in host else Server
    try:
        return server_class((host, port), handler)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, socket.gaierror):
            reason = f"unknown host ({reason})"
        raise BptrainError(f"cannot listen on {host}:{port}: {reason}") from None


def server_url(server: Server) -> str:
    """The URL to open, with the real port (the one the system picked for port 0)."""
    host, port = server.server_address[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _open_in_browser(url: str) -> bool:
    """Whether a browser took the page (webbrowser finds none on a server without a display: it says False)."""
    try:
        return bool(webbrowser.open(url))
    except webbrowser.Error:
        return False


def serve(server: Server, open_browser: bool = False, say=print, on_stop=None) -> None:
    """Serve until Ctrl-C (or SIGTERM, as from `kill`, or SIGHUP), then call ``on_stop()``, close the socket
    and say so. Signals that come while ``on_stop`` runs (it may be saving a model) wait for it."""
    url = server_url(server)
    training = getattr(server.RequestHandlerClass, "live", None) is not None
    say(f"serving the {'training' if training else 'drawing'} page at {url}  (Ctrl-C stops)")
    if open_browser and not _open_in_browser(url):
        say(f"--open: no web browser could be started here; open {url} in one yourself")
    with StopSignals() as signals:
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:  # Ctrl-C, or StopSignals' Stopped for SIGTERM and SIGHUP
            pass
        signals.defer()
        try:
            if on_stop is not None:
                on_stop()
        finally:
            server.server_close()
    say("stopped")
