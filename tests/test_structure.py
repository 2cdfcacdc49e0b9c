"""The package's structure: imports run one way, no import cycle, one room per job, one seam to the fast engine."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bptrain"
#: No module of the package is longer than this: past it, a module is doing more than one job.
MAX_MODULE_LINES = 600


LAYERS = {"environment": 0, "core": 0, "data": 1, "fast": 2, "engines": 3, "app": 4, "__init__": 5, "__main__": 5,
          "sklearn": 5,
          "__version__": 0}  # a constant of bptrain/__init__.py that needs nothing


def layer_of(module: str) -> int:
    """The layer of ``bptrain.X...`` by its first part below the package."""
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else LAYERS["__init__"]


def imports_of(path: Path, module: str):
    """(line, imported bptrain module or top-level name) for every import statement in a file."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names = [f"{target}.{alias.name}" for alias in node.names] if node.module is None else [target]
            for name in names:
                yield node.lineno, name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def package_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield path, module


def test_imports_run_one_way():
    wrong = []
    for path, module in package_modules():
        own = layer_of(module) if module != "bptrain" else LAYERS["__init__"]
        for line, target in imports_of(path, module):
            if target.startswith("bptrain.") and layer_of(target) > own:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not wrong, "imports against the direction app -> engines -> fast -> data -> core:\n" + "\n".join(wrong)


def test_the_core_imports_only_numpy_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    wrong = []
    for path, module in package_modules():
        if not module.startswith("bptrain.core"):
            continue
        for line, target in imports_of(path, module):
            top = target.split(".")[0]
            if top == "bptrain" and target.startswith("bptrain.core"):
                continue
            if top not in allowed:
                wrong.append(f"{path.name}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_direction_test_would_catch_a_wrong_import(tmp_path):
    bad = tmp_path / "training.py"
    bad.write_text("from ..fast import blas\nfrom ..app.cli import main\n")
    found = [target for _, target in imports_of(bad, "bptrain.core.training")]
    assert found == ["bptrain.fast", "bptrain.app.cli"]
    assert all(layer_of(t) > LAYERS["core"] for t in found)


def package_graph():
    """{module: {bptrain modules it imports, at any depth of its code}} over the whole package."""
    modules = {module for _, module in package_modules()}
    graph = {}
    for path, module in package_modules():
        targets = set()
        for _, target in imports_of(path, module):
            while target and target not in modules:  # `from .x import name` names a module or something in it
                target = target.rpartition(".")[0]
            if target and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def find_cycles(graph) -> list[list[str]]:
    """Every import cycle, as a list of modules (depth-first search, one cycle per back edge)."""
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycle_counting_the_imports_inside_functions_too():
    cycles = find_cycles(package_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_only_engines_reaches_the_fast_engine():
    wrong = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
             for path, module in package_modules() if not module.startswith(("bptrain.fast", "bptrain.engines"))
             for line, target in imports_of(path, module) if target.startswith("bptrain.fast")]
    assert not wrong, "the fast engine is reached only through bptrain/engines.py:\n" + "\n".join(wrong)


def test_no_module_is_longer_than_one_job():
    long = [f"{path.relative_to(PACKAGE.parent)}: {n} lines" for path, _ in package_modules()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)


def test_every_subpackage_is_packaged():
    """A package missing from pyproject.toml's list installs without its modules (a non-editable install)."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(PACKAGE.parent).parts) for path in PACKAGE.rglob("__init__.py")}
    found |= {"bptrain.app.web"}  # the page's files: data, no __init__.py
    assert found == listed


def test_no_test_file_does_more_than_one_job():
    """Test files are split by what they test: past MAX_MODULE_LINES lines, one is testing several things."""
    long = {path.name: n for path in sorted(Path(__file__).resolve().parent.glob("*.py"))
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"test files over {MAX_MODULE_LINES} lines: {long}"
