"""The drawing page in a real browser: headless Chromium, driven by Selenium, draws digits with the mouse.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (the ``test`` extra);
``.ci/run`` installs them. Nothing is downloaded at test time: the driver's path is given, so Selenium
Manager never runs. Without them the tests skip with the reason, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from bptrain.app.serve import http as server
from digits import PAD_SIDE, STROKES, draw_strokes, trained_mnist_model

CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1120,800")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    try:
        import PIL  # noqa: F401
    except ImportError:
        return "Pillow is not installed (pip install -e '.[test]')"
    if shutil.which("chromium") is None:
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER.is_file():
        return f"{CHROMEDRIVER} is missing (apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in BROWSER_ARGS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page_url(real_mnist_path):
    """`bptrain serve`'s server with a model trained here on the real MNIST, on a free port, in a thread."""
    model, meta = trained_mnist_model(real_mnist_path)
    httpd = server.make_server(server.Predictor(model, meta), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_url(httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def draw(driver, pad, strokes, kind="mouse", step=12):
    """Draw polylines (pad coordinates) with a mouse, pen or finger: press, move in short steps, lift."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    builder = ActionBuilder(driver, mouse=PointerInput(kind, kind), duration=5)
    pointer = builder.pointer_action
    centre = PAD_SIDE / 2  # W3C actions measure offsets from the element's centre
    for polyline in strokes:
        points = np.asarray(polyline, float)
        pointer.move_to(pad, *(points[0] - centre).round().astype(int).tolist()).pointer_down()
        for start, end in zip(points[:-1], points[1:]):
            n = max(1, int(np.hypot(*(end - start)) // step))
            for t in np.linspace(0, 1, n + 1)[1:]:
                pointer.move_to(pad, *(start + t * (end - start) - centre).round().astype(int).tolist())
        pointer.pointer_up()
    builder.perform()


def wait_for_answer(driver):
    """Wait until every request has been answered; return the text of #prediction."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-requests") == "idle"
        and d.find_element(By.ID, "prediction").text.strip() != "")
    return driver.find_element(By.ID, "prediction").text.strip()


def canvas_grey_levels(driver, element_id) -> int:
    """How many different grey levels a canvas holds (1 for a blank one)."""
    return driver.execute_script("""
        const c = document.getElementById(arguments[0]);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const levels = new Set();
        for (let i = 0; i < d.length; i += 4) levels.add(d[i] + ',' + d[i + 3]);
        return levels.size;""", element_id)


@pytest.fixture
def page(browser, page_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_url)
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#layers canvas.strip"))
    return browser


def test_drawing_a_1_and_a_7_with_the_mouse(page, tmp_path):
    from selenium.webdriver.common.by import By

    pad = page.find_element(By.ID, "pad")
    assert page.find_element(By.ID, "prediction").text == ""  # nothing before drawing
    assert page.find_element(By.ID, "model-info").text.startswith("Network 784 → 64 → 10")
    for digit in (1, 7):
        page.find_element(By.ID, "clear").click()
        draw(page, pad, STROKES[digit])
        answer = wait_for_answer(page)
        page.save_screenshot(str(tmp_path / f"serve-{digit}.png"))
        assert answer == str(digit)
        assert page.find_element(By.ID, "error").text == ""
        shown = page.find_element(By.ID, "confidence").text
        assert shown.endswith("% sure") and float(shown.split("%")[0]) > 50
        # what the network sees: the 28 x 28 input, drawn
        seen = page.find_element(By.ID, "seen")
        assert (seen.get_attribute("width"), seen.get_attribute("height")) == ("28", "28")
        assert seen.get_attribute("data-filled") == "true" and canvas_grey_levels(page, "seen") >= 3  # black, white and anti-aliased greys
        # the hidden layer: one strip of 64 cells, in grey levels
        strips = page.find_elements(By.CSS_SELECTOR, "#layers canvas.strip")
        assert [s.get_attribute("data-units") for s in strips] == ["64"]
        assert strips[0].get_attribute("data-filled") == "true" and canvas_grey_levels(page, "hidden-1") > 10
        assert "Hidden layer 1 (64 units)" in page.find_element(By.ID, "layers").text
        # the bars: the predicted digit's is the widest
        widths = [page.execute_script(f"return document.querySelectorAll('#bars .fill')[{c}].style.width")
                  for c in range(10)]
        assert max(range(10), key=lambda c: float(widths[c].rstrip("%"))) == digit
    page.find_element(By.ID, "clear").click()
    assert page.find_element(By.ID, "prediction").text == ""
    assert page.find_element(By.ID, "seen").get_attribute("data-filled") == "false"


@pytest.mark.parametrize("kind", ["touch", "pen"])
def test_a_finger_or_a_pen_draws_too(page, kind):
    from selenium.webdriver.common.by import By

    page.execute_script("window.seenPointers = [];"
                        "document.getElementById('pad').addEventListener('pointerdown', "
                        "e => window.seenPointers.push(e.pointerType));")
    draw(page, page.find_element(By.ID, "pad"), STROKES[7], kind=kind)
    assert wait_for_answer(page) == "7"
    events = page.execute_script("return window.seenPointers")
    assert events == [kind]


def test_uploading_an_image_file_goes_through_the_server(page, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    # a 7 in light ink on a dark photo-sized background, off-centre: the server's preprocessing sorts it out
    canvas = np.full((300, 400), 30, np.uint8)
    ink = 255 - draw_strokes(STROKES[7], side=200)
    canvas[40:240, 170:370] = np.maximum(canvas[40:240, 170:370], ink)
    path = tmp_path / "seven.png"
    Image.fromarray(canvas).save(path)
    page.find_element(By.ID, "upload").send_keys(str(path))
    assert wait_for_answer(page) == "7"
    assert canvas_grey_levels(page, "hidden-1") > 10
    # the Backprop panel explains the same file, sent as it is to /api/explain
    wait_for_panel(page, lambda d: d.find_element(By.ID, "backprop-probability").get_attribute("data-label") == "7")
    assert page.find_element(By.ID, "backprop-error").text == ""
    assert len(page.find_elements(By.CSS_SELECTOR, "#backprop-layers .bp-cell")) == 2 * 64

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_bytes(b"these are not pixels")
    page.find_element(By.ID, "upload").send_keys(str(not_an_image))
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(page, 10).until(lambda d: d.find_element(By.ID, "error").text != "")
    assert "image" in page.find_element(By.ID, "error").text.lower()

    # a file over the 2 MB limit: the server refuses it unread, and the page still gets to say why
    noise = np.random.default_rng(0).integers(0, 256, size=(1100, 1000, 3), dtype=np.uint8)
    big = tmp_path / "big.png"
    Image.fromarray(noise).save(big)
    assert big.stat().st_size > server.MAX_BODY_BYTES
    page.find_element(By.ID, "clear").click()
    page.find_element(By.ID, "upload").send_keys(str(big))
    WebDriverWait(page, 10).until(lambda d: d.find_element(By.ID, "error").text != "")
    assert "limit" in page.find_element(By.ID, "error").text


def test_the_ink_choice_goes_with_an_upload(page, tmp_path):
    """A square ring cut to its ink is two thirds ink: "auto" takes the hole for the ink, "dark" does not."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    ring = np.full((60, 60), 255, np.uint8)
    ring[:20], ring[-20:], ring[:, :20], ring[:, -20:] = 0, 0, 0, 0
    path = tmp_path / "ring.png"
    Image.fromarray(ring).save(path)

    def centre_seen(driver):
        return driver.execute_script("""
            const c = document.getElementById('seen');
            return c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data[0];""")

    page.find_element(By.ID, "upload").send_keys(str(path))
    wait_for_answer(page)
    assert centre_seen(page) == 255
    Select(page.find_element(By.ID, "ink")).select_by_value("dark")
    WebDriverWait(page, 10).until(lambda d: centre_seen(d) == 0)
    wait_for_answer(page)
    assert page.find_element(By.ID, "error").text == ""


def wait_for_panel(driver, condition=lambda d: True, seconds=20):
    """Wait until the Backprop panel has every answer in and ``condition`` holds."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, seconds).until(
        lambda d: d.find_element(By.ID, "backprop").get_attribute("data-requests") == "idle" and condition(d))


def section_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "backprop").text


