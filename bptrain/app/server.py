"""`bptrain serve`: a local web page to draw digits on, and the small JSON API behind it.

Standard library only (``http.server``): one page, shipped as package data, and one prediction
endpoint. The routes are an explicit table, never a mapping of URLs onto the file system, so no
URL can read a file. Every request body is capped before it is read; every bad request gets a
status code and a one-line JSON error, and the server goes on serving.

    GET  /              the page (bptrain/web/index.html)
    GET  /backprop.js   the page's Backprop panel (an ES module beside it)
    GET  /api/model     the model's layer sizes, loss, activation, input side
    POST /api/predict   a drawing (JSON grayscale pixels) or an image file (raw body, image/*;
                        ?ink=dark|light to say which side the ink is on, as "ink" does in the JSON)
                        -> prediction, probabilities, the preprocessed input, hidden activations
    POST /api/explain   the same inputs (or a model input, or a test digit) with a target label
                        -> the forward and backward pass with the numbers (bptrain.app.explain)

The preprocessing is :mod:`bptrain.app.images`, the same code as ``bptrain predict`` on image files;
the math is the model's own forward pass.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import math
import signal
import socket
import sys
import threading
import time
import urllib.parse
from importlib import resources

import numpy as np

from ..core.errors import BptrainError
from ..core.network import MLP

#: Largest request body accepted (bytes). A drawing is ~80 KB of JSON, a phone photo a few MB at most
#: once exported; anything bigger is refused with 413 before a byte of it is read.
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Largest drawing accepted as a pixel array (per side): the page sends 140 x 140.
MAX_PIXEL_SIDE = 1024
#: Seconds a connection may stay silent before it is dropped (a stalled client must not hold a thread).
SOCKET_TIMEOUT = 30
#: After refusing a body that is too big, discard at most this much of it, for at most this long.
LINGER_BYTES = 2 * MAX_BODY_BYTES
LINGER_SECONDS = 2
JSON_TYPE = "application/json"
#: /api/explain answers with every unit's numbers up to this many units (Σ n_l), summaries beyond:
#: about 200 bytes per unit, so the answer stays well under MAX_BODY_BYTES.
MAX_EXPLAINED_UNITS = 8192
#: The JSON fields of an explain request that name its input (the others: bptrain.app.explain.REQUEST_FIELDS);
#: "ink" goes with a drawing, as in /api/predict, so the page can send the same body to both.
EXPLAIN_INPUT_FIELDS = ("pixels", "width", "height", "ink", "input", "test_index")
IMAGE_TYPES = ("image/", "application/octet-stream")


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def ink_choice(value) -> str:
    """The request's ink choice (auto, dark or light; see bptrain.images.preprocess), or a 400."""
    from .images import INK_CHOICES

    if value not in INK_CHOICES:
        raise RequestError(400, f'"ink" must be one of {", ".join(INK_CHOICES)}')
    return value


def page_html() -> bytes:
    """The page, read from the package data (so it is there in any install, editable or not)."""
    return resources.files("bptrain.app").joinpath("web", "index.html").read_bytes()


def backprop_js() -> bytes:
    """The page's Backprop panel, a script module shipped beside the page (package data too)."""
    return resources.files("bptrain.app").joinpath("web", "backprop.js").read_bytes()


