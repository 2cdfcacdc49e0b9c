"""`bptrain serve`: a real server on a free port of 127.0.0.1, spoken to over real HTTP.

Routes, limits and error codes use a small untrained network (they do not depend on what it learnt);
the predictions are checked against the model's own ``predict_proba`` on the same preprocessed input,
and, with a model trained here on the real MNIST, against the digit that was drawn.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bptrain.app.serve import http as server
from bptrain.data.model_io import save_model
from bptrain.core.network import MLP
from conftest import assert_clean_error, ended_at_exit, invoke
from digits import STROKES, draw_strokes, trained_mnist_model


@contextlib.contextmanager
def running(model, meta=None, dataset=None):
    """Serve ``model`` (and ``dataset``, for "test_index") on 127.0.0.1 at a free port in a thread; yields the port."""
    httpd = server.make_server(server.Predictor(model, meta, dataset=dataset), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def request(port, method, path, body=None, headers=None):
    """One request on a fresh connection, the path sent exactly as given; returns (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def post_json(port, document, path="/api/predict"):
    return request(port, "POST", path, json.dumps(document).encode(), {"Content-Type": "application/json"})


def drawing(gray: np.ndarray) -> dict:
    """The JSON the page sends: grey levels 0..255, row by row."""
    return {"width": int(gray.shape[1]), "height": int(gray.shape[0]), "pixels": gray.reshape(-1).tolist()}


def png_bytes(gray: np.ndarray) -> bytes:
    Image = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    Image.fromarray(gray.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def error_of(status_headers_body):
    status, headers, body = status_headers_body
    assert headers["Content-Type"] == "application/json"
    message = json.loads(body)["error"]
    assert message and "\n" not in message
    return status, message


@pytest.fixture(scope="module")
def model():
    return MLP((784, 24, 12, 10), loss="ce", seed=3)


@pytest.fixture(scope="module")
def port(model):
    with running(model, {"val_accuracy": 0.5}) as port:
        yield port


def images_module():
    pytest.importorskip("PIL")
    from bptrain.app import images

    return images


def expected(model, gray01: np.ndarray):
    """What the server should answer: the model's predict_proba on bptrain.app.images' preprocessing."""
    x = images_module().preprocess(gray01.astype(np.float32)).reshape(1, -1)
    return x[0], model.predict_proba(x)[0]


# ------------------------------------------------------------------ routes
def test_the_page_is_served_at_the_root(port):
    status, headers, body = request(port, "GET", "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode("utf-8")
    for path, (_, content_type) in server.STATIC_FILES.items():  # the page and its style sheet and modules
        status, file_headers, file_body = request(port, "GET", path)
        assert status == 200 and file_headers["Content-Type"] == content_type
        assert path == "/" or f'"{path}"' in page or f'"./{path[1:]}"' in page
        page += file_body.decode("utf-8")
    for needle in ('<canvas id="pad"', 'id="prediction"', 'id="seen"', "/api/predict", "setPointerCapture"):
        assert needle in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere: works offline
    assert headers["X-Content-Type-Options"] == "nosniff" and "default-src 'none'" in headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]  # no inline script or style at all
    assert request(port, "GET", "/?from=bookmark")[0] == 200


def test_every_file_of_the_page_is_served_and_packaged():
    """A new module of the page (util.js, say) needs a route and a place in the package data, or the page breaks."""
    web = Path(server.__file__).resolve().parent.parent / "web"
    files = {path.name for path in web.iterdir() if path.is_file()}
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert {name for name, _ in server.STATIC_FILES.values()} == files
    assert set(pyproject["tool"]["setuptools"]["package-data"]["bptrain.app.web"]) == files


def test_the_backprop_panel_script_is_served_beside_the_page(port):
    status, headers, body = request(port, "GET", "/backprop.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8"
    script = body.decode("utf-8")
    assert "/api/explain" in script and "bptrain:drawing" in script
    assert "http://" not in script and "https://" not in script  # no CDN: the page works offline
    assert "script-src 'self'" in headers["Content-Security-Policy"]  # the page may load it, from here only
    _, _, page = request(port, "GET", "/")
    assert b'<script type="module" src="/backprop.js"></script>' in page
    for path in ("/backprop.js/", "/web/backprop.js", "/backprop.js/../index.html", "/Backprop.js"):
        assert error_of(request(port, "GET", path)) == (404, "not found"), path
    assert request(port, "POST", "/backprop.js", b"{}", {"Content-Type": "application/json"})[0] == 405


def test_head_gives_the_headers_without_the_body(port):
    status, headers, body = request(port, "HEAD", "/")
    assert status == 200 and int(headers["Content-Length"]) > 1000 and body == b""


def test_the_model_is_described(port):
    status, _, body = request(port, "GET", "/api/model")
    assert status == 200
    assert json.loads(body) == {"sizes": [784, 24, 12, 10], "input_side": 28, "hidden": [24, 12], "classes": 10,
                                "loss": "ce", "activation": "sigmoid", "output": "softmax", "val_accuracy": 0.5,
                                "max_steps": 50, "class_names": [str(k) for k in range(10)]}


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd",
                                  "/index.html/../x", "/index.html", "/web/index.html", "/bptrain/web/index.html",
                                  "/server.py", "/..%2f..%2fetc%2fpasswd", "/api", "/api/", "/api/predict/",
                                  "/favicon.ico", "/%00"])
def test_every_other_path_is_404_and_no_file_is_read(port, path):
    status, message = error_of(request(port, "GET", path))
    assert (status, message) == (404, "not found")


def test_wrong_methods_are_405_with_allow(port):
    status, headers, body = request(port, "POST", "/", b"{}", {"Content-Type": "application/json"})
    assert status == 405 and "GET" in headers["Allow"] and "POST" not in headers["Allow"]
    for method in ("GET", "PUT", "DELETE"):
        status, headers, _ = request(port, method, "/api/predict")
        assert status == 405 and headers["Allow"] == "POST"
    assert request(port, "PUT", "/nowhere")[0] == 404


# ------------------------------------------------------------------ limits
def test_a_body_over_2_mb_is_413_and_is_not_read(port):
    body = b"x" * (3 * 1024 * 1024)
    status, message = error_of(request(port, "POST", "/api/predict", body, {"Content-Type": "application/json"}))
    assert status == 413 and "limit" in message


def test_a_huge_declared_length_is_413_before_any_body(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode() + b"Content-Type: application/json\r\n"
                     b"Content-Length: 99999999999\r\n\r\n")
        answer = sock.makefile("rb").read()  # the server answers at once and closes: nothing was sent
    assert answer.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("headers, status", [
    ({"Content-Length": "abc"}, 400),
    ({"Content-Length": "-5"}, 400),
    ({}, 411),
    ({"Transfer-Encoding": "chunked"}, 411),
])
def test_a_missing_or_invalid_content_length_is_refused(port, headers, status):
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{head}\r\n"
                     .encode())
        answer = sock.makefile("rb").read()
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]


