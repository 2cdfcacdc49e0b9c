"""Training from the page in a real browser: headless Chromium presses Train on a subset of the real MNIST.

It watches the loss chart gain points and the weight tiles being drawn, draws a 1 on the pad while the
network trains and reads the answer, sets the learning rate by hand, stops the run and moves the replay
slider back to epoch 0 (random weights), where the same drawing gets another answer. Needs what
tests/test_browser.py needs (and fails, not skips, under CI=true when it is missing).
"""

from __future__ import annotations


import pytest

from bptrain.app.serve import http as server
from bptrain.app.serve.session import LiveTraining
from bptrain.data.loader import Dataset, Split, load_dataset
from conftest import serving
from digits import STROKES
from test_browser import browser as browser  # noqa: F401  (a fixture: headless Chromium, as the drawing test's)
from test_browser import canvas_grey_levels, draw, wait_for_answer

TRAIN_IMAGES, VALIDATION_IMAGES = 10_000, 2_000


@pytest.fixture(scope="module")
def live_page(real_mnist_path, tmp_path_factory):
    """`bptrain serve`'s training server on a subset of the real MNIST, on a free port, in a thread."""
    data = load_dataset(real_mnist_path)
    subset = Dataset(Split(data.train.x[:TRAIN_IMAGES], data.train.y[:TRAIN_IMAGES]),
                     Split(data.validation.x[:VALIDATION_IMAGES], data.validation.y[:VALIDATION_IMAGES]),
                     data.test, data.source)
    live = LiveTraining(dataset=subset, out_dir=tmp_path_factory.mktemp("out"))
    with serving(live) as httpd:
        yield server.server_url(httpd), live


def until(driver, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def attribute(driver, element_id, name):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).get_attribute(name)


def picture(driver, element_id) -> str:
    return driver.execute_script("return document.getElementById(arguments[0]).toDataURL()", element_id)