class Predictor:
    """The loaded model and the preprocessing.

    The forward pass is the core's (:meth:`bptrain.core.network.MLP.forward`), which allocates its
    own arrays, so request threads can run it side by side.
    """

    def __init__(self, model: MLP, meta: dict | None = None, dataset=None):
        side = math.isqrt(model.sizes[0])
        if side * side != model.sizes[0]:
            raise BptrainError(f"the model's input has {model.sizes[0]} features, not a square image; "
                               "serve needs a model of images (e.g. 784 = 28 x 28)")
        self.model = model
        self.meta = meta or {}
        self.side = side
        self.dataset = dataset  # a bptrain Dataset, for explain's "test_index"; None: no data

    def describe(self) -> dict:
        """What the page shows about the model (GET /api/model)."""
        sizes = list(self.model.sizes)
        return {
            "sizes": sizes,
            "input_side": self.side,
            "hidden": sizes[1:-1],
            "classes": sizes[-1],
            "loss": self.model.loss,
            "activation": self.model.activation,
            "output": "softmax" if self.model.loss == "ce" else "sigmoid",  # the output layer is never relu/tanh
            "val_accuracy": self.meta.get("val_accuracy"),
        }

    # --------------------------------------------------------------- inputs
    def input_from_pixels(self, document: dict) -> np.ndarray:
        """The model's input from a JSON drawing: {"width": W, "height": H, "pixels": [H*W numbers]}.

        Pixels are brightness from 0 (black) to 255 (white), row by row; the page sends its pad,
        dark ink on white paper, but light ink on dark works too (the preprocessing finds out, unless
        an optional "ink": "dark" or "light" says).
        """
        from . import images

        ink = ink_choice(document.get("ink", "auto"))

        width, height, pixels = document.get("width"), document.get("height"), document.get("pixels")
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PIXEL_SIDE:
                raise RequestError(400, f'"{name}" must be an integer from 1 to {MAX_PIXEL_SIDE}')
        if not isinstance(pixels, list) or len(pixels) != width * height:
            raise RequestError(400, f'"pixels" must be a list of width x height = {width * height} numbers')
        try:
            values = np.array(pixels, dtype=np.float64)
        except (TypeError, ValueError):
            raise RequestError(400, '"pixels" must hold numbers only') from None
        if values.ndim != 1 or not np.all(np.isfinite(values)):
            raise RequestError(400, '"pixels" must hold finite numbers only')
        if values.min() < 0 or values.max() > 255:
            raise RequestError(400, '"pixels" must lie between 0 (black) and 255 (white)')
        gray = (values / 255.0).astype(np.float32).reshape(height, width)
        try:
            return images.preprocess(gray, side=self.side, ink=ink).reshape(-1)
        except BptrainError as exc:
            raise RequestError(400, str(exc)) from None

    def input_from_image(self, data: bytes, content_type: str, ink: str = "auto") -> np.ndarray:
        """The model's input from an image file's bytes (PNG, JPEG, ...), as `bptrain predict` reads it."""
        from . import images

        if not data:
            raise RequestError(400, "the request body is empty; send an image file")
        try:
            return images.image_to_input(data, name="the uploaded image", side=self.side, ink=ink).reshape(-1)
        except BptrainError as exc:
            raise RequestError(400, str(exc)) from None

    # ----------------------------------------------------------------- math
    def predict(self, x: np.ndarray) -> dict:
        """Prediction, probabilities, the input and every hidden layer's activations for one input."""
        batch = np.ascontiguousarray(x, dtype=self.model.dtype).reshape(1, -1)
        _, activations = self.model.forward(batch)
        activations = [a[0].astype(np.float64) for a in activations]
        scores = activations[-1]
        if self.model.loss != "ce":  # sigmoid outputs: normalised to sum to 1, as `bptrain predict` does
            scores = scores / max(float(scores.sum()), np.finfo(np.float64).tiny)
        return {
            "prediction": int(np.argmax(scores)),
            "probabilities": [float(p) for p in scores],
            "input": _rounded(activations[0], 3),
            "hidden": [_rounded(a, 4) for a in activations[1:-1]],
        }

    def explain_input(self, document: dict):
        """(x, source, true label) of an explain request's JSON: a drawing (as /api/predict takes it),
        "input" (the model's input, n_0 numbers in [0, 1]) or "test_index" (needs a data set)."""
        from .explain import input_from_values

        given = [key for key in ("pixels", "input", "test_index") if key in document]
        if len(given) != 1:
            raise RequestError(400, 'give one input: "pixels" (with "width" and "height", a drawing), '
                                    '"input" (the model\'s input) or "test_index"')
        if given == ["pixels"]:
            return self.input_from_pixels(document), {"kind": "drawing"}, None
        if given == ["input"]:
            try:
                return input_from_values(document["input"], self.model.sizes[0]), {"kind": "input"}, None
            except BptrainError as exc:
                raise RequestError(400, str(exc)) from None
        if self.dataset is None:
            raise RequestError(400, '"test_index" needs a data set, and this server has none; send a drawing, '
                                    'an image or "input"')
        x, y = self.dataset.test
        index = document["test_index"]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(x):
            raise RequestError(400, f'"test_index" must be an integer from 0 to {len(x) - 1}')
        return x[index], {"kind": "dataset", "split": "test", "index": index}, [int(y[index])]

    def explain(self, x: np.ndarray, fields: dict, source: dict, true_labels=None) -> dict:
        """:func:`bptrain.app.explain.explain` of one input, on a fresh float64 copy of the model (which
        first takes the request's "steps" gradient steps): the same dict as `bptrain explain --json`."""
        from . import explain

        try:
            options = explain.request_options(fields, self.model)
            batch = np.asarray(x, np.float64).reshape(1, -1)
            labels, rule = explain.choose_labels(self.model, batch, true_labels, options["label"])
            lr, lr_source = explain.model_lr(self.meta) if options["lr"] is None else (options["lr"], "given")
            arrays = "units" if sum(self.model.sizes) <= MAX_EXPLAINED_UNITS else "summaries"
            return explain.explain(self.model, batch, labels, lr=lr, lr_source=lr_source, label_rule=rule,
                                   true_labels=true_labels, source=source, steps=options["steps"], arrays=arrays,
                                   unit=options["unit"])
        except BptrainError as exc:
            raise RequestError(400, str(exc)) from None


