"""What watching costs: the same run by `bptrain train` and from `bptrain serve`'s page, watched, in pairs.

Each round runs, in alternating order, two processes on the same settings (train's defaults: the
784-128-64-10 network at batch 32; --epochs E):

- A: ``bptrain train -q``; its time is the sum of its epochs' seconds in the history file;
- B: ``bptrain serve`` with a headless Chromium open on its page (or, with ``--client stream``, a raw
  client reading the event stream), which presses Train; its time is the sum of the run's epochs'
  seconds (GET /api/train), the same records.

Epoch seconds exclude process start and data loading on both sides. Prints each pair's ratio B / A
and their median; above 1.15 the page slows training by more than 15%.

    python benchmarks/live_overhead.py --data ../shared/data/mnist.pkl.gz --rounds 5 --epochs 3
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def run_train(data: Path, epochs: int, work: Path) -> float:
    out = work / "a.npy"
    subprocess.run([sys.executable, "-m", "bptrain", "train", "--data", str(data), "--epochs", str(epochs),
                    "--batch-size", "32", "--out", str(out), "-q"], check=True)
    history = json.loads((work / "a.history.json").read_text())
    return sum(record["seconds"] for record in history["epochs"])


def call(port: int, method: str, path: str, document=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        body = None if document is None else json.dumps(document).encode()
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def read_stream(port: int, stop: threading.Event) -> None:
    """A client of the event stream that reads everything, as a tab would, until told to stop."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/api/train/events")
    response = connection.getresponse()
    while not stop.is_set() and response.fp.readline():
        pass
    connection.close()


def run_serve(data: Path, epochs: int, work: Path, client: str, env: dict | None = None,
              keep_model: list | None = None) -> float:
    """The run's epoch seconds; ``env``: the server's environment; ``keep_model``: a list that receives the
    trained model's bytes (GET /api/train/model)."""
    process = subprocess.Popen([sys.executable, "-m", "bptrain", "serve", "--data", str(data), "--port", "0",
                                "--out-dir", str(work), "--epochs", str(epochs), "--batch-size", "32"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"})
    driver = profile = None
    stop = threading.Event()
    try:
        url = process.stdout.readline().split()[5]
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        if client == "browser":
            from selenium import webdriver
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import WebDriverWait

            options = webdriver.ChromeOptions()
            options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
            profile = tempfile.mkdtemp(prefix="chromium-profile-")
            for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--no-first-run", "--window-size=1280,1000", f"--user-data-dir={profile}"):
                options.add_argument(argument)
            driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"),
                                      options=options)
            driver.get(url)
            WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-stream")
                                            == "open" and d.find_element(By.ID, "opt-epochs").get_attribute("value"))
            driver.find_element(By.ID, "train-start").click()  # the page's own request
        else:
            threading.Thread(target=read_stream, args=(port, stop), daemon=True).start()
            time.sleep(0.5)
            status, answer = call(port, "POST", "/api/train", {})
            assert status == 200, answer
        while True:
            time.sleep(1.0)  # one small request a second: the page's own load is what is measured
            state = call(port, "GET", "/api/train")[1]
            if state.get("status") not in ("idle", "running", "paused"):
                break
        assert state["status"] == "finished", state
        if keep_model is not None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", "/api/train/model")
            keep_model.append(connection.getresponse().read())
            connection.close()
        return sum(record["seconds"] for record in state["epochs"])
    finally:
        stop.set()
        if driver is not None:
            driver.quit()
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--client", choices=("browser", "stream"), default="browser",
                        help="who watches the page's run: headless Chromium on the page, or a raw event-stream client")
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for round_ in range(1, args.rounds + 1):
            order = ("train", "serve") if round_ % 2 else ("serve", "train")
            seconds = {}
            for kind in order:
                seconds[kind] = (run_train(args.data, args.epochs, work) if kind == "train"
                                 else run_serve(args.data, args.epochs, work, args.client))
            ratios.append(seconds["serve"] / seconds["train"])
            print(f"round {round_}: train {seconds['train']:.2f} s, serve + {args.client} {seconds['serve']:.2f} s "
                  f"(ran {' then '.join(order)}): ratio {ratios[-1]:.3f}", flush=True)
    print(f"median ratio (serve watched / train) over {len(ratios)} pairs: {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