def test_a_body_shorter_than_declared_is_400(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode() + b"Content-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"width\": 1")
        sock.shutdown(socket.SHUT_WR)
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 400 ")


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("body, phrase", [
    (b"{not json", "malformed JSON"),
    (b"\xff\xfe\x00", "malformed JSON"),
    (b"[1, 2, 3]", "JSON object"),
    (b"[" * 1_000_000, "malformed JSON"),
    (b'{"width": 1, "height": 1, "pixels": ' + b"[" * 100_000 + b"0" + b"]" * 100_000 + b"}", "malformed JSON"),
    (b'{"width": 2, "height": 1, "pixels": [[0], [0]]}', "numbers"),
    (b'{"width": 2, "height": 2}', '"pixels"'),
    (b'{"width": 2, "height": 2, "pixels": [0, 0, 0]}', "4 numbers"),
    (b'{"width": 0, "height": 2, "pixels": []}', '"width"'),
    (b'{"width": 2.5, "height": 2, "pixels": [0, 0, 0, 0, 0]}', '"width"'),
    (b'{"width": true, "height": 1, "pixels": [0]}', '"width"'),
    (b'{"width": 5000, "height": 5000, "pixels": []}', '"width"'),
    (b'{"width": 2, "height": 2, "pixels": [0, "a", 0, 0]}', "numbers"),
    (b'{"width": 2, "height": 2, "pixels": [0, [1], 0, 0]}', "numbers"),
    (b'{"width": 2, "height": 2, "pixels": [0, null, 0, 0]}', "numbers"),
    (b'{"width": 2, "height": 2, "pixels": [0, 1e999, 0, 0]}', "finite"),
    (b'{"width": 2, "height": 2, "pixels": [0, NaN, 0, 0]}', "finite"),
    (b'{"width": 2, "height": 2, "pixels": [0, 256, 0, 0]}', "between 0"),
    (b'{"width": 2, "height": 2, "pixels": [0, -1, 0, 0]}', "between 0"),
])
def test_malformed_drawings_are_400_with_a_message(port, body, phrase):
    status, message = error_of(request(port, "POST", "/api/predict", body, {"Content-Type": "application/json"}))
    assert status == 400 and phrase in message, message