def test_watch_it_learn_draw_during_training_and_replay_from_epoch_0(browser, live_page, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, live = live_page
    page = browser
    page.get(url)
    until(page, lambda d: d.find_element(By.ID, "opt-epochs").get_attribute("value") == "20")
    assert page.find_element(By.ID, "model-info").text == "There is no network yet: press Train to make one."
    assert [e.get_attribute("type") for e in page.find_elements(By.ID, "replay")] == ["range"]

    # a bad setting: the server's one-line message, beside its field; nothing starts
    lr = page.find_element(By.ID, "opt-lr")
    lr.send_keys("0")
    page.find_element(By.ID, "train-start").click()
    until(page, lambda d: d.find_element(By.ID, "error-lr").text != "")
    assert page.find_element(By.ID, "error-lr").text == "lr must be a finite number above 0, got 0"
    assert live.run is None
    lr.clear()
    epochs = page.find_element(By.ID, "opt-epochs")
    epochs.clear()
    epochs.send_keys("40")

    # every status line the page shows from now on (none may say "batch 0 of 0" while an epoch starts)
    page.execute_script("""
        window.statuses = [];
        new MutationObserver(() => window.statuses.push(document.getElementById('train-status').textContent))
          .observe(document.getElementById('train-status'), {childList: true, characterData: true, subtree: true});""")
    # Train: the loss chart gains points, the first layer's tiles are drawn again and again
    page.find_element(By.ID, "train-start").click()
    until(page, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-run") == "running")
    assert page.find_element(By.ID, "error-lr").text == ""
    until(page, lambda d: int(attribute(d, "loss-chart", "data-points") or 0) >= 5)
    points = int(attribute(page, "loss-chart", "data-points"))
    until(page, lambda d: int(attribute(d, "loss-chart", "data-points")) > points)
    until(page, lambda d: attribute(d, "weights", "data-drawn") == "true" and int(attribute(d, "weights", "data-draws")) >= 3)
    assert canvas_grey_levels(page, "weights") > 100  # red and blue shades, not a blank canvas
    assert page.find_element(By.ID, "train-status").text.startswith("Training: epoch ")
    statuses = page.execute_script("return window.statuses")
    assert statuses and not any("batch 0 of 0" in text for text in statuses), statuses[:3]

    # draw a 1 while it trains: the network as it is now reads it
    pad = page.find_element(By.ID, "pad")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", pad)
    draw(page, pad, STROKES[1])
    assert wait_for_answer(page) in "0123456789"
    assert attribute(page, "answer", "data-network") == "live"
    assert page.find_element(By.ID, "error").text == ""
    # the Backprop panel explains it too: the page opened with no network, so it learns how many steps the
    # server takes (GET /api/model's max_steps) once there is one, and its step button comes on
    until(page, lambda d: d.find_element(By.ID, "backprop-step").is_enabled()
          and d.find_element(By.ID, "backprop").get_attribute("data-requests") == "idle")

    # the learning rate, set by hand while it runs
    knob = page.find_element(By.ID, "knob-lr")
    knob.send_keys("0.05")
    page.find_element(By.ID, "knob-apply").click()
    until(page, lambda d: "learning rate 0.05 (set by hand)" in d.find_element(By.ID, "train-status").text)

    ended = int(attribute(page, "accuracy-chart", "data-points") or 0)  # the epoch of the change ends, and one more
    until(page, lambda d: int(attribute(d, "accuracy-chart", "data-points") or 0) >= max(2, ended + 1), timeout=120)
    page.find_element(By.ID, "train-stop").click()
    until(page, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-run") == "stopped")
    assert page.find_element(By.ID, "train-start").text == "Train again"
    headline = page.find_element(By.ID, "accuracy-now")
    final = headline.text
    assert float(final.split("%")[0]) > 80 and final.endswith(f"at epoch {len(live.state()['epochs'])}"), final
    records = live.state()["epochs"]
    assert any(c.get("lr") == 0.05 for r in records for c in (r["controls"] or []))
    wait_for_answer(page)
    at_end = page.find_element(By.ID, "prediction").text, page.find_element(By.ID, "confidence").text
    tiles_at_end = picture(page, "weights")
    page.execute_script("window.scrollTo(0, 0)")
    page.save_screenshot(str(tmp_path / "trained.png"))

    # replay: back to epoch 0, the random weights the run started from; the whole page follows
    slider = page.find_element(By.ID, "replay")
    slider.send_keys(Keys.HOME)
    until(page, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-view") == "0")
    until(page, lambda d: attribute(d, "weights", "data-epoch") == "0")
    assert slider.get_attribute("value") == "0"
    assert page.find_element(By.ID, "replay-label").text == "epoch 0: random weights, before any training"
    # the headline follows the replay: the random network's accuracy (from its confusion matrix), not the final one
    until(page, lambda d: attribute(d, "accuracy-now", "data-epoch") == "0" and d.find_element(By.ID, "accuracy-now").text)
    assert headline.text.endswith("at epoch 0") and float(headline.text.split("%")[0]) < 50, headline.text
    until(page, lambda d: attribute(d, "answer", "data-network") == "0"
          and d.find_element(By.TAG_NAME, "body").get_attribute("data-requests") == "idle")
    at_start = page.find_element(By.ID, "prediction").text, page.find_element(By.ID, "confidence").text
    assert at_start != at_end  # random weights read the same drawing differently (and far less sure)
    assert float(at_start[1].split("%")[0]) < 50
    assert picture(page, "weights") != tiles_at_end
    page.save_screenshot(str(tmp_path / "epoch0.png"))

    page.find_element(By.ID, "replay-play").click()  # Play: from epoch 0 through the kept epochs, to the end
    until(page, lambda d: d.find_element(By.ID, "replay-play").text == "■ Stop")
    until(page, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-view") == "live", timeout=30)
    assert page.find_element(By.ID, "replay-play").text == "▶ Play"

    slider.send_keys(Keys.HOME)
    until(page, lambda d: attribute(d, "weights", "data-epoch") == "0")
    slider.send_keys(Keys.END)  # and forward again to the end of the run
    until(page, lambda d: attribute(d, "weights", "data-epoch") == "live")
    until(page, lambda d: attribute(d, "answer", "data-network") == "live")

    # continue the stopped run: the box says it goes on exactly, and the page says at which learning rate
    page.execute_script("window.scrollTo(0, 0)")
    until(page, lambda d: not d.find_element(By.ID, "continue-row").get_attribute("hidden"))
    note = page.find_element(By.ID, "continue-note").text
    assert note.startswith("Continues the stopped run exactly at epoch"), note
    box = page.find_element(By.ID, "continue")
    if not box.is_selected():
        box.click()
    page.find_element(By.ID, "train-start").click()
    until(page, lambda d: d.find_element(By.ID, "train-continued").text != "")
    continued = page.find_element(By.ID, "train-continued").text
    assert "at learning rate 0.05: the stopped run, exactly" in continued, continued  # its rate set by hand goes on
    assert live.run.continued["exact"] and live.run.manual_lr == 0.05
    page.find_element(By.ID, "train-stop").click()
    until(page, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-run") == "stopped")
