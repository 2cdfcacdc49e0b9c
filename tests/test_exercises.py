"""The backprop workbook and its checker: every mistake of the catalogue named where it first shows, a solved
workbook passing, a fresh one not done yet, the learner's frames only, the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bptrain.app.commands import cli
from bptrain.app.exercises import checker, mistakes
from bptrain.app.exercises.cases import CORE_LINES, arguments, case, cases_for, core_line, reference, rel_error
from bptrain.app.exercises.workbook import EXERCISES, REQUIRED, WorkbookError, render, start

SOLVED = (Path(__file__).parent / "workbook_solved.py").read_text()

#: Each mistake made in the solved workbook by replacing one piece of it: (what, with what, the exercise
#: where it first shows).
MISTAKES = {
    "no-batch-average": ("return (A_L - Y) / len(Y)", "return A_L - Y", "output_delta"),
    "bias-mean": ("Delta.sum(axis=0)", "Delta.mean(axis=0)", "layer_gradients"),
    "wrong-sign": ("return (A_L - Y) / len(Y)", "return (Y - A_L) / len(Y)", "output_delta"),
    "sigma-prime-on-output": ("return (A_L - Y) / len(Y)", "return (A_L - Y) * A_L * (1 - A_L) / len(Y)",
                              "output_delta"),
    "missing-sigma-prime": ("return (Delta @ W.T) * sigmoid_prime(A_below)", "return Delta @ W.T", "delta_below"),
    "sigma-prime-of-activation": ("    return A * (1 - A)", "    return sigmoid(A) * (1 - sigmoid(A))",
                                  "sigmoid_prime"),
    "z-for-a": ("layer_gradients(As[l], Delta)", "layer_gradients(Zs[l - 1] if l else As[0], Delta)", "backward"),
    "transposed-gradient": ("return A_prev.T @ Delta,", "return Delta.T @ A_prev,", "layer_gradients"),
    "missing-transpose": ("(Delta @ W.T) * sigmoid_prime", "(Delta @ W) * sigmoid_prime", "delta_below"),
    "bias-axis": ("Delta.sum(axis=0)", "Delta.sum(axis=1)", "layer_gradients"),
    "unstable-softmax": ("np.exp(Z - Z.max(axis=1, keepdims=True))", "np.exp(Z)", "softmax"),
    "log-of-softmax": ("    top = Z_L.max(axis=1, keepdims=True)\n"
                       "    log_sum = np.log(np.exp(Z_L - top).sum(axis=1)) + top[:, 0]\n"
                       "    return float(np.mean(log_sum - np.sum(Y * Z_L, axis=1)))",
                       "    return float(-np.mean(np.log(np.sum(softmax(Z_L) * Y, axis=1))))", "cross_entropy"),
    "in-place": ("    return [W - lr * dW for W, dW in zip(Ws, dWs)], [b - lr * db for b, db in zip(bs, dbs)]",
                 "    for W, dW in zip(Ws, dWs):\n        W -= lr * dW\n    for b, db in zip(bs, dbs):\n"
                 "        b -= lr * db\n    return Ws, bs", "sgd_step"),
    "dtype-promotion": ("    e = np.exp(-np.abs(Z))", "    Z = np.asarray(Z, dtype=float)\n    e = np.exp(-np.abs(Z))",
                        "sigmoid"),
    "ascent": ("[W - lr * dW for W, dW in zip(Ws, dWs)], [b - lr * db",
               "[W + lr * dW for W, dW in zip(Ws, dWs)], [b + lr * db", "sgd_step"),
    "sigmoid-overflow": ("    e = np.exp(-np.abs(Z))\n    return np.where(Z >= 0, 1 / (1 + e), e / (1 + e))",
                         "    return 1 / (1 + np.exp(-Z))", "sigmoid"),
}


def workbook(tmp_path: Path, text: str, name: str = "backprop.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def with_mistake(mistake_id: str) -> str:
    old, new, _ = MISTAKES[mistake_id]
    assert SOLVED.count(old) == 1, mistake_id
    return SOLVED.replace(old, new)


# ------------------------------------------------------------------ the catalogue
def test_every_mistake_of_the_catalogue_is_made_by_a_test():
    assert set(MISTAKES) == {mistake.id for mistake in mistakes.CATALOGUE}
    required = {"no-batch-average", "bias-mean", "wrong-sign", "sigma-prime-on-output", "missing-sigma-prime",
                "sigma-prime-of-activation", "z-for-a", "transposed-gradient", "missing-transpose", "bias-axis",
                "unstable-softmax", "log-of-softmax", "in-place", "dtype-promotion", "ascent"}
    assert required <= set(MISTAKES)


@pytest.mark.parametrize("mistake_id", sorted(MISTAKES))
def test_a_workbook_with_one_mistake_gets_its_id_on_the_first_failing_exercise(tmp_path, mistake_id):
    results = checker.check_workbook(workbook(tmp_path, with_mistake(mistake_id)))
    first = checker.first_failure(results)
    assert first is not None and first.status == "failed"
    assert (first.exercise, first.mistake) == (MISTAKES[mistake_id][2], mistake_id), first.message
    assert mistakes.BY_ID[mistake_id].formula in first.message  # the line to look at
    before = [r.status for r in results[:[e.name for e in EXERCISES].index(first.exercise)]]
    assert before == ["passed"] * len(before)


def test_the_variants_without_a_mistake_are_the_core():
    for exercise in mistakes.VARIANTS:
        for each in cases_for(exercise):
            args = arguments(exercise, each)
            mine = checker.flatten(exercise, mistakes.compute(exercise, args), each)
            assert checker.distance(mine, checker.flatten(exercise, reference(exercise, each), each)) < 1e-6, exercise


def test_every_value_variant_changes_some_exercise():
    for form in mistakes.VALUE_FORMS:
        changed = []
        for exercise in mistakes.VARIANTS:
            each = cases_for(exercise)[-1] if exercise in ("softmax", "cross_entropy") else cases_for(exercise)[1]
            args = arguments(exercise, each)
            right = checker.flatten(exercise, reference(exercise, each), each)
            try:
                wrong = checker.flatten(exercise, mistakes.compute(exercise, args, {form}), each)
            except mistakes.Raised:
                continue
            changed.append(checker.distance(wrong, right) > 1e-3)
        assert any(changed), form


def test_two_mistakes_at_once_are_both_named(tmp_path):
    text = SOLVED.replace("return (A_L - Y) / len(Y)", "return (Y - A_L) * A_L * (1 - A_L) / len(Y)")
    first = checker.first_failure(checker.check_workbook(workbook(tmp_path, text)))
    assert first.exercise == "output_delta"
    assert {first.mistake} <= {"wrong-sign", "sigma-prime-on-output"}
    assert "wrong-sign" in first.message and "sigma-prime-on-output" in first.message


def test_an_unknown_mistake_is_named_as_none(tmp_path):
    text = SOLVED.replace("return (A_L - Y) / len(Y)", "return (A_L - Y) / len(Y) + 0.01")
    first = checker.first_failure(checker.check_workbook(workbook(tmp_path, text)))
    assert (first.exercise, first.status, first.mistake) == ("output_delta", "failed", None)
    assert "matches none" in first.message


# ------------------------------------------------------------------ passed, not done, errors
def test_a_solved_workbook_passes_in_float32_and_float64(tmp_path):
    results = checker.check_workbook(workbook(tmp_path, SOLVED))
    assert [r.status for r in results] == ["passed"] * len(EXERCISES), [r.message for r in results]
    dtypes = {np.dtype(each.dtype).name for e in REQUIRED for each in cases_for(e.name)}
    assert dtypes == {"float32", "float64"}
    assert "bptrain/core/network.py:" in results[0].message


def test_the_backward_pass_is_checked_against_a_numerical_gradient_too():
    each = case((7, 5, 4, 3), 6, np.float64)
    numeric_w, numeric_b = each.numerical_gradients
    for mine, numeric in zip(each.grads.weights + each.grads.biases, numeric_w + numeric_b):
        assert rel_error(mine, numeric) < 1e-6


def test_a_fresh_workbook_is_not_done_yet(tmp_path):
    start(tmp_path / "wb")
    results = checker.check_workbook(tmp_path / "wb" / "backprop.py")
    assert results[0].exercise == "sigmoid" and results[0].status == "not-done"
    assert all(r.status == "not-done" for r in results)


def test_a_later_exercise_waiting_for_an_earlier_one_says_so(tmp_path):
    text = SOLVED.replace("def sigmoid(Z):\n", "def sigmoid(Z):\n    raise NotImplementedError\n")
    results = {r.exercise: r for r in checker.check_workbook(workbook(tmp_path, text))}
    assert results["sigmoid"].status == "not-done"
    assert results["forward"].status == "not-done" and "calls sigmoid" in results["forward"].message


def test_an_exception_shows_the_learners_frames_only(tmp_path):
    text = SOLVED.replace("    return A * (1 - A)", "    return helper(A)\n\n\ndef helper(A):\n    return A.nope")
    path = workbook(tmp_path, text)
    first = checker.first_failure(checker.check_workbook(path))
    assert first.exercise == "sigmoid_prime" and first.status == "failed"
    files = [line for line in first.message.splitlines() if line.strip().startswith("File ")]
    assert files and all(str(path.resolve()) in line for line in files)
    assert "in helper" in first.message and "A.nope" in first.message
    assert "AttributeError" in first.message
    assert "checker.py" not in first.message and "bptrain" not in first.message.replace(str(path.resolve()), "")


def test_a_workbook_that_does_not_load_says_where(tmp_path):
    results = checker.check_workbook(workbook(tmp_path, SOLVED + "\ndef broken(:\n"))
    assert all(r.status == "failed" for r in results) and "SyntaxError" in results[0].message
    results = checker.check_workbook(workbook(tmp_path, SOLVED + "\n1 / 0\n", "b.py"))
    assert "ZeroDivisionError" in results[0].message and "b.py" in results[0].message


def test_what_the_checker_refuses_to_read(tmp_path):
    with pytest.raises(WorkbookError):
        checker.load_workbook(tmp_path / "missing.py")
    fifo = tmp_path / "fifo.py"
    os.mkfifo(fifo)
    with pytest.raises(WorkbookError, match="not a regular file"):
        checker.load_workbook(fifo)
    big = workbook(tmp_path, "#" * (checker.MAX_WORKBOOK_BYTES + 1), "big.py")
    with pytest.raises(WorkbookError, match="bytes"):
        checker.load_workbook(big)


def test_a_list_changed_in_place_is_caught(tmp_path):
    text = SOLVED.replace("    return [W - lr * dW for W, dW in zip(Ws, dWs)], [b - lr * db for b, db in zip(bs, dbs)]",
                          "    for i in range(len(Ws)):\n        Ws[i] = Ws[i] - lr * dWs[i]\n"
                          "        bs[i] = bs[i] - lr * dbs[i]\n    return Ws, bs")
    first = checker.first_failure(checker.check_workbook(workbook(tmp_path, text)))
    assert (first.exercise, first.mistake) == ("sgd_step", "in-place")


def test_wrong_return_types_are_said_plainly(tmp_path):
    text = SOLVED.replace("    return A_prev.T @ Delta, Delta.sum(axis=0)", "    return A_prev.T @ Delta")
    first = checker.first_failure(checker.check_workbook(workbook(tmp_path, text)))
    assert first.exercise == "layer_gradients" and "it should return (dW, db)" in first.message


def test_every_exercise_points_to_a_line_of_the_core():
    for exercise in CORE_LINES:
        assert core_line(exercise) is not None, exercise


def test_the_workbook_has_every_exercise_in_order_and_no_solution():
    text = render("DIR")
    positions = [text.index(f"def {e.signature}:") for e in EXERCISES]
    assert positions == sorted(positions)
    assert text.count("raise NotImplementedError") == len(EXERCISES)
    assert "return" not in text.replace("Returns", "")
    compile(render('we"ird\\\nname'), "x", "exec")  # a folder name that could break the docstring


def test_start_never_replaces_a_file(tmp_path):
    (tmp_path / "backprop.py").write_text("mine")
    with pytest.raises(WorkbookError, match="already exists"):
        start(tmp_path)
    assert (tmp_path / "backprop.py").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["backprop.py"]  # no temporary file left


# ------------------------------------------------------------------ the command line
def test_the_command_line_start_check_hint_json(runner, tmp_path):
    folder = tmp_path / "wb"
    result = runner.invoke(cli, ["exercises", "start", str(folder)])
    assert result.exit_code == 0 and (folder / "backprop.py").is_file()
    again = runner.invoke(cli, ["exercises", "start", str(folder)])
    assert again.exit_code == 1 and "already exists" in again.output
    fresh = runner.invoke(cli, ["exercises", "check", str(folder)])
    assert fresh.exit_code == 1 and "1. sigmoid             not done yet" in fresh.output
    hints = [runner.invoke(cli, ["exercises", "check", str(folder), "--hint", "sigmoid"]).output for _ in range(4)]
    assert hints[0].startswith("hint 2 of 3") and hints[1].startswith("hint 3 of 3") and hints[3] == hints[2]
    unknown = runner.invoke(cli, ["exercises", "check", str(folder), "--hint", "nope"])
    assert unknown.exit_code == 1 and "sigmoid" in unknown.output
    (folder / "backprop.py").write_text(with_mistake("bias-axis"))
    report = runner.invoke(cli, ["exercises", "check", str(folder), "--json"])
    assert report.exit_code == 1
    entries = json.loads(report.output)
    assert [e["exercise"] for e in entries] == [e.name for e in EXERCISES]
    assert set(entries[0]) == {"exercise", "status", "mistake", "message", "optional"}
    failed = [e for e in entries if e["status"] == "failed"]
    assert failed[0]["exercise"] == "layer_gradients" and failed[0]["mistake"] == "bias-axis"
    assert [e["optional"] for e in entries][-2:] == [True, True]
    (folder / "backprop.py").write_text(SOLVED)
    passed = runner.invoke(cli, ["exercises", "check", str(folder / "backprop.py")])
    assert passed.exit_code == 0 and "10 of 10" in passed.output and "(the core: bptrain/core/" in passed.output


def test_the_optional_exercises_do_not_decide_the_exit_status(runner, tmp_path):
    text = SOLVED[:SOLVED.index("def rel_error")]
    (tmp_path / "backprop.py").write_text(text)
    result = runner.invoke(cli, ["exercises", "check", str(tmp_path)])
    assert result.exit_code == 0
    assert "rel_error           not done yet  [optional]" in result.output


# ------------------------------------------------------------------ a hostile learner
def test_an_exit_in_the_learners_code_is_reported_not_obeyed(tmp_path):
    text = SOLVED.replace("    return A * (1 - A)", "    raise SystemExit(3)")
    first = checker.first_failure(checker.check_workbook(workbook(tmp_path, text)))
    assert (first.exercise, first.status) == ("sigmoid_prime", "failed") and "SystemExit" in first.message
    results = checker.check_workbook(workbook(tmp_path, "import sys\nsys.exit(4)\n", "exits.py"))
    assert results[0].status == "failed" and "SystemExit" in results[0].message


def test_an_endless_loop_is_given_up_on(tmp_path, monkeypatch):
    monkeypatch.setattr(checker, "TIME_LIMIT", 0.2)
    text = SOLVED.replace("    return A * (1 - A)", "    while True:\n        pass")
    first = checker.first_failure(checker.check_workbook(workbook(tmp_path, text)))
    assert first.exercise == "sigmoid_prime" and "still running after 0.2 s" in first.message


def test_a_tampered_hints_file_starts_the_hints_again(runner, tmp_path):
    (tmp_path / ".backprop-hints.json").write_text('{"softmax": 10**18, "sigmoid": "x"')
    result = runner.invoke(cli, ["exercises", "check", str(tmp_path), "--hint", "softmax"])
    assert result.exit_code == 0 and result.output.startswith("hint 2 of 3 for softmax")
    (tmp_path / ".backprop-hints.json").write_text('{"softmax": 1000000000000}')
    result = runner.invoke(cli, ["exercises", "check", str(tmp_path), "--hint", "softmax"])
    assert result.output.startswith("hint 2 of 3")


def test_a_missing_workbook_is_one_line(runner, tmp_path):
    result = runner.invoke(cli, ["exercises", "check", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "cannot read the workbook" in result.output


def test_what_the_learners_code_prints_stays_out_of_the_json(runner, tmp_path):
    (tmp_path / "backprop.py").write_text(SOLVED.replace("    return A * (1 - A)", "    print('debug', A.shape)\n"
                                                                                    "    return A * (1 - A)"))
    result = runner.invoke(cli, ["exercises", "check", str(tmp_path), "--json"])
    assert result.exit_code == 0
    assert [entry["status"] for entry in json.loads(result.stdout)][:10] == ["passed"] * 10
    assert "debug" in result.stderr


def test_a_workbook_that_makes_numpy_raise_on_every_flag_is_still_checked(tmp_path):
    before = np.geterr()
    results = checker.check_workbook(workbook(tmp_path, "import numpy\nnumpy.seterr(all='raise')\n" + SOLVED))
    assert [r.status for r in results] == ["passed"] * len(EXERCISES)
    assert np.geterr() == before
