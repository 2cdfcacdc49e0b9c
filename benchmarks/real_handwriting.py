"""Real handwriting, cropped tight and with a margin: how many digits are refused, how many read right.

    python benchmarks/real_handwriting.py model.npy [--count N] [--keep DIR]

The digits are scikit-learn's ``load_digits`` (1,797 scanned handwritten digits by 43 writers, 8x8,
grey levels 0-16, shipped inside the scikit-learn package: nothing is downloaded; install it with
``pip install scikit-learn``, the project itself does not need it). They fill their 8x8 frame edge to
edge, as a digit cropped tightly from a photo or a form does. Each is enlarged to 96x96 with bicubic
resampling and saved as a PNG in four forms:

    tight,  dark ink on light paper      the 96x96 picture as it is: the ink touches the edges
    tight,  light ink on dark paper      the same, inverted
    margin, dark ink on light paper      the same 96x96 pixels pasted in a 144x144 sheet of paper
    margin, light ink on dark paper      the same, inverted

Every file goes through the real ``bptrain.app.images.image_to_input`` (decoding included) and the model.
Prints, per form, how many were refused ("no ink found" or another error) and the accuracy over all of
them (a refused digit counts as wrong). ``--keep DIR`` leaves the PNGs there to look at; by default
they go in a temporary directory that is removed. Needs Pillow, NumPy and scikit-learn; deterministic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bptrain.core.errors import DataError  # noqa: E402
from bptrain.app.images import image_to_input  # noqa: E402
from bptrain.data.model_io import load_model  # noqa: E402

SIDE = 96
MARGIN = 24
FORMS = [("tight", "dark"), ("tight", "light"), ("margin", "dark"), ("margin", "light")]


def write_forms(out: Path, count: int) -> tuple[dict, np.ndarray]:
    """Write the four forms of the first ``count`` digits; return {form: [paths]} and the labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pictures, labels = digits.images[:count], digits.target[:count]
    paths = {form: [] for form in FORMS}
    for crop, ink in FORMS:
        (out / f"{crop}-{ink}").mkdir(parents=True, exist_ok=True)
    for n, picture in enumerate(pictures):
        coverage = np.round(255 * picture / 16).astype(np.uint8)  # 0 = paper, 255 = full ink
        big = Image.fromarray(coverage).resize((SIDE, SIDE), Image.Resampling.BICUBIC)
        for crop, ink in FORMS:
            shown = Image.eval(big, lambda v: 255 - v) if ink == "dark" else big
            if crop == "margin":
                sheet = Image.new("L", (SIDE + 2 * MARGIN,) * 2, 255 if ink == "dark" else 0)
                sheet.paste(shown, (MARGIN, MARGIN))
                shown = sheet
            path = out / f"{crop}-{ink}" / f"u{n:04d}.png"
            shown.save(path)
            paths[(crop, ink)].append(path)
    return paths, labels


def measure(model, paths: list[Path], labels: np.ndarray) -> tuple[int, int]:
    """(refused, right) over the files: refused ones are those the preprocessing cannot read."""
    refused, inputs, kept = 0, [], []
    for path, label in zip(paths, labels):
        try:
            inputs.append(image_to_input(path))
            kept.append(label)
        except DataError:
            refused += 1
    right = int(np.sum(model.predict(np.stack(inputs)) == np.array(kept))) if inputs else 0
    return refused, right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--count", type=int, default=1797, help="how many digits (at most 1797)")
    parser.add_argument("--keep", type=Path, default=None, help="write the PNGs here and leave them")
    args = parser.parse_args()
    model, _ = load_model(args.model)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.keep or Path(scratch)
        paths, labels = write_forms(out, args.count)
        print(f"{len(labels)} digits of scikit-learn's load_digits, {SIDE}x{SIDE} bicubic; margin: {MARGIN} px")
        print(f"{'form':<22} {'refused':>8} {'right':>8}")
        for crop, ink in FORMS:
            refused, right = measure(model, paths[(crop, ink)], labels)
            name = f"{crop}, {ink} ink"
            print(f"{name:<22} {refused:>8} {100 * right / len(labels):>7.1f}%")


if __name__ == "__main__":
    main()
