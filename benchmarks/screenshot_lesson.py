"""Make docs/lesson.md's pictures: three steps of the lesson on a data-set digit, in headless Chromium.

    python benchmarks/screenshot_lesson.py model.npy --data mnist.pkl.gz [--split test --index 0] [--out-dir docs]

Needs the `test` and `images` extras (selenium, Pillow) and Debian's chromium + chromium-driver. The page is
served in this process (the server `bptrain serve MODEL --data ...` starts) on a free port of 127.0.0.1 and
opened at /#lesson/N/SPLIT/INDEX, the lesson's own URL; the forward step is shown with a unit hovered. Each
picture is the lesson's view cropped to its content, saved as a small palette PNG.
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

#: (file name, step kind, which of its kind (0: the first), hover a unit?) of the three pictures.
SHOTS = (("lesson-forward.png", "forward", 0, True), ("lesson-backward.png", "backward", 1, True),
         ("lesson-input-gradient.png", "input-gradient", 0, False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument("--index", type=int, default=0)
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
            L = model.n_layers   # the steps: input, L forward, the cost, L backward, the check, the input's gradient
            first = {"input": 1, "forward": 2, "cost": L + 2, "backward": L + 3, "check": 2 * L + 3, "input-gradient": 2 * L + 4}
            for name, kind, which, hover in SHOTS:
                number = first[kind] + which
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                       {"width": 1200, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
                driver.get(f"{url}#lesson/{number}/{args.split}/{args.index}")
                lesson = driver.find_element(By.ID, "lesson")
                WebDriverWait(driver, 30).until(lambda d: lesson.get_attribute("data-step") == str(number)
                                                and lesson.get_attribute("data-requests") == "idle"
                                                and lesson.get_attribute("data-kind") == kind)
                skip = driver.find_elements(By.ID, "lesson-skip")
                if skip:
                    skip[0].click()
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


if __name__ == "__main__":
    sys.exit(main())
