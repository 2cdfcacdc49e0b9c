"""The lesson (#lesson) in a real browser: headless Chromium walks every step, and what it shows is explain's.

A small network trained here on synthetic 28 x 28 "digits" is served with its data set. The lesson is opened
by URL on a validation digit (/#lesson/4/validation/N) and from the Backprop panel on a digit drawn with
the mouse; at every step the numbers on the page must be `bptrain explain --json`'s for the same model file
and digit, as written (4 significant digits, as the terminal prints them); the gradient check's measured and
predicted slopes agree; the questions hide the result until answered or skipped; the keys and the URL move
between the steps. Without Chromium the tests skip (CI fails instead: tests/test_browser.py).
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from bptrain.app.serve import http as server
from bptrain.data.loader import load_dataset
from bptrain.data.model_io import load_model, save_model
from conftest import invoke, serving, write_py2_pickle
from digits import STROKES
from test_browser import browser as browser  # noqa: F401  (a fixture: headless Chromium)
from test_browser import draw, wait_for_answer
from live_client import smooth_digits

SIZES = (784, 16, 12, 10)
LR = 0.1
DIGIT = 17                    # the validation digit the URL names


@pytest.fixture(scope="module")
def lesson_server(tmp_path_factory):
    """(page URL, model file, data file): a 784-16-12-10 network trained for 3 epochs on synthetic digits,
    served with them, as `bptrain serve MODEL --data DATA` serves it."""
    from bptrain import MLP, TrainSettings, train
    from bptrain.fast import blas

    folder = tmp_path_factory.mktemp("lesson")
    data_path = write_py2_pickle(folder / "digits.pkl.gz", smooth_digits(n_train=600, n_validation=60, n_test=30))
    data = load_dataset(data_path)
    model = MLP(SIZES, loss="ce", seed=0)
    with blas.threads_at_most(1):
        train(model, data, TrainSettings(epochs=3, batch_size=10, lr=LR, augment=1), progress=False)
    model_path = save_model(model, folder / "model.npy", {"settings": {"lr": LR}})
    served, meta = load_model(model_path)
    with serving(None, server.Predictor(served, meta, data)) as httpd:
        yield server.server_url(httpd), model_path, data_path


def g(value, digits: int = 4) -> str:
    """A number as `bptrain explain` prints it."""
    return "nan" if value is None else f"{value + 0.0:.{digits}g}"


def pct(value) -> str:
    return f"{100 * value:.2f}%"


def row(matrix: dict) -> np.ndarray:
    return np.array(matrix["values"], np.float64)[0]


def explain_json(runner, *args) -> dict:
    result = invoke(runner, "explain", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def lesson_answer(url: str, document: dict) -> dict:
    """The server's lesson document (for the formulas, questions and step kinds the page shows)."""
    sent = urllib.request.Request(url + "api/lesson", json.dumps(document).encode(),
                                  {"Content-Type": "application/json"})
    with urllib.request.urlopen(sent) as answer:
        return json.loads(answer.read())


