"""Watch it learn, timed: `bptrain serve`'s page in headless Chromium trains on the real MNIST, and a screenshot.

What a new user does: open the page, press Train (the default settings: 784-128-64-10 sigmoid, batch 32,
train's defaults), draw a digit while it learns, set the learning rate by hand once it passes 97%, then
stop, save the model and move the replay slider back to epoch 0. Prints how long after the press each
epoch ended (and when validation accuracy first reached 97%), and writes the screenshot taken while it
trains (cropped to the page's first cards, a small palette PNG) for the README.

    python benchmarks/screenshot_live.py --data ../shared/data/mnist.pkl.gz --out .readme/live.png
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from bptrain.app.serve import http as server
from bptrain.app.serve.session import LiveTraining
from bptrain.data.loader import load_dataset
from screenshot_serve import STROKES, draw, headless_chromium


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(".readme/live.png"))
    parser.add_argument("--digit", type=int, choices=sorted(STROKES), default=2)
    parser.add_argument("--target", type=float, default=0.97, help="validation accuracy to time")
    parser.add_argument("--width", type=int, default=1000, help="width of the saved picture in pixels")
    parser.add_argument("--lr", type=float, default=0.02, help="learning rate to set by hand once past the target")
    args = parser.parse_args()

    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    out_dir = Path(tempfile.mkdtemp(prefix="bptrain-live-"))
    live = LiveTraining(dataset=load_dataset(args.data), out_dir=out_dir)
    httpd = server.make_server(None, "127.0.0.1", 0, live=live)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with headless_chromium("1280,1200") as driver:
        wait = WebDriverWait(driver, 600, poll_frequency=0.05)
        body = lambda d: d.find_element(By.TAG_NAME, "body")  # noqa: E731
        try:
            driver.get(server.server_url(httpd))
            wait.until(lambda d: d.find_element(By.ID, "opt-epochs").get_attribute("value"))
            driver.find_element(By.ID, "train-start").click()
            pressed = time.perf_counter()
            wait.until(lambda d: body(d).get_attribute("data-run") == "running")
            pad = driver.find_element(By.ID, "pad")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", pad)
            draw(driver, pad, STROKES[args.digit])
            driver.execute_script("window.scrollTo(0, 0)")
            reached = None
            while reached is None:
                records = live.state()["epochs"]
                for record in records:
                    if record["val_accuracy"] >= args.target:
                        reached = record
                        break
                if live.run.status not in ("running", "paused"):
                    break
                time.sleep(0.05)
            reached_after = time.perf_counter() - pressed
            knob = driver.find_element(By.ID, "knob-lr")
            knob.send_keys(str(args.lr))
            driver.find_element(By.ID, "knob-apply").click()
            wait.until(lambda d: "set by hand" in d.find_element(By.ID, "train-status").text)
            epochs_seen = len(live.state()["epochs"])
            wait.until(lambda d: len(live.state()["epochs"]) > epochs_seen)  # the epoch of the change, recorded
            time.sleep(1.5)  # a few more points on the charts, the tiles redrawn
            shown = driver.find_element(By.ID, "prediction").text
            bottom, page_width = driver.execute_script(
                "return [document.getElementById('weights-card').getBoundingClientRect().bottom, window.innerWidth]")
            picture = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
            driver.find_element(By.ID, "train-stop").click()
            wait.until(lambda d: body(d).get_attribute("data-run") == "stopped")
            driver.find_element(By.ID, "train-save").click()
            wait.until(lambda d: d.find_element(By.ID, "save-result").text)
            saved = driver.find_element(By.ID, "save-result").text
            driver.find_element(By.ID, "replay").send_keys(Keys.HOME)
            wait.until(lambda d: d.find_element(By.ID, "answer").get_attribute("data-network") == "0"
                       and body(d).get_attribute("data-requests") == "idle")
            at_start = driver.find_element(By.ID, "prediction").text, driver.find_element(By.ID, "confidence").text
            history = live.state()["epochs"]
        finally:
            live.close(timeout=60)
            httpd.shutdown()
            shutil.rmtree(out_dir, ignore_errors=True)
    scale = picture.width / page_width
    picture = picture.crop((0, 0, picture.width, min(picture.height, round((bottom + 14) * scale))))
    height = round(picture.height * args.width / picture.width)
    picture = picture.resize((args.width, height), Image.Resampling.LANCZOS).quantize(
        colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)  # keeps the few chart colours
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, optimize=True)
    for record in history:
        print(f"epoch {record['epoch']:>2}: val acc {100 * record['val_accuracy']:.2f}%  lr {record['lr']:.4g}  "
              f"{record['seconds']:.1f} s" + (f"  controls {record['controls']}" if record["controls"] else ""))
    if reached is not None:
        print(f"validation accuracy {100 * reached['val_accuracy']:.2f}% >= {100 * args.target:g}% at epoch "
              f"{reached['epoch']}, {reached_after:.1f} s after pressing Train")
    else:
        print(f"the run ended without reaching {100 * args.target:g}%")
    print(f"drew a {args.digit}; the network read {shown} while training; at epoch 0 (random weights): "
          f"{at_start[0]} ({at_start[1]})")
    print(saved)
    print(f"wrote {args.out} ({picture.width}x{picture.height}, {args.out.stat().st_size / 1024:.0f} KB)")
    return 0 if reached is not None else 1


if __name__ == "__main__":
    sys.exit(main())
