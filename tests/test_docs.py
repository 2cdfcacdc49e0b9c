"""The README and the pages it links to stay true to the code.

- every relative link in README.md, docs/*.md and benchmarks/README.md points at a file that exists,
  and a heading anchor (#the-math) at a heading of that page;
- every line anchor (#L174) is inside its file, and each line the README's math links to in
  bptrain/core/ still computes what the README says it does (edit core/ and the links move: this test
  names the line to fix);
- docs/options.md describes every option of the options table;
- the `test` extra brings every third-party module the tests import, so that the README's test command
  runs them all.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

from bptrain.app.options import TRAIN_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")  # [text](target), text may hold [#L55]

#: What each line of bptrain/core/ that the docs link to computes. When core/ changes, the line
#: numbers move: update the README's links and this table together.
CORE_LINES = [
    ("bptrain/core/network.py", 55, "np.exp(z - z.max(axis=1, keepdims=True))"),  # softmax
    ("bptrain/core/network.py", 61, "HIDDEN_UNITS = {"),
    ("bptrain/core/network.py", 62, "a * (1 - a)"),  # σ' = A ⊙ (1 − A)
    ("bptrain/core/network.py", 85, "def initial_parameters("),
    ("bptrain/core/network.py", 169, "def forward("),
    ("bptrain/core/network.py", 172, "a = np.asarray(x, self.dtype)"),  # A_0 = X
    ("bptrain/core/network.py", 175, "z = a @ W + b"),
    ("bptrain/core/network.py", 177, "a = f(z)"),
    ("bptrain/core/network.py", 179, "a = softmax(z)"),
    ("bptrain/core/network.py", 181, "a = sigmoid(z)"),
    ("bptrain/core/network.py", 193, "0.5 * np.sum((a_out - y_onehot) ** 2)"),
    ("bptrain/core/network.py", 195, "log_sum = np.log(np.exp(z_out - top).sum(axis=1))"),
    ("bptrain/core/network.py", 205, "delta = (a_out - y_onehot) / batch"),
    ("bptrain/core/network.py", 207, "delta = (a_out - y_onehot) * a_out * (1 - a_out) / batch"),
    ("bptrain/core/network.py", 211, "grad_w[l] = activations[l].T @ delta"),
    ("bptrain/core/network.py", 212, "grad_b[l] = delta.sum(axis=0)"),
    ("bptrain/core/network.py", 214, "delta = (delta @ self.weights[l].T) * f_prime(activations[l])"),
    ("bptrain/core/optimizers.py", 41, "def step(self, grad_w, grad_b, lr"),
    ("bptrain/core/optimizers.py", 50, "theta -= step "),
    ("bptrain/core/optimizers.py", 53, "v += step"),
    ("bptrain/core/optimizers.py", 55, "theta -= step + self.momentum * v"),
    ("bptrain/core/optimizers.py", 57, "theta -= v"),
    ("bptrain/core/optimizers.py", 108, "m += (1 - beta1) * g"),
    ("bptrain/core/optimizers.py", 110, "v += (1 - beta2) * g * g"),
    ("bptrain/core/optimizers.py", 111, "m_hat = m / (1 - beta1 ** t)"),
    ("bptrain/core/optimizers.py", 112, "v_hat = v / (1 - beta2 ** t)"),
    ("bptrain/core/optimizers.py", 113, "theta -= lr * (m_hat / (np.sqrt(v_hat) + self.eps) + decay * theta)"),
    ("bptrain/core/schedules.py", 21, "base_lr * gamma ** (epoch // step_size)"),
    ("bptrain/core/schedules.py", 23, "math.cos(math.pi * epoch / epochs)"),
    ("bptrain/core/training.py", 189, "model.forward(xb)"),
    ("bptrain/core/training.py", 190, "model.backward(activations, yb)"),
    ("bptrain/core/training.py", 191, "self.optimizer.step(grads.weights, grads.biases, steps.lr)"),
    ("bptrain/core/training.py", 268, "for epoch in range("),
    ("bptrain/core/training.py", 277, "engine.run_epoch("),
    ("bptrain/engines.py", 46, "def make_engine("),
]

#: Modules the tests import whose distribution has another name.
DISTRIBUTION = {"PIL": "pillow", "sklearn": "scikit-learn"}
#: Dependencies of bptrain itself (installed with it, not by the extra).
RUNTIME = {"numpy", "click", "tqdm"}


def links(page: Path):
    """(line number, target) of every relative link on ``page``, outside code blocks."""
    in_code = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in LINK.findall(line):
            if not re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                yield number, target


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def all_links():
    return [(page, number, target) for page in PAGES for number, target in links(page)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_page_exists_and_links_somewhere(page):
    assert page.is_file()
    assert list(links(page)), f"{page.relative_to(ROOT)} has no relative links"


def test_every_relative_link_resolves():
    broken = []
    for page, number, target in all_links():
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not destination.exists():
            broken.append(f"{where}: no such file")
        elif anchor.startswith("L") and anchor[1:].isdigit():
            n_lines = len(destination.read_text(encoding="utf-8").splitlines())
            if not 1 <= int(anchor[1:]) <= n_lines:
                broken.append(f"{where}: the file has {n_lines} lines")
            elif not destination.read_text(encoding="utf-8").splitlines()[int(anchor[1:]) - 1].strip():
                broken.append(f"{where}: a blank line")
        elif anchor and destination.suffix == ".md" and anchor not in headings(destination):
            broken.append(f"{where}: no heading with that anchor")
    assert not broken, "\n".join(broken)


def test_every_line_the_docs_link_to_in_core_computes_what_they_say():
    linked = set()
    for page, number, target in all_links():
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve()
        if anchor.startswith("L") and (destination.is_relative_to(ROOT / "bptrain" / "core")
                                       or destination == ROOT / "bptrain" / "engines.py"):
            linked.add((destination.relative_to(ROOT).as_posix(), int(anchor[1:])))
    unknown = sorted(linked - {(path, number) for path, number, _ in CORE_LINES})
    assert not unknown, f"links into bptrain/core/ this test does not know (add them to CORE_LINES): {unknown}"
    moved = []
    for path, number, code in sorted(CORE_LINES):
        lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
        if number > len(lines) or code not in lines[number - 1]:
            found = [i for i, line in enumerate(lines, 1) if code in line]
            moved.append(f"{path}#L{number} should hold `{code}`; it is now at {found or 'no line'}: "
                         "update the links in README.md (and CORE_LINES)")
    assert not moved, "\n".join(moved)


def test_a_link_that_names_a_line_goes_to_that_line():
    """``[#L96](file#L108)`` or ``[core/x.py#L96](core/x.py#L108)`` would send a reader elsewhere than it says."""
    wrong = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for label, target in re.findall(r"\[([^\[\]]*#L\d+)\]\(([^)\s]+)\)", line):
                if label.rpartition("#")[2] != target.rpartition("#")[2]:
                    wrong.append(f"{page.relative_to(ROOT)}:{number}: [{label}]({target})")
    assert not wrong, "\n".join(wrong)


def test_the_core_lines_table_names_each_line_and_code_once():
    assert len(set(CORE_LINES)) == len(CORE_LINES)


def test_the_math_links_every_line_of_the_step():
    """The README's math section links the forward pass, the loss, the backward pass and every update."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    math = readme[readme.index("## The math"):readme.index("## Reading the code")]
    for path, number, code in CORE_LINES:
        if path.endswith(("network.py", "optimizers.py", "schedules.py")) and not code.startswith("def "):
            assert f"{path}#L{number})" in math, f"the math section does not link {path}#L{number}"


def test_docs_options_describes_every_train_option():
    page = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    missing = [option.cli_name for option in TRAIN_OPTIONS if option.cli_name not in page]
    assert not missing, f"docs/options.md does not describe {missing}"
    assert "--config" in page


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, anywhere in it, and asks pytest.importorskip for."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip"
              and node.args and isinstance(node.args[0], ast.Constant)):
            modules.add(node.args[0].value.split(".")[0])
    return modules


def test_the_test_extra_brings_every_module_the_tests_import():
    local = {path.stem for path in (ROOT / "tests").glob("*.py")} | {"bptrain"} \
        | {path.stem for path in (ROOT / "benchmarks").glob("*.py")}
    imported = set().union(*(imported_modules(path) for path in (ROOT / "tests").glob("*.py")))
    third_party = {name for name in imported - local - RUNTIME if name not in sys.stdlib_module_names}
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"]["test"]
    provided = {re.split(r"[<>=!~ \[;]", requirement)[0].lower() for requirement in extra}
    missing = sorted(name for name in third_party if DISTRIBUTION.get(name, name).lower() not in provided)
    assert not missing, f"the tests import {missing}, which pyproject.toml's test extra does not bring"


def test_the_readme_is_read_top_to_bottom_by_a_newcomer():
    """What a newcomer reads in one sitting, with the math early; reference belongs in docs/."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 420, f"README.md has {len(lines)} lines: move reference material into docs/"
    assert "## The math" in lines[:120]