def until(driver, condition, timeout=30):
    """Wait for ``condition``; an element the lesson re-drew between finding and reading it is read again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: condition(d))


def on_step(driver, n: int) -> None:
    lesson = driver.find_element("id", "lesson")
    until(driver, lambda d: lesson.get_attribute("data-step") == str(n) and lesson.get_attribute("data-requests") == "idle")


def text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def texts(driver, selector: str, what: str = "textContent") -> list[str]:
    return driver.execute_script(f"return [...document.querySelectorAll(arguments[0])].map(e => e.{what})", selector)


def table_rows(driver, element_id: str) -> list[list[str]]:
    return driver.execute_script("return [...document.getElementById(arguments[0]).querySelectorAll('tr')].slice(1)"
                                 ".map(r => [...r.children].map(c => c.textContent))", element_id)


def hover(driver, j: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    cell = driver.find_elements("css selector", "#lesson-units .ls-cell")[j]
    ActionChains(driver).move_to_element(cell).perform()
    until(driver, lambda d: d.find_element("id", "lesson-unit").get_attribute("data-j") == str(j))


def key(driver, name: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(driver).send_keys(getattr(Keys, name)).perform()


def check_step(driver, step: dict, cli: dict, n: int, total: int) -> None:
    """Step n as the page shows it against `explain --json`'s numbers (``cli``) and the lesson's text (``step``)."""
    assert text(driver, "lesson-count") == f"Step {n} of {total}"
    assert text(driver, "lesson-title") == step["title"]
    assert text(driver, "lesson-formula") == step["formula"]
    assert step["core"] in text(driver, "lesson-core")
    layers, kind = cli["layers"], step["kind"]
    if kind == "input":
        x = row(cli["A_0"])
        assert text(driver, "lesson-input-shape") == "(1 × 784)"
        assert text(driver, "lesson-ink") == str(int(np.count_nonzero(x)))
    elif kind == "forward":
        l = step["layer"]
        z, a = row(layers[l - 1]["Z"]), row(layers[l - 1]["A"])
        assert texts(driver, "#lesson-units .ls-cell", "title") == [f"unit {j}: z = {g(z[j])}, a = {g(a[j])}"
                                                                      for j in range(len(z))]
        j = int(np.argmin(z))
        hover(driver, j)
        assert text(driver, "lesson-unit-z") == g(z[j]) and text(driver, "lesson-unit-a") == g(a[j])
        assert text(driver, "lesson-unit-b") == g(layers[l - 1]["b"]["values"][j])
        previous = row(cli["A_0"]) if l == 1 else row(layers[l - 2]["A"])
        products = previous * np.array(layers[l - 1]["W"]["values"])[:, j]
        largest = np.argsort(-np.abs(products), kind="stable")[:5]
        assert [r[0] for r in table_rows(driver, "lesson-terms")] == [str(i) for i in largest if products[i] != 0]
        assert [r[3] for r in table_rows(driver, "lesson-terms")] == [g(products[i]) for i in largest if products[i] != 0]
        if l == 1:   # the terms' pixels outlined on the digit
            marked = driver.execute_script("return document.querySelector('#lesson-result .ls-overlay').dataset.highlighted")
            assert marked == ",".join(str(i) for i in largest if products[i] != 0)
        else:        # the previous layer's units they come from
            outlined = texts(driver, "#lesson-result .ls-grid[data-layer='%d'] .source-pos, "
                                     "#lesson-result .ls-grid[data-layer='%d'] .source-neg" % (l - 1, l - 1),
                             "dataset.j")
            assert sorted(map(int, outlined)) == sorted(int(i) for i in largest if products[i] != 0)
    elif kind == "cost":
        probabilities = row(cli["output"]["probabilities"])
        assert text(driver, "lesson-cost") == g(cli["loss"])
        shown_p = text(driver, "lesson-p-target").split()[0]             # −log of the p shown is the C shown
        assert shown_p == step["p_target_text"] and g(-np.log(float(shown_p))) == g(cli["loss"])
        assert texts(driver, "#lesson-bars .pct") == [pct(p) for p in probabilities]
        assert text(driver, "lesson-prediction") == str(cli["output"]["predictions"][0])
        assert driver.find_element("id", "lesson-target").get_attribute("value") == str(cli["labels"][0])
    elif kind == "backward":
        l = step["layer"]
        layer = layers[l - 1]
        delta = row(layer["delta"])
        assert texts(driver, "#lesson-units .ls-cell", "title") == [f"unit {j}: δ = {g(d)}" for j, d in enumerate(delta)]
        j = int(np.argmax(np.abs(delta)))
        hover(driver, j)
        assert text(driver, "lesson-unit-delta") == g(delta[j])
        if layer["f_prime"] is not None:
            assert text(driver, "lesson-unit-fprime") == g(row(layer["f_prime"])[j])
        if layer["backprop_sum"] is not None:   # the same sum, added up in another order: equal to the digits shown
            assert float(text(driver, "lesson-unit-sum")) == pytest.approx(row(layer["backprop_sum"])[j], rel=1e-3)
        assert text(driver, "lesson-grad-norm") == g(layer["grad_W"]["norm"])
        assert table_rows(driver, "lesson-grad-top") == [[str(t["index"][0]), str(t["index"][1]), g(t["value"])]
                                                         for t in layer["grad_W"]["top"]]
    elif kind == "check":
        l, i, j = (int(driver.find_element("id", f"nudge-{name}").get_attribute("value")) for name in ("layer", "i", "j"))
        assert l == 1                                   # by default a weight of layer 1: the whole chain is checked
        gradient = np.array(layers[l - 1]["grad_W"]["values"])
        assert abs(gradient[i, j]) == np.abs(gradient).max()
        assert "cs231n's rel_error" in text(driver, "nudge-relative") and "they agree" in text(driver, "nudge-relative")
        assert text(driver, "nudge-predicted") == g(gradient[i, j], 7)
        measured, predicted = float(text(driver, "nudge-measured")), float(text(driver, "nudge-predicted"))
        assert abs(measured - predicted) <= 1e-3 * max(abs(measured), abs(predicted))
        assert text(driver, "nudge-epsilon-shown") == "0.0001"
        assert float(text(driver, "nudge-plus")) != float(text(driver, "nudge-minus"))
    elif kind == "input-gradient":
        gradient = row(layers[0]["delta"]) @ np.array(layers[0]["W"]["values"]).T       # ∂C/∂A_0 = Δ_1 W_1ᵀ
        shown = table_rows(driver, "lesson-gradient-top")
        largest = np.argsort(-np.abs(gradient), kind="stable")[:5]
        assert [r[0] for r in shown] == [str(i) for i in largest]
        assert [float(r[2]) for r in shown] == pytest.approx([gradient[i] for i in largest], rel=1e-3)
        assert f"p({cli['labels'][0]})" in text(driver, "lesson-gradient-legend")
    elif kind == "update":
        one = cli["step"]
        assert table_rows(driver, "lesson-update") == [
            ["C", g(one["loss_before"]), g(one["loss_after"])],
            [f"p({cli['labels'][0]})", pct(one["p_label_before"][0]), pct(one["p_label_after"][0])],
            ["the network answers", str(cli["output"]["predictions"][0]), str(one["predictions_after"][0])]]
    elif kind == "speed":
        shown = table_rows(driver, "lesson-speed")
        assert [r[2] for r in shown] == [g(layer["delta"]["norm"]) for layer in layers]           # ‖Δ_l‖
        assert [r[4] for r in shown] == [g(layer["grad_W"]["norm"]) for layer in layers]          # ‖∂C/∂W_l‖
        assert [r[3] for r in shown] == [r[4] for r in shown]        # = ‖A_l−1‖ · ‖Δ_l‖ for one digit (rank 1)
        assert text(driver, "lesson-speed-link") == "docs/learning-speed.md"
    elif kind == "batch":
        batch = step["batch"]
        rows = table_rows(driver, "lesson-batch-rows")
        assert len(rows) == batch["batch_size"] == 4 and rows[0][1] == "the lesson's digit"
        delta = table_rows(driver, "lesson-batch-delta")
        assert len(delta) == 5 and delta[-1][0].startswith("Σ_rows")   # B rows of Δ_L, and their sum
        assert [row_[1:] for row_ in delta[:4]] == [[g(v, 3) for v in r] for r in batch["delta_out"]]
        assert delta[-1][1:] == [g(v, 3) for v in batch["grad_b_out"]]
        assert delta[-1][1:] == [g(v, 3) for v in np.sum(batch["delta_out"], axis=0)]
        sums = texts(driver, "#lesson-batch-sums .ls-batch-sum")
        assert len(sums) == len(layers) and all(s.count(" × ") >= 4 for s in sums)   # Σ_rows of B products
        assert "∂C/∂W_2 = A_1ᵀ Δ_2: (16 × 4) (4 × 12) = (16 × 12)" in sums[1]
    else:
        raise AssertionError(f"a step of unknown kind {kind}")


def answer_question(driver, step: dict, how: str) -> None:
    """Answer the step's question (rightly, wrongly) or skip it; the result stays hidden until then."""
    result = driver.find_element("id", "lesson-result")
    assert not result.is_displayed() and driver.find_element("id", "lesson").get_attribute("data-question") == "open"
    question = step["question"]
    if how == "skip":
        driver.find_element("id", "lesson-skip").click()
    else:
        wrong = next(k for k in range(len(question["choices"])) if k != question["answer"])
        choice = question["answer"] if how == "right" else wrong
        driver.find_element("css selector", f"#lesson-question button[data-choice='{choice}']").click()
    verdict = text(driver, "lesson-verdict")
    right = question["choices"][question["answer"]]
    start = {"right": f"Right: the answer is {right}. ", "skip": f"Skipped: the answer is {right}. ",
             "wrong": f"Not quite: you chose {question['choices'][choice if how != 'skip' else 0]}; the answer is "
                      f"{right}. "}[how]
    assert verdict == start + question["why"], verdict
    marked = texts(driver, "#lesson-question button.picked-wrong")
    assert marked == ([question["choices"][choice]] if how == "wrong" else [])    # a wrong pick is marked
    assert result.is_displayed()