def _rounded(values: np.ndarray, digits: int) -> list[float]:
    """Floats rounded for the wire: the page draws grey levels, it needs no 7 digits."""
    return [round(float(v), digits) for v in values]


# ------------------------------------------------------------------ HTTP
class Handler(http.server.BaseHTTPRequestHandler):
    """Explicit routes; anything else is 404. Set ``predictor`` and ``verbose`` on a subclass."""

    predictor: Predictor
    verbose = False
    timeout = SOCKET_TIMEOUT
    server_version = "bptrain"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive: the page sends many small requests while drawing
    # headers and body go out in two writes: with Nagle's algorithm the body then waits for the
    # client's delayed ACK, 40 ms per answer on Linux (measured: 47 ms round trips, 3 ms of work)
    disable_nagle_algorithm = True

    ROUTES = {
        "/": {"GET": "page"},
        "/backprop.js": {"GET": "backprop_js"},
        "/api/model": {"GET": "model_info"},
        "/api/predict": {"POST": "predict"},
        "/api/explain": {"POST": "explain"},
    }

    # every method goes through one dispatcher, so unknown paths are 404 and known ones 405
    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        # The path is compared as sent, byte for byte: no decoding, no normalising, no file system.
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        methods = self.ROUTES.get(path)
        try:
            if methods is None:
                raise RequestError(404, "not found")
            name = methods.get("GET" if method == "HEAD" else method)
            if name is None:
                self._allow = ", ".join(methods)
                raise RequestError(405, f"{method} is not allowed here; use {self._allow}")
            getattr(self, "route_" + name)()
        except RequestError as exc:
            self._send_json({"error": exc.message}, exc.status)
            if getattr(self, "_unread_body", False):
                self._linger()
        except Exception as exc:  # a bug must not stop the server: report it, keep serving
            print(f"bptrain serve: internal error on {method} {path}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            self._send_json({"error": "internal server error"}, 500)

    # --------------------------------------------------------------- routes
    def route_page(self):
        self._send(page_html(), "text/html; charset=utf-8")

    def route_backprop_js(self):
        self._send(backprop_js(), "text/javascript; charset=utf-8")

    def route_model_info(self):
        self._send_json(self.predictor.describe())

    def route_predict(self):
        started = time.perf_counter()
        body = self._read_body()
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type == JSON_TYPE:
            document = _json_object(body, '{"width": W, "height": H, "pixels": [...]}')
            x = self.predictor.input_from_pixels(document)
        elif content_type.startswith(IMAGE_TYPES):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            x = self.predictor.input_from_image(body, content_type, ink_choice(query.get("ink", ["auto"])[-1]))
        else:
            raise RequestError(415, "send application/json (a drawing) or an image file (image/png, image/jpeg, ...)")
        result = self.predictor.predict(x)
        result["milliseconds"] = round(1000 * (time.perf_counter() - started), 2)
        self._send_json(result)

    def route_explain(self):
        """A drawing, a model input or a test digit as JSON (with "label", "steps", "lr", "unit"), or an
        image file as the raw body (the same fields in the query string: ?label=3&steps=1&unit=1,17, and
        ?ink=dark|light as for /api/predict)."""
        from .explain import query_fields

        body = self._read_body()
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type == JSON_TYPE:
            fields = _json_object(body, '{"pixels": [...], "width": W, "height": H, "label": K, "steps": S}')
            x, source, true_labels = self.predictor.explain_input(fields)
            fields = {k: v for k, v in fields.items() if k not in EXPLAIN_INPUT_FIELDS}
        elif content_type.startswith(IMAGE_TYPES):
            fields = query_fields(self.path)
            ink = ink_choice(fields.pop("ink", "auto"))
            x, source, true_labels = self.predictor.input_from_image(body, content_type, ink), {"kind": "image"}, None
        else:
            raise RequestError(415, "send application/json (a drawing, an input or a test index) or an image file "
                                    "(image/png, image/jpeg, ...)")
        self._send_json(self.predictor.explain(x, fields, source, true_labels))

    # -------------------------------------------------------------- helpers
    def _read_body(self) -> bytes:
        """The request body, refused unread when its declared length is missing, invalid or too big."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError(411, "send the body with a Content-Length, not chunked")
        declared = self.headers.get("Content-Length")
        if declared is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required")
        if not declared.strip().isdigit():
            self.close_connection = True
            raise RequestError(400, f"invalid Content-Length {declared[:40]!r}")
        length = int(declared)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body stays unread: this connection cannot be reused
            self._unread_body = True
            raise RequestError(413, f"the request body is {length:,} bytes; the limit is {MAX_BODY_BYTES:,}")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise RequestError(400, "the request body ended before its Content-Length")
        return body

    def _linger(self) -> None:
        """Let a client that is still sending a refused body read our answer.

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

    def _send_json(self, document: dict, status: int = 200) -> None:
        self._send(json.dumps(document, separators=(",", ":")).encode("utf-8"), JSON_TYPE, status)

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy",
                         "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
                         "img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; "
                         "frame-ancestors 'none'; base-uri 'none'")
        if status == 405:
            self.send_header("Allow", self._allow + (", HEAD" if "GET" in self._allow else ""))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args):
        if self.verbose:
            super().log_message(format, *args)


def _json_object(body: bytes, expected: str) -> dict:
    """The request body as a JSON object, or a 400 saying what was ``expected``."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"malformed JSON: {exc}") from None
    except RecursionError:  # e.g. a million nested brackets
        raise RequestError(400, "malformed JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise RequestError(400, f"expected a JSON object {expected}")
    return document


class Server(http.server.ThreadingHTTPServer):
    """A threading HTTP server whose handler threads never keep the process alive on exit."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # the default listen backlog of 5 resets connections when many arrive at once


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


def make_server(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False) -> Server:
    """Bind the server (port 0: a free one); raises BptrainError if the address cannot be used."""
    handler = type("BoundHandler", (Handler,), {"predictor": predictor, "verbose": verbose})
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


def serve(server: Server, open_browser: bool = False, say=print) -> None:
    """Serve until Ctrl-C (or SIGTERM, as from `kill`), then close the socket and say so."""
    url = server_url(server)
    say(f"serving the drawing page at {url}  (Ctrl-C stops)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    say("stopped")


def _interrupt(signum, frame):
    raise KeyboardInterrupt
