"""The workbook as a notebook: a fresh one runs to the end headless (every check says not done yet, the data
parts skip), and a solved copy passes every check, draws its pictures and trains with the learner's code."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from bptrain.app.commands import cli
from bptrain.app.exercises.notebook import EXERCISE_MARK, notebook_text
from bptrain.app.exercises.workbook import EXERCISES, start
from conftest import make_blobs, write_py2_pickle

SOLVED = (Path(__file__).parent / "workbook_solved.py").read_text()


def solved_function(name: str) -> str:
    """The source of function ``name`` of the solved workbook."""
    for node in ast.parse(SOLVED).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(SOLVED, node)
    raise KeyError(name)


def execute(path: Path, folder: Path):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
                   ).execute()
    return notebook


def text_of(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output and "text/plain" in output["data"]:
            parts.append(output["data"]["text/plain"])
    return "".join(parts)


def errors_of(notebook) -> list:
    return [output for cell in notebook.cells for output in cell.get("outputs", []) if output.get("output_type") == "error"]


def check_cells(notebook) -> dict:
    """{exercise: what its check cell printed}."""
    found = {}
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.source.startswith('check("'):
            found[cell.source[len('check("'):-2]] = text_of(cell)
    return found


def test_the_notebook_is_valid_and_has_every_exercise_then_its_check():
    notebook = nbformat.reads(notebook_text(), as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    for exercise in EXERCISES:
        index = next(i for i, s in enumerate(sources) if s.startswith(EXERCISE_MARK + exercise.name + "\n"))
        assert f"def {exercise.signature}:" in sources[index] and "raise NotImplementedError" in sources[index]
        assert sources[index + 1] == f'check("{exercise.name}")'


def test_a_fresh_notebook_runs_to_the_end_without_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("BPTRAIN_DATA", str(tmp_path / "nowhere.pkl.gz"))
    start(tmp_path, notebook_text())
    notebook = execute(tmp_path / "backprop.ipynb", tmp_path)
    assert not errors_of(notebook)
    checks = check_cells(notebook)
    assert list(checks) == [e.name for e in EXERCISES]
    assert checks["sigmoid"].strip() == "sigmoid: not done yet"
    assert all("not done yet" in text for text in checks.values())
    outputs = "".join(text_of(cell) for cell in notebook.cells)
    assert "no MNIST" in outputs and "skipped" in outputs
    assert not any("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def test_a_solved_notebook_passes_draws_and_trains(tmp_path, monkeypatch):
    data = write_py2_pickle(tmp_path / "digits.pkl.gz", make_blobs(2000, 300, 100, n_features=784, n_classes=10))
    monkeypatch.setenv("BPTRAIN_DATA", str(data))
    notebook = nbformat.reads(notebook_text(), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.source.startswith(EXERCISE_MARK):
            name = cell.source.splitlines()[0][len(EXERCISE_MARK):]
            cell.source = f"{EXERCISE_MARK}{name}\n{solved_function(name)}"
    path = tmp_path / "solved.ipynb"
    nbformat.write(notebook, path)
    notebook = execute(path, tmp_path)
    assert not errors_of(notebook), errors_of(notebook)
    checks = check_cells(notebook)
    failing = {name: text for name, text in checks.items() if not text.startswith(f"{name}: passed")}
    assert not failing
    images = [cell for cell in notebook.cells if any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))]
    assert len(images) >= 5  # digits, A_1, the deltas, ∂C/∂W_1's columns, the loss curve
    last = text_of(notebook.cells[-1])
    assert "epoch 3: validation accuracy" in last
    accuracy = float(last.rsplit("epoch 3: validation accuracy ", 1)[1].split("%")[0])
    assert accuracy > 50  # the blobs are easy: the learner's code learns them
    assert "skipped" not in "".join(text_of(cell) for cell in notebook.cells)


def test_the_notebook_cli_writes_both_files_and_never_replaces(runner, tmp_path):
    result = runner.invoke(cli, ["exercises", "start", str(tmp_path / "wb"), "--notebook"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "wb" / "backprop.ipynb").read_text())["nbformat"] == 4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "backprop.ipynb").write_text("mine")
    again = runner.invoke(cli, ["exercises", "start", str(tmp_path / "other"), "--notebook"])
    assert again.exit_code == 1 and not (tmp_path / "other" / "backprop.py").exists()
    assert (tmp_path / "other" / "backprop.ipynb").read_text() == "mine"