def walk(driver, steps: list[dict], cli: dict, first: int, hash_tail: str) -> None:
    """From step ``first`` to the last, by keys and buttons: every step checked, its question answered or skipped."""
    ways = iter(["right", "skip", "wrong", "skip", "right", "wrong", "skip"])
    for n in range(first, len(steps) + 1):
        on_step(driver, n)
        assert driver.execute_script("return location.hash") == f"#lesson/{n}{hash_tail}"
        step = steps[n - 1]
        if step["question"] and driver.find_element("id", "lesson").get_attribute("data-question") == "open":
            answer_question(driver, step, next(ways))   # (one answered before stays answered)
        check_step(driver, step, cli, n, len(steps))
        if n < len(steps):
            if n % 2:
                key(driver, "ARROW_RIGHT")
            else:
                driver.find_element("id", "lesson-next").click()
    assert not driver.find_element("id", "lesson-next").is_enabled()


def test_a_validation_digit_by_url_every_step_as_explain_prints_it(browser, lesson_server, runner):  # noqa: F811
    url, model_path, data_path = lesson_server
    cli = explain_json(runner, model_path, "--data", data_path, "--split", "validation", "--index", DIGIT)
    steps = lesson_answer(url, {"split": "validation", "index": DIGIT})["steps"]
    assert [s["kind"] for s in steps] == ["input"] + ["forward"] * 3 + ["cost"] + ["backward"] * 3 + [
        "speed", "batch", "check", "input-gradient", "update"]
    page = browser
    page.get("about:blank")
    page.get(f"{url}#lesson/4/validation/{DIGIT}")      # a teacher's link: step 4 of validation digit DIGIT
    on_step(page, 4)
    assert page.find_element("id", "lesson").is_displayed()
    assert text(page, "lesson-digit-info").startswith(f"Digit {DIGIT} of the validation split (a {cli['labels'][0]}); "
                                                      f"target {cli['labels'][0]} (its true label)")
    assert steps[3]["question"]                         # the output layer asks before it shows its numbers
    answer_question(page, steps[3], "wrong")
    check_step(page, steps[3], cli, 4, len(steps))
    for n in (3, 2, 1):                                 # back to the start: ArrowLeft, then the button
        if n == 2:
            page.find_element("id", "lesson-prev").click()
        else:
            key(page, "ARROW_LEFT")
        on_step(page, n)
    assert not page.find_element("id", "lesson-prev").is_enabled()
    walk(page, steps, cli, 1, f"/validation/{DIGIT}")

    # the check on another weight, by hand: the page's numbers are explain's gradient of that weight
    page.find_element("css selector", "#lesson-toc li:nth-child(11) button").click()
    on_step(page, 11)
    for name, value in (("layer", "2"), ("i", "3"), ("j", "4"), ("epsilon", "0.001")):
        field = page.find_element("id", f"nudge-{name}")
        field.clear()
        field.send_keys(value)
    key(page, "ARROW_RIGHT")                            # typing in a field: the arrows stay in the field
    assert page.find_element("id", "lesson").get_attribute("data-step") == "11"
    page.find_element("id", "nudge-run").click()
    until(page, lambda d: text(d, "nudge-epsilon-shown") == "0.001" and
          d.find_element("id", "lesson").get_attribute("data-requests") == "idle")
    assert text(page, "nudge-w") == g(np.array(cli["layers"][1]["W"]["values"])[3, 4])
    predicted = np.array(cli["layers"][1]["grad_W"]["values"])[3, 4]
    assert text(page, "nudge-predicted") == g(predicted, 7)
    assert float(text(page, "nudge-measured")) == pytest.approx(predicted, rel=1e-3)
    page.find_element("id", "nudge-suggested").click()
    suggested = [str(v) for v in steps[10]["check"]["suggested"]]
    until(page, lambda d: [d.find_element("id", f"nudge-{name}").get_attribute("value")
                           for name in ("layer", "i", "j")] == suggested)
    assert text(page, "nudge-epsilon-shown") == "0.001"                    # ε stays the learner's

    # another target, chosen at the cost step: the lesson asks again, and shows explain --label's numbers
    page.find_element("css selector", "#lesson-toc li:nth-child(5) button").click()
    on_step(page, 5)
    other = (cli["labels"][0] + 1) % 10
    from selenium.webdriver.support.ui import Select

    Select(page.find_element("id", "lesson-target")).select_by_value(str(other))
    until(page, lambda d: d.find_element("id", "lesson-target").get_attribute("value") == str(other)
          and d.find_element("id", "lesson").get_attribute("data-requests") == "idle")
    relabelled = explain_json(runner, model_path, "--data", data_path, "--split", "validation", "--index", DIGIT,
                              "--label", other)
    assert text(page, "lesson-cost") == g(relabelled["loss"]) != g(cli["loss"])
    assert f"target {other} (chosen by you)" in text(page, "lesson-digit-info")
    key(page, "ESCAPE")
    until(page, lambda d: not d.find_element("id", "lesson").is_displayed())
    assert page.execute_script("return location.hash") == ""


