"""``bptrain exercises``: write the backprop workbook, check it, give hints (:mod:`bptrain.app.exercises`)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from ..exercises import checker
from ..exercises.cases import core_line
from ..exercises.notebook import notebook_text
from ..exercises.workbook import NOTEBOOK_NAME, REQUIRED, WORKBOOK_NAME, next_hint, start

STATUS_WORDS = {"passed": "passed", "not-done": "not done yet", "failed": "failed"}


@click.group("exercises")
def exercises_command():
    """Write backprop yourself: a workbook of functions to fill in, a checker that names your mistake."""


@exercises_command.command("start")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--notebook", is_flag=True, help=f"Also write {NOTEBOOK_NAME}: the same exercises as a Jupyter "
                                                 "notebook, with pictures and a last part that trains MNIST.")
def start_command(folder: Path, notebook: bool):
    """Write FOLDER/backprop.py: the functions to write, in order (never replacing a file that is there)."""
    for path in start(folder, notebook_text() if notebook else None):
        click.echo(f"wrote {path}")
    click.echo(f"fill in the functions in order; check them with: bptrain exercises check {folder}")


def workbook_path(target: Path) -> Path:
    """FOLDER/backprop.py, or the .py file given itself."""
    return target if target.suffix == ".py" and not target.is_dir() else target / WORKBOOK_NAME


@exercises_command.command("check")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON: a list of {exercise, status, "
                                                      "mistake, message, optional}.")
@click.option("--hint", metavar="NAME", help="Print the next hint for exercise NAME instead of checking.")
def check_command(folder: Path, as_json: bool, hint: str | None):
    """Check FOLDER/backprop.py (or a .py file): each exercise passed, not done yet, or failed with the mistake
    named. Exit 0 when the ten required exercises pass, 1 otherwise."""
    path = workbook_path(folder)
    if hint is not None:
        number, total, text = next_hint(path.parent, hint)
        click.echo(f"hint {number} of {total} for {hint}: {text}")
        return
    if as_json:  # what the learner's code prints goes to stderr: stdout is the JSON alone
        with contextlib.redirect_stdout(sys.stderr):
            results = checker.check_workbook(path)
    else:
        results = checker.check_workbook(path)
    if as_json:
        click.echo(json.dumps([result.to_json() for result in results], indent=1, ensure_ascii=False))
    else:
        for line in report_lines(results, path):
            click.echo(line)
    click.get_current_context().exit(0 if checker.all_passed(results) else 1)


def report_lines(results, path: Path) -> list[str]:
    """One line per exercise, then the first one not passed, explained."""
    passed = sum(r.status == "passed" for r in results if not r.optional)
    lines = [f"{passed} of {len(REQUIRED)} exercises passed"]
    for number, result in enumerate(results, 1):
        mistake = f" ({result.mistake})" if result.mistake else ""
        optional = "  [optional]" if result.optional else ""
        where = core_line(result.exercise) if result.status == "passed" else None
        compare = f"  (the core: {where})" if where else ""
        lines.append(f"{number:>3}. {result.exercise:<19} {STATUS_WORDS[result.status]}{mistake}{optional}{compare}")
    first = checker.first_failure(results)
    if first is None:
        lines.append(f"All ten pass: train MNIST with them, bptrain train --workbook {path}")
    elif first.status == "not-done":
        lines.append(f"Next: {first.exercise} is {first.message} (a hint: --hint {first.exercise}).")
    else:
        lines.append(f"{first.exercise} failed: {first.message}")
    return lines
