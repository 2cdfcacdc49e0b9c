"""Make docs/lesson.md's pictures: three steps of the lesson on a data-set digit, in headless Chromium.

    python benchmarks/screenshot_lesson.py model.npy --data mnist.pkl.gz [--split test --index N] [--out-dir docs]

Needs the `test` and `images` extras (selenium, Pillow) and Debian's chromium + chromium-driver. The page is
served in this process (the server `bptrain serve MODEL --data ...` starts) on a free port of 127.0.0.1 and
opened at /#lesson/N/SPLIT/INDEX, the lesson's own URL (without --index, /#lesson/N: the server's choice, the
first test digit the network reads wrong); the forward step is shown with a unit hovered, the δ_j question
answered wrongly (the pick marked), the others skipped. Each picture is the lesson's view cropped to its
content, saved as a small palette PNG.
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
from pathlib import Path

from screenshot_serve import headless_chromium  # beside this script

from bptrain.app.serve import http as server
from bptrain.data.loader import load_dataset
from bptrain.data.model_io import load_model

#: (file name, step kind, which of its kind (0: the first), hover a unit?, the question: "skip" or "wrong").
SHOTS = (("lesson-forward.png", "forward", 0, True, "skip"), ("lesson-backward.png", "backward", 2, True, "skip"),
         ("lesson-question.png", "backward", 1, False, "wrong"), ("lesson-batch.png", "batch", 0, False, "skip"),
         ("lesson-input-gradient.png", "input-gradient", 0, False, "skip"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument("--index", type=int, default=None)
    parser.add_argument("--out-dir", type=Path, default=Path("docs"))
    args = parser.parse_args()

    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model, meta = load_model(args.model)
    httpd = server.make_server(server.Predictor(model, meta, load_dataset(args.data)), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = server.server_url(httpd)
    written = []
    with headless_chromium("1200,1000") as driver:
        try:
            L = model.n_layers   # the steps: input, L forward, the cost, L backward, the speeds, the batch, the check,
            first = {"input": 1, "forward": 2, "cost": L + 2, "backward": L + 3,   # the input's gradient, the update
                     "speed": 2 * L + 3, "batch": 2 * L + 4, "check": 2 * L + 5, "input-gradient": 2 * L + 6}
            digit = "" if args.index is None else f"/{args.split}/{args.index}"
            for name, kind, which, hover, answer in SHOTS:
                number = first[kind] + which
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                       {"width": 1200, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
                driver.get(f"{url}#lesson/{number}{digit}")
                lesson = driver.find_element(By.ID, "lesson")
                WebDriverWait(driver, 30).until(lambda d: lesson.get_attribute("data-step") == str(number)
                                                and lesson.get_attribute("data-requests") == "idle"
                                                and lesson.get_attribute("data-kind") == kind)
                skip = driver.find_elements(By.ID, "lesson-skip")
                if skip and answer == "skip":
                    skip[0].click()
                elif skip:                  # a wrong pick: the first choice that is not the answer
                    buttons = driver.find_elements(By.CSS_SELECTOR, "#lesson-question button[data-choice]")
                    right = _answer(driver, number)
                    wrong = next(b for b in buttons if b.text != right)
                    wrong.click()
                height = driver.execute_script("return document.querySelector('#lesson article')"
                                               ".getBoundingClientRect().bottom + 16")
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                       {"width": 1200, "height": int(height), "deviceScaleFactor": 1, "mobile": False})
                if hover:   # a unit hovered with the mouse: its terms and where they come from
                    cells = driver.find_elements(By.CSS_SELECTOR, "#lesson-units .ls-cell")
                    ActionChains(driver).move_to_element(cells[min(len(cells) - 1, 7)]).perform()
                box = driver.execute_script(
                    "const r = document.querySelector('#lesson .ls-body').getBoundingClientRect();"
                    "const a = document.querySelector('#lesson article').getBoundingClientRect();"
                    "return [r.left, 0, r.right, a.bottom, window.innerWidth];")
                picture = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
                scale = picture.width / box[4]
                picture = picture.crop(tuple(round(v * scale) for v in box[:4]))
                out = args.out_dir / name
                picture.quantize(colors=256).save(out, optimize=True)
                written.append(f"{out} ({picture.width}x{picture.height}, step {number}: {kind})")
        finally:
            httpd.shutdown()
    print("\n".join(written))
    return 0


def _answer(driver, number: int) -> str:
    """The right choice of step ``number``'s question, from the lesson's own answer (the page keeps it)."""
    return driver.execute_script(
        "return fetch('/api/lesson', {method: 'POST', headers: {'Content-Type': 'application/json'}, "
        "body: JSON.stringify(location.hash.split('/').length > 2 ? {split: location.hash.split('/')[2], "
        "index: Number(location.hash.split('/')[3])} : {})}).then(r => r.json())"
        ".then(d => d.steps[arguments[0] - 1].question.choices[d.steps[arguments[0] - 1].question.answer])", number)


if __name__ == "__main__":
    sys.exit(main())