def test_a_drawn_digit_from_the_backprop_panel_every_step_as_explain_prints_it(browser, lesson_server, runner,  # noqa: F811
                                                                              tmp_path):
    from PIL import Image

    url, model_path, _ = lesson_server
    page = browser
    page.get("about:blank")
    page.get(url)
    until(page, lambda d: d.find_elements("css selector", "#layers canvas.strip"))
    assert not page.find_element("id", "lesson").is_displayed()
    draw(page, page.find_element("id", "pad"), STROKES[7])
    wait_for_answer(page)
    opener = page.find_element("id", "lesson-open")
    until(page, lambda d: opener.is_enabled() and d.find_element("id", "backprop").get_attribute("data-requests") == "idle")
    body = json.loads(page.execute_script("return padPixels()"))           # what the page sends for this drawing
    picture = tmp_path / "drawn.png"
    Image.fromarray(np.array(body["pixels"], np.uint8).reshape(body["height"], body["width"]), mode="L").save(picture)
    cli = explain_json(runner, model_path, picture)                         # the same pixels, as a file
    lesson = lesson_answer(url, body)
    assert lesson["explain"]["A_0"]["values"] == cli["A_0"]["values"] and lesson["label_rule"] == "prediction"

    opener.click()
    on_step(page, 1)
    assert text(page, "lesson-digit-info").startswith(f"Your drawing; target {cli['labels'][0]} (the network's answer)")
    walk(page, lesson["steps"], cli, 1, "")

    # the keys: back one step, and the hash follows; Escape leaves; the URL brings it back at a step
    key(page, "ARROW_LEFT")
    on_step(page, len(lesson["steps"]) - 1)
    assert page.execute_script("return location.hash") == f"#lesson/{len(lesson['steps']) - 1}"
    key(page, "ESCAPE")
    until(page, lambda d: not d.find_element("id", "lesson").is_displayed())
    assert page.switch_to.active_element.get_attribute("id") == "lesson-open"
    page.execute_script("location.hash = '#lesson/6'")
    on_step(page, 6)
    answer_question(page, lesson["steps"][5], "skip")                      # opened afresh: its question again
    check_step(page, lesson["steps"][5], cli, 6, len(lesson["steps"]))
    assert page.find_element("id", "lesson-error").text == ""