def test_a_body_of_another_type_is_415(port):
    status, message = error_of(request(port, "POST", "/api/predict", b"hello", {"Content-Type": "text/plain"}))
    assert status == 415 and "image" in message


def test_a_blank_drawing_is_400_no_ink(port):
    images_module()
    status, message = error_of(post_json(port, drawing(np.full((140, 140), 255, np.uint8))))
    assert status == 400 and "no ink" in message


@pytest.mark.parametrize("body", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b""])
def test_an_image_body_that_is_not_an_image_is_400(port, body):
    images_module()
    status, message = error_of(request(port, "POST", "/api/predict", body, {"Content-Type": "image/png"}))
    assert status == 400, message


def test_the_server_still_answers_after_bad_requests(port, model):
    images_module()
    for body in (b"{", b"x" * 3_000_000, b'{"width": -1}'):
        request(port, "POST", "/api/predict", body, {"Content-Type": "application/json"})
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # garbage instead of HTTP
        sock.sendall(b"\x16\x03\x01 hello there\r\n\r\n")
        sock.makefile("rb").read()
    with socket.create_connection(("127.0.0.1", port), timeout=10):  # and a client that says nothing and goes
        pass
    status, _, body = post_json(port, drawing(draw_strokes(STROKES[7])))
    assert status == 200 and json.loads(body)["prediction"] in range(10)


# ------------------------------------------------------------------ answers
def test_a_drawing_gets_the_models_own_answer(port, model):
    gray = draw_strokes(STROKES[7])
    status, headers, body = post_json(port, drawing(gray))
    assert status == 200 and headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert set(answer) == {"prediction", "probabilities", "input", "hidden", "milliseconds"}
    x, probabilities = expected(model, gray / 255.0)
    np.testing.assert_allclose(answer["probabilities"], probabilities, rtol=1e-5, atol=1e-7)
    assert answer["prediction"] == int(np.argmax(probabilities))
    np.testing.assert_allclose(answer["input"], x, atol=5e-4)
    _, activations = model.forward(x.reshape(1, -1))
    assert [len(h) for h in answer["hidden"]] == [24, 12]
    for sent, a in zip(answer["hidden"], activations[1:-1]):
        np.testing.assert_allclose(sent, a[0], atol=5e-5)


