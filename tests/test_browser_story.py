"""A served model's story and its mistakes, in a real browser (headless Chromium, as tests/test_browser.py).

`bptrain serve model.npy` with the data: the charts fill from the model's history, the confusion matrix
is the model's own on the validation split, and in a 1280 x 800 viewport the pad is in sight. A click on
a cell of the matrix lists those validation digits (#examples); one of them goes to the pad, the answer
and the Backprop panel, whose η control (#backprop-lr) changes the step. A server without data says why
the data set's digits are off. Drawing never sends an empty pad (no 400 "no ink found").
BPTRAIN_SCREENSHOTS=1 also remakes docs/serve-story.png and docs/mistake.png.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from bptrain.app.commands.serve import _history_beside
from bptrain.app.serve import http as server
from bptrain.app.serve.session import LiveTraining
from bptrain.data.loader import Dataset, Split, load_dataset
from bptrain.data.model_io import load_model
from conftest import invoke, serving
from digits import STROKES
from test_browser import browser as browser  # noqa: F401  (a fixture: headless Chromium)
from test_browser import canvas_grey_levels, draw, wait_for_answer, wait_for_panel
from test_browser import page_url as page_url  # noqa: F401  (a fixture: a server of a model, without data)

DOCS = Path(__file__).resolve().parent.parent / "docs"
VALIDATION_IMAGES = 3_000
EPOCHS = 3


@pytest.fixture(scope="module")
def served(real_mnist_path, tmp_path_factory):
    """`bptrain serve model.npy` as the command builds it: a model trained by `bptrain train` (with its history
    beside it) and the real MNIST (a subset of the validation split, to keep the test quick)."""
    from click.testing import CliRunner

    folder = tmp_path_factory.mktemp("served")
    out = folder / "model.npy"
    result = invoke(CliRunner(), "train", "--data", real_mnist_path, "--sizes", "784,32,10", "--epochs", EPOCHS,
                    "--out", out, "-q")
    assert result.exit_code == 0, result.output
    model, meta = load_model(out)
    data = load_dataset(real_mnist_path)
    subset = Dataset(data.train, Split(data.validation.x[:VALIDATION_IMAGES], data.validation.y[:VALIDATION_IMAGES]),
                     data.test, data.source)
    history = _history_beside(out)
    live = LiveTraining(dataset=subset, model=model, meta=meta, history=history, out_dir=folder)
    with serving(live, server.Predictor(model, meta)) as httpd:
        yield server.server_url(httpd), history


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url) as answer:
        return json.loads(answer.read())


def until(driver, condition, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def attribute(driver, element_id, name):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).get_attribute(name)


@pytest.fixture
def laptop(browser):  # noqa: F811
    """The browser with a 1280 x 800 viewport, as a laptop's; the window's own size again afterwards."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield browser
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def open_page(driver, url):
    from selenium.webdriver.common.by import By

    driver.get(url)
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#layers canvas.strip")
          and attribute(d, "confusion", "data-filled") == "true" and not attribute(d, "random-digit", "disabled"))


def screenshot(driver, name: str, tmp_path, parts) -> None:
    """Remake docs/NAME (BPTRAIN_SCREENSHOTS=1): the page's bands from the top of each pair of elements
    (CSS selectors) to the bottom of the second, one under the other, as a small palette PNG."""
    if not os.environ.get("BPTRAIN_SCREENSHOTS"):
        return
    from PIL import Image

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False})
    driver.execute_script("window.scrollTo(0, 0)")
    wait_for_panel(driver)
    driver.save_screenshot(str(tmp_path / name))
    whole = Image.open(tmp_path / name).convert("RGB")
    bands = []
    for first, last in parts:
        top, bottom = driver.execute_script(
            "return [document.querySelector(arguments[0]).getBoundingClientRect().top, "
            "document.querySelector(arguments[1]).getBoundingClientRect().bottom]", first, last)
        bands.append(whole.crop((0, max(0, int(top) - 12), whole.width, min(whole.height, int(bottom) + 12))))
    picture = Image.new("RGB", (whole.width, sum(band.height for band in bands)), "white")
    for band, y in zip(bands, [sum(b.height for b in bands[:k]) for k in range(len(bands))]):
        picture.paste(band, (0, y))
    picture.quantize(colors=128).save(DOCS / name, optimize=True)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})