def shown_percentages(text: str) -> list[float]:
    """The percentages of a line, in its one form: 12.34% or, below 0.01%, 5.3e−4% (a true minus sign)."""
    numbers = re.findall(r"([0-9.]+(?:e−[0-9]+)?)%", text)
    assert all(re.fullmatch(r"[0-9]+\.[0-9]{2}|0|[1-9]\.[0-9]e−[0-9]+", n) for n in numbers), numbers
    return [float(n.replace("−", "-")) for n in numbers]


def test_the_backprop_panel_teaches_a_drawn_7_to_be_a_1(page, tmp_path):
    """Draw a 7, set the label to 1, hover a unit of the first hidden layer and read its δ formula, take one
    step and see p(1) rise; Reset goes back. The numbers are the server's (/api/explain)."""
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    draw(page, page.find_element(By.ID, "pad"), STROKES[7])
    assert wait_for_answer(page) == "7"
    wait_for_panel(page, lambda d: d.find_elements(By.CSS_SELECTOR, '#backprop-layers [data-layer="1"]'))
    label = Select(page.find_element(By.ID, "backprop-label"))
    assert label.first_selected_option.text == "the network's answer (7)"
    assert [o.get_attribute("value") for o in label.options] == [""] + [str(c) for c in range(10)]

    label.select_by_value("1")
    probability = page.find_element(By.ID, "backprop-probability")
    wait_for_panel(page, lambda d: probability.get_attribute("data-label") == "1")
    assert probability.text.startswith("p(1) = ")
    before = float(probability.get_attribute("data-now"))
    # Δ_L = A_L − Y: ten signed numbers, the label's near −1 (p(1) is small), the network's 7 near +1
    errors = [float(c.text.replace("−", "-")) for c in page.find_elements(By.CSS_SELECTOR, "#backprop-output .bp-delta")]
    assert len(errors) == 10 and errors[1] < -0.9 and errors[7] > 0.5 and abs(sum(errors)) < 0.01
    # δ of the 64 units of the hidden layer, as signed colours, beside its activations
    deltas = page.find_elements(By.CSS_SELECTOR, '#backprop-layers .bp-grid[data-kind="delta"] .bp-cell')
    actives = page.find_elements(By.CSS_SELECTOR, '#backprop-layers .bp-grid[data-kind="a"] .bp-cell')
    assert len(deltas) == len(actives) == 64
    colours = {c.value_of_css_property("background-color") for c in deltas}
    assert len(colours) > 20 and any("200" in c for c in colours)   # many shades, some reddish (positive)

    cell = deltas[5]
    ActionChains(page).move_to_element(cell).perform()
    formula = page.find_element(By.ID, "backprop-unit")
    wait_for_panel(page, lambda d: d.find_element(By.ID, "backprop-unit").get_attribute("data-shown-unit") == "5")
    line = page.find_element(By.ID, "backprop-formula").text
    assert re.fullmatch(r"δ_j = \(Σ_k W_jk δ_k\) · a_j \(1 − a_j\) = (-?[0-9.e-]+) × ([0-9.e-]+) = (-?[0-9.e-]+)",
                        line), line
    assert "Unit 5 of hidden layer 1" in formula.text and "bias b_j" in formula.text
    weights = page.find_element(By.ID, "backprop-weights")
    assert (weights.get_attribute("width"), weights.get_attribute("height")) == ("28", "28")
    assert canvas_grey_levels(page, "backprop-weights") > 50          # 784 weights in signed colours
    assert "picked" in cell.get_attribute("class") and "picked" in actives[5].get_attribute("class")
    assert "picked" not in formula.get_attribute("class")

    step = page.find_element(By.ID, "backprop-step")
    assert step.is_enabled() and page.find_element(By.ID, "backprop-steps").text == "0"
    step.click()
    wait_for_panel(page, lambda d: d.find_element(By.ID, "backprop-steps").text == "1")
    shown = shown_percentages(probability.text)
    assert "1 step taken" in section_text(page)
    assert probability.text.startswith("p(1): ") and len(shown) == 2 and shown[1] > shown[0], probability.text
    # the steps act on a copy: the panel says so, and the answer card above is the served network's, unchanged
    assert "on a copy of the network" in probability.text and "its answer above, are unchanged" in probability.text
    assert page.find_element(By.ID, "prediction").text == "7"
    deltas = [e.text for e in page.find_elements(By.CSS_SELECTOR, "#backprop-output .bp-delta")]
    assert all(re.fullmatch(r"0|[+−](?:[0-9.]{1,5}|[1-9](?:\.[0-9])?e−[0-9]+)", t) for t in deltas), deltas   # short
    assert float(probability.get_attribute("data-before")) == before < float(probability.get_attribute("data-now"))
    assert page.find_element(By.ID, "backprop-unit").get_attribute("data-shown-unit") == "5"  # the unit stays, new numbers
    assert page.find_element(By.ID, "backprop-formula").text != line
    page.save_screenshot(str(tmp_path / "backprop.png"))
    section = page.find_element(By.ID, "backprop")
    page.execute_script("arguments[0].scrollIntoView()", page.find_element(By.TAG_NAME, "header"))
    readme = Path(__file__).resolve().parent.parent / ".readme" / "backprop.png"
    if os.environ.get("BPTRAIN_SCREENSHOTS"):   # remake the docs' picture: the whole page, panel included
        page.set_window_size(1120, 1500)
        wait_for_panel(page)
        page.save_screenshot(str(tmp_path / "full.png"))
        height = page.execute_script("return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)")
        image = Image.open(tmp_path / "full.png").convert("RGB")
        image.crop((0, 0, image.width, min(image.height, height))).quantize(colors=128).save(readme, optimize=True)
        page.set_window_size(1120, 800)
    assert section.is_displayed()

    page.find_element(By.ID, "backprop-reset").click()
    wait_for_panel(page, lambda d: d.find_element(By.ID, "backprop-steps").text == "0")
    assert float(probability.get_attribute("data-now")) == before
    assert page.find_element(By.ID, "error").text == "" and page.find_element(By.ID, "backprop-error").text == ""

    page.find_element(By.ID, "clear").click()                          # a cleared pad: nothing to explain
    wait_for_panel(page, lambda d: d.find_element(By.ID, "backprop-output").text == "")
    assert probability.text.startswith("Draw a digit")
