"""Make docs/exercises.md's picture: the notebook's figures, from a solved copy run headless.

    python benchmarks/screenshot_notebook.py --workbook tests/workbook_solved.py --data mnist.pkl.gz [--out docs/exercises-notebook.png]

Needs the `notebook` extra and Pillow. The notebook of `bptrain exercises start --notebook` gets the solved
functions in its exercise cells, runs in a python3 kernel with $BPTRAIN_DATA set to --data, and every PNG
it draws is stacked, in order, into one small palette PNG.
"""

from __future__ import annotations

import argparse
import ast
import base64
import io
import os
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from PIL import Image

from bptrain.app.exercises.notebook import EXERCISE_MARK, notebook_text


def solved_notebook(workbook: str):
    source = Path(workbook).read_text()
    functions = {node.name: ast.get_source_segment(source, node) for node in ast.parse(source).body
                 if isinstance(node, ast.FunctionDef)}
    notebook = nbformat.reads(notebook_text(), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.source.startswith(EXERCISE_MARK):
            name = cell.source.splitlines()[0][len(EXERCISE_MARK):]
            cell.source = f"{EXERCISE_MARK}{name}\n{functions[name]}"
    return notebook


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workbook", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/exercises-notebook.png"))
    args = parser.parse_args()
    os.environ["BPTRAIN_DATA"] = str(Path(args.data).resolve())
    notebook = solved_notebook(args.workbook)
    NotebookClient(notebook, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": tempfile.mkdtemp()}}).execute()
    images = [Image.open(io.BytesIO(base64.b64decode(output["data"]["image/png"]))).convert("RGB")
              for cell in notebook.cells for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    width = max(image.width for image in images)
    sheet = Image.new("RGB", (width, sum(image.height for image in images)), "white")
    top = 0
    for image in images:
        sheet.paste(image, ((width - image.width) // 2, top))
        top += image.height
    sheet.convert("P", palette=Image.Palette.ADAPTIVE, colors=128).save(args.out, optimize=True)
    print(f"wrote {args.out}: {len(images)} figures, {sheet.width} x {sheet.height}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