def test_a_lesson_link_without_a_digit_starts_from_one_the_network_reads_wrong(browser, lesson_server):  # noqa: F811
    url, _, _ = lesson_server
    picked = lesson_answer(url, {})["input"]
    assert picked["kind"] == "dataset" and picked["split"] == "test"
    page = browser
    page.get("about:blank")
    page.get(url + "#lesson/3")
    on_step(page, 3)
    assert page.execute_script("return location.hash") == f"#lesson/3/test/{picked['index']}"
    assert text(page, "lesson-digit-info").startswith(f"Digit {picked['index']} of the test split")
    # a digit the data set does not have: the error, and no header of the lesson shown before it
    page.execute_script("location.hash = '#lesson/2/validation/100000'")
    until(page, lambda d: d.find_element("id", "lesson-error").text != "")
    assert text(page, "lesson-error") == '"index" must be an integer from 0 to 59 (the validation split\'s digits)'
    assert text(page, "lesson-digit-info") == "" and text(page, "lesson-title") == "The lesson"
    assert not page.find_element("id", "lesson-next").is_enabled()


def test_a_data_set_digit_opened_from_the_panel_keeps_its_true_label(browser, lesson_server):  # noqa: F811
    url, _, _ = lesson_server
    page = browser
    page.get("about:blank")
    page.get(url)
    button = page.find_element("id", "random-digit")
    until(page, lambda d: button.is_enabled())
    button.click()
    until(page, lambda d: d.find_element("id", "pad").get_attribute("data-digit"))
    split, index = page.find_element("id", "pad").get_attribute("data-digit").split(":")
    assert text(page, "seen-hint").startswith(f"Digit {index} of the {split} split as 28 × 28 pixels")
    opener = page.find_element("id", "lesson-open")
    until(page, lambda d: opener.is_enabled() and d.find_element("id", "backprop").get_attribute("data-requests") == "idle")
    opener.click()
    on_step(page, 1)
    info = text(page, "lesson-digit-info")
    assert "(its true label)" in info and "chosen by you" not in info, info


def test_numbers_are_written_as_python_writes_them(browser, lesson_server):  # noqa: F811
    url, _, _ = lesson_server
    values = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-4, 9.99951e-5, 1.23456e-5, -0.00012345, 0.0001235, 1234.5, 9999.5, 12345.0,
              -98765.4, 3.14159265, 1e300, -2.5e-308, 0.1 + 0.2, 2 / 3, 100.0, 0.001, 0.125, 0.0625, -2.5, 1.5, 1e-5,
              5e-324, 1.7976931348623157e308, 0.00015, 123456789.0, 0.015625, 0.046875, 12.5e6]
    page = browser
    page.get("about:blank")
    page.get(url)
    shown = page.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/lesson.js').then((m) => done(arguments[0].map((v) => [m.g(v), m.g(v, 7), m.g(v, 10)])));""", values)
    assert shown == [[g(v), g(v, 7), g(v, 10)] for v in values]
