"""A model of 26 named classes on the page, in a real browser: headless Chromium shows the 26 names in the
probability bars, the answer to a drawing, the confusion matrix and the lesson's output step. Needs what
tests/test_browser.py needs (and fails, not skips, under CI=true when it is missing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bptrain.app.serve import http as server
from bptrain.app.serve.session import LiveTraining
from bptrain.data.loader import load_dataset
from bptrain.data.model_io import load_model
from conftest import invoke, serving
from digits import STROKES
from test_browser import browser as browser  # noqa: F401  (a fixture: headless Chromium)
from test_browser import draw, wait_for_answer

NAMES = [f"letter-{chr(ord('a') + k)}" for k in range(26)]


def until(driver, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def texts(driver, selector: str) -> list[str]:
    return [e.get_attribute("textContent") for e in driver.find_elements("css selector", selector)]


@pytest.fixture(scope="module")
def letters_page(tmp_path_factory):
    """A 784-16-26 network trained by `bptrain train` on a CSV of 26 classes (labels 1..26) named by a
    classes.txt, served with its data as `bptrain serve MODEL --data DATA` serves them."""
    from click.testing import CliRunner

    folder = tmp_path_factory.mktemp("letters")
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 255, size=(26, 784))
    y = np.arange(26 * 12) % 26
    x = np.clip(centres[y] + rng.normal(0, 20, size=(len(y), 784)), 0, 255).round().astype(int)
    data = folder / "letters.csv"
    data.write_text("".join(f"{label + 1}," + ",".join(map(str, row)) + "\n" for row, label in zip(x, y)))
    (folder / "classes.txt").write_text("\n".join(NAMES) + "\n")
    model_path = folder / "m.npy"
    result = invoke(CliRunner(), "train", "--data", data, "--out", model_path, "--sizes", "784,16,26",
                    "--epochs", "3", "--batch-size", "8", "--quiet")
    assert result.exit_code == 0, result.output
    model, meta = load_model(model_path)
    assert meta["class_names"] == NAMES
    live = LiveTraining(dataset=load_dataset(data), model=model, meta=meta, out_dir=folder)
    with serving(live) as httpd:
        yield server.server_url(httpd), model_path, data


def test_26_named_classes_in_the_bars_the_answer_the_confusion_matrix_and_the_lesson(browser, letters_page):  # noqa: F811
    url, _, _ = letters_page
    page = browser
    page.get(url)
    until(page, lambda d: len(texts(d, "#bars .digit")) == 26)
    assert texts(page, "#bars .digit") == NAMES
    draw(page, page.find_element("id", "pad"), STROKES[7])
    assert wait_for_answer(page) in NAMES
    best = page.find_element("css selector", "#bars .digit.best").get_attribute("textContent")
    assert best == page.find_element("id", "prediction").text.strip()
    # the served model's confusion matrix on the validation split: 26 classes, named
    confusion = page.find_element("id", "confusion")
    until(page, lambda d: confusion.get_attribute("data-classes") == "26")
    assert json.loads(confusion.get_attribute("data-names")) == NAMES
    assert "25 letter-z" in confusion.get_attribute("title")
    # the lesson's cost step (4: input, two layers forward, cost): its bars and choice of a target are named
    page.get(f"{url}#lesson/4/validation/3")
    until(page, lambda d: d.find_element("id", "lesson").get_attribute("data-step") == "4"
          and len(texts(d, "#lesson-bars .digit")) == 26)
    until(page, lambda d: texts(d, "#lesson-bars .digit") == NAMES)
    assert texts(page, "#lesson-target option") == NAMES
    info = page.find_element("id", "lesson-digit-info").text
    assert "of the validation split (a letter-" in info and "; target letter-" in info
    assert page.find_element("id", "lesson-prediction").text.strip() in NAMES