def test_an_image_file_takes_the_same_path_as_predict(port, model):
    images = images_module()
    gray = draw_strokes(STROKES[1], side=200)
    png = png_bytes(gray)
    status, _, body = request(port, "POST", "/api/predict", png, {"Content-Type": "image/png"})
    assert status == 200, body
    x = images.image_to_input(png)
    answer = json.loads(body)
    np.testing.assert_allclose(answer["probabilities"], model.predict_proba(x.reshape(1, -1))[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(answer["input"], x, atol=5e-4)


def ring(side: int = 60) -> np.ndarray:
    """A square ring of dark ink on white, cut to its ink: two thirds of it are ink, so only the user can say."""
    gray = np.full((side, side), 255, np.uint8)
    gray[:side // 3], gray[-(side // 3):], gray[:, :side // 3], gray[:, -(side // 3):] = 0, 0, 0, 0
    return gray


def test_an_upload_cut_tight_to_its_ink_is_read_and_ink_can_be_said(port, model, monkeypatch):
    """The upload and the drawing go through bptrain.images.preprocess itself, with the ink choice."""
    images = images_module()
    gray = draw_strokes(STROKES[7], side=200)
    rows, cols = np.nonzero(gray < 128)
    tight = png_bytes(gray[rows.min():rows.max() + 1, cols.min():cols.max() + 1])  # the 7 touches all four edges
    square = png_bytes(ring())
    expected = {"tight": images.image_to_input(tight),
                **{ink: images.image_to_input(square, ink=ink) for ink in ("auto", "dark")}}
    seen = []
    real_preprocess = images.preprocess
    monkeypatch.setattr(images, "preprocess", lambda *a, **k: seen.append(k.get("ink")) or real_preprocess(*a, **k))

    status, _, body = request(port, "POST", "/api/predict", tight, {"Content-Type": "image/png"})
    assert status == 200, body
    np.testing.assert_allclose(json.loads(body)["input"], expected["tight"], atol=5e-4)
    for ink in ("auto", "dark"):
        status, _, body = request(port, "POST", f"/api/predict?ink={ink}", square, {"Content-Type": "image/png"})
        assert status == 200, body
        np.testing.assert_allclose(json.loads(body)["input"], expected[ink], atol=5e-4)
        status, _, body = post_json(port, {**drawing(ring()), "ink": ink})
        assert status == 200, body
        np.testing.assert_allclose(json.loads(body)["input"], expected[ink], atol=5e-4)
    assert json.loads(body)["input"][14 * 28 + 14] == 0  # with "dark", the ring's hole is paper
    assert seen == ["auto", "auto", "auto", "dark", "dark"]


@pytest.mark.parametrize("how", ["json", "query"])
def test_an_unknown_ink_is_400(port, how):
    images_module()
    if how == "json":
        answer = post_json(port, {**drawing(ring()), "ink": ["dark"]})
    else:
        answer = request(port, "POST", "/api/predict?ink=black", png_bytes(ring()), {"Content-Type": "image/png"})
    assert error_of(answer) == (400, '"ink" must be one of auto, dark, light')


def test_an_mse_model_answers_probabilities_that_sum_to_one():
    images_module()
    mse = MLP((784, 16, 10), loss="mse", seed=1)
    with running(mse) as mse_port:
        status, _, body = post_json(mse_port, drawing(draw_strokes(STROKES[1])))
        model_info = json.loads(request(mse_port, "GET", "/api/model")[2])
    assert status == 200
    assert sum(json.loads(body)["probabilities"]) == pytest.approx(1.0)
    assert model_info["output"] == "sigmoid" and model_info["hidden"] == [16]


def test_concurrent_requests_each_get_their_own_answer(port, model):
    """20 threads post different digits at once: a shared work array without the lock would mix them up."""
    images_module()
    rng = np.random.default_rng(0)
    grays = []
    for i in range(20):
        strokes = [[(x + rng.uniform(-30, 30), y + rng.uniform(-30, 30)) for x, y in line]
                   for line in STROKES[(1, 7)[i % 2]]]
        grays.append(draw_strokes(strokes))
    wanted = [expected(model, g / 255.0)[1] for g in grays]
    barrier = threading.Barrier(20)

    def post(gray):
        barrier.wait()
        return post_json(port, drawing(gray))

    for _ in range(3):  # without the lock, a round goes wrong about two times in three
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(post, grays))
        for (status, _, body), probabilities in zip(answers, wanted):
            assert status == 200
            np.testing.assert_allclose(json.loads(body)["probabilities"], probabilities, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ a trained model
@pytest.fixture(scope="module")
def mnist_port(real_mnist_path):
    images_module()
    trained, meta = trained_mnist_model(real_mnist_path)
    with running(trained, meta) as port:
        yield port


@pytest.mark.parametrize("digit", sorted(STROKES))
def test_a_clearly_drawn_digit_is_read_right(mnist_port, digit):
    status, _, body = post_json(mnist_port, drawing(draw_strokes(STROKES[digit])))
    answer = json.loads(body)
    assert status == 200 and answer["prediction"] == digit, answer["probabilities"]
    assert answer["probabilities"][digit] > 0.5


# ------------------------------------------------------------------ the command
def test_is_loopback():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert server.is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org", ""):
        assert not server.is_loopback(host), host


def test_serve_refuses_a_bad_model_file_in_one_line(runner, tmp_path):
    images_module()
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not a model")
    assert_clean_error(invoke(runner, "serve", bad, "--port", "0"), "bad.npy")
    assert_clean_error(invoke(runner, "serve", tmp_path / "missing.npy", "--port", "0"), "missing.npy")


def test_serve_refuses_a_model_whose_input_is_not_an_image(runner, tmp_path):
    images_module()
    path = save_model(MLP((20, 8, 3)), tmp_path / "blobs.npy")
    assert_clean_error(invoke(runner, "serve", path, "--port", "0"), "not a square image")


def test_serve_refuses_a_port_in_use_in_one_line(runner, tmp_path):
    images_module()
    path = save_model(MLP((784, 8, 10)), tmp_path / "m.npy")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_clean_error(invoke(runner, "serve", path, "--port", port), f"cannot listen on 127.0.0.1:{port}")


def test_serve_checks_the_port_range(runner, tmp_path):
    path = save_model(MLP((784, 8, 10)), tmp_path / "m.npy")
    assert_clean_error(invoke(runner, "serve", path, "--port", "70000"), "--port", exit_code=2)


def test_serve_refuses_an_unknown_host_in_one_line(runner, tmp_path):
    images_module()
    path = save_model(MLP((784, 8, 10)), tmp_path / "m.npy")
    result = invoke(runner, "serve", path, "--host", "no-such-host.invalid", "--port", "0")
    assert_clean_error(result, "cannot listen on no-such-host.invalid:0")


@pytest.mark.parametrize("stop_signal, verbose", [(signal.SIGINT, False), (signal.SIGTERM, False),
                                                   (signal.SIGINT, True)], ids=["ctrl-c", "sigterm", "verbose"])
def test_serve_in_a_real_process_prints_its_url_answers_and_stops_cleanly(tmp_path, stop_signal, verbose):
    images_module()
    path = save_model(MLP((784, 8, 10), seed=2), tmp_path / "m.npy")
    process = subprocess.Popen([sys.executable, "-m", "bptrain", "serve", str(path), "--port", "0"]
                               + ["--verbose"] * verbose,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               env={**{k: v for k, v in os.environ.items() if k != "BPTRAIN_DATA"},
                                    "PYTHONUNBUFFERED": "1"})
    with ended_at_exit(process):
        line = process.stdout.readline()  # without data the page still trains nothing, but it is the training page
        assert line.startswith("serving the training page at http://127.0.0.1:"), line + process.stderr.read()
        url = line.split()[5]
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        assert port != 0
        assert request(port, "GET", "/")[0] == 200
        status, _, body = post_json(port, drawing(draw_strokes(STROKES[1])))
        assert status == 200 and json.loads(body)["prediction"] in range(10)
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert out.strip() == "stopped" and "Traceback" not in err
    if verbose:  # a line per request
        assert '"GET / HTTP/1.1" 200' in err and '"POST /api/predict HTTP/1.1" 200' in err, err
    else:  # quiet: no line per request; only why the page cannot train (no data in the default place)
        assert [line.split(":")[0] for line in err.splitlines()] == ["note"], err
        assert "the page can draw but not train: no data at data/mnist.pkl.gz" in err


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_other_hidden_units_are_described_and_shown(activation):
    """The page shows any model: the hidden strips are the model's own activations (tanh may be negative)."""
    images_module()
    net = MLP((784, 16, 10), loss="mse", seed=1, activation=activation)
    with running(net) as net_port:
        info = json.loads(request(net_port, "GET", "/api/model")[2])
        status, _, body = post_json(net_port, drawing(draw_strokes(STROKES[1])))
    assert (info["activation"], info["output"]) == (activation, "sigmoid")
    assert status == 200
    answer = json.loads(body)
    expected = net.forward(np.asarray(answer["input"], np.float32).reshape(1, -1))[1][1][0]
    np.testing.assert_allclose(answer["hidden"][0], expected, atol=2e-3)


@pytest.mark.parametrize("method, path, body", [("GET", "/", None), ("GET", "/api/model", None),
                                                ("GET", "/app.js", None),
                                                ("POST", "/api/predict", b'{"width": 1, "height": 1, "pixels": [0]}'),
                                                ("POST", "/api/explain", b'{"input": []}')])
def test_every_route_refuses_another_sites_host_name(port, method, path, body):
    """DNS rebinding: a page on evil.example, its name pointed at 127.0.0.1, must read nothing at all."""
    headers = {"Host": f"evil.example:{port}", "Content-Type": "application/json"}
    status, _, answer = request(port, method, path, body, headers)
    assert status == 403 and b"does not name this server" in answer
    status, _, _ = request(port, method, path, body, {**headers, "Host": f"localhost:{port}"})
    assert status != 403


@pytest.mark.parametrize("length", ["\u00b2", "1\u00b2", "\u00b9\u00b2"])
def test_a_content_length_of_non_ascii_digits_is_a_400_not_a_500(port, length):
    """str.isdigit() takes them, int() takes some and not others: only 0-9 are a length."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode("latin-1"))  # as http.server decodes it
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 400 ") and b"invalid Content-Length" in answer, answer[:200]


@pytest.mark.parametrize("body", [b'{"width": ' + b"9" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000])
def test_json_python_cannot_use_is_a_400(port, body):
    status, _, answer = request(port, "POST", "/api/predict", body, {"Content-Type": "application/json"})
    assert status == 400 and b"malformed JSON" in answer


def test_a_query_of_non_ascii_digits_is_a_400_not_a_500(port):
    body = json.dumps({"width": 1, "height": 1, "pixels": [0]}).encode()
    status, _, answer = request(port, "POST", "/api/predict?snapshot=%C2%B2", body,
                                {"Content-Type": "application/json"})
    assert status == 400 and b"snapshot" in answer


@pytest.mark.parametrize("browser_command, opened", [("false", False), ("true", True)])
def test_serve_open_says_so_when_no_browser_opens(tmp_path, browser_command, opened):
    """`serve --open` on a machine without a browser (no display; here $BROWSER a command that fails) says
    so and where the page is, instead of nothing; when a browser takes it, nothing more is said."""
    images_module()
    path = save_model(MLP((784, 8, 10), seed=2), tmp_path / "m.npy")
    quiet = ("DISPLAY", "WAYLAND_DISPLAY", "TERM", "BROWSER", "BPTRAIN_DATA")
    process = subprocess.Popen([sys.executable, "-m", "bptrain", "serve", str(path), "--port", "0", "--open"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               env={**{k: v for k, v in os.environ.items() if k not in quiet},
                                    "BROWSER": browser_command, "PYTHONUNBUFFERED": "1"})
    with ended_at_exit(process):
        url = process.stdout.readline().split()[5]
        assert request(int(url.rstrip("/").rsplit(":", 1)[1]), "GET", "/")[0] == 200   # serving, past the --open
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    said = f"--open: no web browser could be started here; open {url} in one yourself"
    assert (said in out) != opened, out
