"""The pad and its answer in view, in a real browser at a laptop's 1280 x 800 window (a 1280 x 660 viewport).

The page promises that, while it trains, "the network reads your digit again as it learns": so the pad and
"The network says" must stay on the screen while the charts fill, wherever the page is scrolled, and a digit
picked under the confusion matrix must land on a pad the learner can see. Needs what tests/test_browser.py
needs, and the real MNIST (a subset, to keep it quick).
"""

from __future__ import annotations

import pytest

from bptrain.app.serve import http as server
from bptrain.app.serve.session import LiveTraining
from bptrain.data.loader import Dataset, Split, load_dataset
from conftest import serving
from digits import STROKES
from test_browser import browser as browser  # noqa: F401  (a fixture: headless Chromium)
from test_browser import draw, wait_for_answer
from test_browser_live import attribute, until

WIDTH, HEIGHT = 1280, 660          # the viewport of a 1280 x 800 window, below the browser's own bars


@pytest.fixture(scope="module")
def training_page(real_mnist_path, tmp_path_factory):
    data = load_dataset(real_mnist_path)
    subset = Dataset(Split(data.train.x[:4000], data.train.y[:4000]),
                     Split(data.validation.x[:1000], data.validation.y[:1000]), data.test, data.source)
    live = LiveTraining(dataset=subset, out_dir=tmp_path_factory.mktemp("out"))
    with serving(live) as httpd:
        yield server.server_url(httpd)


@pytest.fixture
def laptop(browser):  # noqa: F811
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield browser
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def in_view(driver, selector: str) -> bool:
    """Whether the whole of the element lies inside the viewport."""
    return driver.execute_script(
        "const box = document.querySelector(arguments[0]).getBoundingClientRect();"
        "return box.height > 0 && box.top >= 0 && box.left >= 0 && box.bottom <= innerHeight && box.right <= innerWidth",
        selector)


def test_the_pad_and_the_answer_stay_in_view_while_a_run_trains_and_a_picked_example_lands_in_view(
        laptop, training_page, tmp_path):
    from selenium.webdriver.common.by import By

    page = laptop
    page.get(training_page)
    until(page, lambda d: d.find_element(By.ID, "opt-epochs").get_attribute("value") != "")
    assert page.execute_script("return [innerWidth, innerHeight]") == [WIDTH, HEIGHT]
    epochs = page.find_element(By.ID, "opt-epochs")
    epochs.clear()
    epochs.send_keys("200")                      # long enough to look at it while it trains; stopped below
    page.find_element(By.ID, "train-start").click()
    until(page, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-run") == "running")
    until(page, lambda d: int(attribute(d, "loss-chart", "data-points") or 0) >= 2)
    # the charts come first now, and yet the pad and "The network says" are on the screen, at the top of the
    # page and scrolled down to the confusion matrix and the Backprop panel alike
    for where in ("0", "document.getElementById('confusion-card').offsetTop", "document.body.scrollHeight"):
        page.execute_script(f"window.scrollTo(0, {where})")
        assert in_view(page, "#pad") and in_view(page, "#answer h2") and in_view(page, "#prediction"), where
        assert in_view(page, "#train-start") or where != "0"
    overlap = page.execute_script(        # nothing of the page hides under the column: the cards keep to its left
        "const column = document.getElementById('reading').getBoundingClientRect().left;"
        "return [...document.querySelectorAll('main > .card')].filter(c => c.offsetParent)"
        ".filter(c => c.getBoundingClientRect().right > column).map(c => c.id)")
    assert overlap == []
    page.execute_script("window.scrollTo(0, 0)")
    page.save_screenshot(str(tmp_path / "training.png"))
    # a digit drawn while it trains is read there, in view
    pad = page.find_element(By.ID, "pad")
    draw(page, pad, STROKES[1])
    assert wait_for_answer(page) in "0123456789"
    assert in_view(page, "#prediction") and page.find_element(By.ID, "answer").text.startswith("The network says")
    page.find_element(By.ID, "train-stop").click()
    until(page, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-run") == "stopped")

    # a digit under the confusion matrix: clicked with the matrix in view, it lands on a pad in view
    until(page, lambda d: attribute(d, "confusion", "data-filled") == "true")
    page.execute_script("document.getElementById('confusion').scrollIntoView({block: 'center'})")
    page.execute_script("document.getElementById('reading').scrollTop = 10000")   # the column scrolled to its foot
    page.execute_script("""
        fetch('/api/digits/cell?true=1&read=1&limit=4').then(r => r.json()).then(answer => window.cell = answer);""")
    until(page, lambda d: d.execute_script("return window.cell !== undefined"))
    from test_browser_story import click_cell

    click_cell(page, 1, 1)                      # the 1s read as 1: a cell that is never empty
    until(page, lambda d: attribute(d, "examples", "data-state") == "shown")
    example = page.find_elements(By.CSS_SELECTOR, "#examples button.example")[0]
    assert example.is_displayed()
    example.click()
    until(page, lambda d: attribute(d, "pad", "data-digit") == f"validation:{example.get_attribute('data-index')}")
    wait_for_answer(page)
    assert in_view(page, "#pad") and in_view(page, "#answer h2")
    page.save_screenshot(str(tmp_path / "example.png"))