def test_a_served_model_shows_its_history_and_its_confusion_matrix(laptop, served, tmp_path):
    from selenium.webdriver.common.by import By

    url, history = served
    page = laptop
    open_page(page, url)
    epochs = history["epochs"]
    assert len(epochs) == EPOCHS
    # the charts: every epoch of the history (training and validation loss, accuracy, speed per layer)
    assert int(attribute(page, "loss-chart", "data-points")) == EPOCHS
    assert int(attribute(page, "accuracy-chart", "data-points")) == EPOCHS
    assert int(attribute(page, "speed-chart", "data-points")) == 2 * EPOCHS  # two layers
    # the headline: the epoch the model file holds (its best), as the charts mark it
    best = next(r for r in epochs if r["epoch"] == history["best_epoch"])
    headline = page.find_element(By.ID, "accuracy-now")
    assert headline.text == f"{100 * best['val_accuracy']:.2f}% at epoch {best['epoch']}"
    # the confusion matrix: the model's own on the validation digits the server has
    matrix = get_json(url + "api/digits/confusion")["confusion"]
    assert sum(map(sum, matrix)) == VALIDATION_IMAGES
    assert canvas_grey_levels(page, "confusion") > 10
    # a laptop's viewport: the whole pad in sight without scrolling
    top, bottom, height = page.execute_script(
        "const box = document.getElementById('pad').getBoundingClientRect(); "
        "return [box.top, box.bottom, window.innerHeight]")
    assert height == 800 and 0 <= top and bottom <= height, (top, bottom)
    screenshot(page, "serve-story.png", tmp_path, [("header", "#speed-card")])


