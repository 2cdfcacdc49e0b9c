"""How preprocessing copes with uneven light: font digits under a lighting gradient, classified in-process.

    python benchmarks/uneven_light.py model.npy [STRENGTH ...]      # default strengths 0 0.3 0.6

For every font of make_font_digits.py, both polarities and the ten digits (about 80 px tall, placed as
there), the picture is multiplied by a linear light 1 + STRENGTH * (direction . position - 0.5): with
0.3 the darkest corner gets about half the light of the brightest, with 0.6 a fifth. Prints, per
strength, how many images were refused ("no ink found") and the accuracy over all of them (refused
ones count as wrong). Needs Pillow and NumPy; deterministic.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import make_font_digits as fonts  # noqa: E402

from bptrain.core.errors import DataError  # noqa: E402
from bptrain.app.images import preprocess  # noqa: E402
from bptrain.data.model_io import load_model  # noqa: E402


def photos(strength: float, seed: int = 5):
    rng = np.random.default_rng(seed)
    for relative, _ in fonts.FONTS.values():
        path = fonts.FONT_DIR / relative
        if not path.is_file():
            continue
        for polarity in fonts.POLARITIES:
            for digit in range(10):
                coverage = np.asarray(fonts.place(fonts.render_glyph(path, digit, 80), rng), np.float64) / 255
                height, width = coverage.shape
                paper, ink = (0.85, 0.1) if polarity == "dark" else (0.15, 0.85)
                ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
                angle = rng.uniform(0, 2 * np.pi)
                light = 1 + strength * (np.cos(angle) * xs + np.sin(angle) * ys - 0.5)
                gray = (paper + (ink - paper) * coverage) * light + rng.normal(0, 0.02, coverage.shape)
                yield np.clip(gray, 0, 1).astype(np.float32), digit


def main() -> None:
    model, _ = load_model(sys.argv[1])
    for strength in [float(s) for s in sys.argv[2:]] or [0.0, 0.3, 0.6]:
        right = refused = total = 0
        for gray, digit in photos(strength):
            total += 1
            try:
                right += int(model.predict(preprocess(gray).reshape(1, -1))[0] == digit)
            except DataError:
                refused += 1
        print(f"strength {strength:.2f}: {total} images, {refused} refused, {100 * right / total:.1f}% right")


if __name__ == "__main__":
    main()
