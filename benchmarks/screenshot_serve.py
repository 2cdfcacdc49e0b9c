"""Make the README's picture of `bptrain serve`: draw a digit on the page in headless Chromium, screenshot it.

    python benchmarks/screenshot_serve.py model.npy [--out .readme/serve.png] [--digit 2]

Needs the `test` and `images` extras (selenium, Pillow) and Debian's chromium + chromium-driver. The page
is served in this process (the same server `bptrain serve` starts) on a free port of 127.0.0.1; the
digit is drawn with the mouse as a person would; the screenshot is cropped to the page's content and
saved as a small palette PNG.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bptrain.app.serve import http as server
from bptrain.data.model_io import load_model

# Pen strokes on the 280 x 280 pad, as polylines of (x, y) points.
STROKES = {
    2: [[(85, 88), (98, 62), (128, 46), (165, 50), (188, 74), (189, 106), (168, 142), (132, 180), (92, 226),
         (200, 222)]],
    7: [[(80, 55), (200, 55), (120, 235)]],
    1: [[(140, 45), (140, 235)]],
}


@contextlib.contextmanager
def headless_chromium(window_size: str):
    """A Selenium driver of Debian's headless Chromium with a throwaway profile, quit and removed on exit."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", f"--window-size={window_size}", "--hide-scrollbars",
                     f"--user-data-dir={profile}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"),
                              options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def draw(driver, pad, strokes, step=10):
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver, duration=5)
    for polyline in strokes:
        points = np.asarray(polyline, float) - 140  # offsets from the pad's centre
        actions.move_to_element_with_offset(pad, *points[0].round().astype(int).tolist()).click_and_hold()
        for start, end in zip(points[:-1], points[1:]):
            n = max(1, int(np.hypot(*(end - start)) // step))
            for t in np.linspace(0, 1, n + 1)[1:]:
                actions.move_to_element_with_offset(pad, *(start + t * (end - start)).round().astype(int).tolist())
        actions.release()
    actions.perform()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=Path(".readme/serve.png"))
    parser.add_argument("--digit", type=int, choices=sorted(STROKES), default=2)
    parser.add_argument("--width", type=int, default=900, help="width of the saved picture in pixels")
    args = parser.parse_args()

    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model, meta = load_model(args.model)
    httpd = server.make_server(server.Predictor(model, meta), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with headless_chromium("1120,1000") as driver:
        try:
            driver.get(server.server_url(httpd))
            WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#layers canvas.strip"))
            draw(driver, driver.find_element(By.ID, "pad"), STROKES[args.digit])
            WebDriverWait(driver, 20).until(
                lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-requests") == "idle"
                and d.find_element(By.ID, "prediction").text)
            time.sleep(0.3)  # the bars' 80 ms transition
            shown = driver.find_element(By.ID, "prediction").text
            durations = driver.execute_script("return performance.getEntriesByType('resource')"
                                              ".filter(e => e.name.endsWith('/api/predict')).map(e => e.duration)")
            request_bytes = driver.execute_script("return padPixels().length")
            right, bottom, page_width = driver.execute_script(
                "const r = document.querySelector('main').getBoundingClientRect();"
                "return [r.right, r.bottom, window.innerWidth];")
            picture = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        finally:
            httpd.shutdown()
    scale = picture.width / page_width  # screenshot pixels per CSS pixel
    picture = picture.crop((0, 0, min(picture.width, round(right * scale)), min(picture.height, round(bottom * scale))))
    height = round(picture.height * args.width / picture.width)
    picture = picture.resize((args.width, height), Image.Resampling.LANCZOS).quantize(colors=128, dither=Image.Dither.NONE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, optimize=True)
    print(f"while drawing, the page sent {len(durations)} requests of {request_bytes / 1024:.0f} KB "
          f"(the last one's size), answered in {np.median(durations):.1f} ms (median; max {max(durations):.1f} ms)")
    print(f"drew a {args.digit}, the page shows {shown}; wrote {args.out} "
          f"({picture.width}x{picture.height}, {args.out.stat().st_size / 1024:.0f} KB)")
    return 0 if shown == str(args.digit) else 1


if __name__ == "__main__":
    sys.exit(main())