def click_cell(driver, i: int, j: int) -> None:
    """Click cell (true i, read as j) of the confusion matrix, where charts.js draws it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "confusion")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    width, height = driver.execute_script("return [arguments[0].clientWidth, arguments[0].clientHeight]", canvas)
    n, margin = 10, 18
    cell = min((width - margin) / n, (height - margin) / n)
    x, y = margin + (j + 0.5) * cell, margin + (i + 0.5) * cell
    ActionChains(driver).move_to_element_with_offset(canvas, round(x - width / 2), round(y - height / 2)).click().perform()


def test_a_mistake_opens_on_the_pad_and_in_the_backprop_panel(laptop, served, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = served
    page = laptop
    open_page(page, url)
    matrix = get_json(url + "api/digits/confusion")["confusion"]
    count, true, read = max((matrix[i][j], i, j) for i in range(10) for j in range(10) if i != j)
    assert count >= 2

    click_cell(page, true, read)
    until(page, lambda d: attribute(d, "examples", "data-state") == "shown")
    assert (attribute(page, "examples", "data-true"), attribute(page, "examples", "data-read")) == (str(true), str(read))
    buttons = page.find_elements(By.CSS_SELECTOR, "#examples button.example")
    assert len(buttons) == min(count, 24)
    assert {b.get_attribute("data-label") for b in buttons} == {str(true)}
    sureness = [int(b.text.rstrip("%")) for b in buttons]
    assert sureness == sorted(sureness, reverse=True)  # most confident first
    caption = page.find_element(By.ID, "examples-caption").text
    assert caption.startswith(f"{count} validation digits: {true}s read as {read}"), caption

    buttons[0].click()  # the surest mistake: on the pad, read (wrongly) by the network, explained towards its label
    assert wait_for_answer(page) == str(read)
    index = buttons[0].get_attribute("data-index")
    assert attribute(page, "pad", "data-digit") == f"validation:{index}"
    assert page.find_element(By.ID, "pad-source").text == f"Digit {index} of the validation split: a {true}, says the data set."
    probability = page.find_element(By.ID, "backprop-probability")
    wait_for_panel(page, lambda d: probability.get_attribute("data-label") == str(true))
    assert page.find_element(By.ID, "backprop-label").get_attribute("value") == str(true)
    assert "‖x‖²" in page.find_element(By.ID, "backprop-why").text
    before = float(probability.get_attribute("data-now"))

    # one step at the model's η, then the same step at η = 0.001: the control changes the step
    page.find_element(By.ID, "backprop-step").click()
    wait_for_panel(page, lambda d: d.find_element(By.ID, "backprop-steps").text == "1")
    at_model_lr = float(probability.get_attribute("data-now"))
    assert at_model_lr > before
    control = page.find_element(By.ID, "backprop-lr")
    assert control.get_attribute("type") == "range" and float(control.get_attribute("data-lr")) == 0.1

    def set_lr(power: float):
        page.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
                            control, str(power))
        wait_for_panel(page, lambda d: float(control.get_attribute("data-lr")) == 10 ** power)

    set_lr(-3)
    small = float(probability.get_attribute("data-now"))
    assert before < small < at_model_lr
    assert page.find_element(By.ID, "backprop-eta").text == "= 0.001"
    assert page.find_element(By.ID, "backprop-saturated").text == ""
    set_lr(0)  # η = 1: one step on one digit drives its label's probability to 1
    assert float(probability.get_attribute("data-now")) >= 1 - 1e-4
    assert page.find_element(By.ID, "backprop-saturated").text.startswith("Saturated: the step pushed p(")
    set_lr(-3)
    screenshot(page, "mistake.png", tmp_path, [("#pad-card", "#confusion-card"), ("#backprop", "#backprop")])
    assert page.find_element(By.ID, "error").text == "" and page.find_element(By.ID, "backprop-error").text == ""


def test_a_random_test_digit_and_a_replayed_network_read_the_data(laptop, served):
    from selenium.webdriver.common.by import By

    url, _ = served
    page = laptop
    open_page(page, url)
    page.find_element(By.ID, "random-digit").click()
    wait_for_answer(page)
    assert attribute(page, "pad", "data-digit").startswith("test:")
    assert page.find_element(By.ID, "pad-source").text.startswith("Digit ")
    wait_for_panel(page, lambda d: d.find_element(By.ID, "backprop-probability").text.startswith("p("))
    # drawing over it starts a new drawing
    draw(page, page.find_element(By.ID, "pad"), STROKES[7])
    assert wait_for_answer(page) == "7"
    assert attribute(page, "pad", "data-digit") is None and page.find_element(By.ID, "pad-source").text == ""


def test_drawing_sends_no_empty_pad_and_active_units_keep_a_border(laptop, served):
    from selenium.webdriver.common.by import By

    url, _ = served
    page = laptop
    open_page(page, url)
    page.execute_script("""
        window.answers = [];
        const original = window.fetch;
        window.fetch = async (...args) => {
          const response = await original(...args);
          window.answers.push([String(args[0]), response.status]);
          return response;
        };""")
    pad = page.find_element(By.ID, "pad")
    for digit in (1, 7):
        page.find_element(By.ID, "clear").click()
        draw(page, pad, STROKES[digit])
        assert wait_for_answer(page) == str(digit)
        wait_for_panel(page)
    answers = page.execute_script("return window.answers")
    assert any("/api/predict" in url for url, _ in answers) and any("/api/explain" in url for url, _ in answers)
    assert [a for a in answers if a[1] >= 400] == []
    # each hidden unit's cell has a border, so a white (fully active) one shows on the white card
    borders = page.execute_script("""
        const c = document.getElementById('hidden-1'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] === 201 && d[i + 1] === 206 && d[i + 2] === 216) n++;
        return n;""")
    assert borders >= 32 * 4 * 10


def test_without_data_the_digit_controls_say_why_they_are_off(browser, page_url):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(page_url)
    until(browser, lambda d: d.find_element(By.ID, "digits-off").text != "")
    assert not browser.find_element(By.ID, "random-digit").is_enabled()
    off = browser.find_element(By.ID, "digits-off").text
    assert off.startswith("The data set's digits are off: this server was started without a data set"), off
    assert "Off: " in browser.find_element(By.ID, "random-digit").get_attribute("title")
