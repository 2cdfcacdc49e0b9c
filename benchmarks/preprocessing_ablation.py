"""What the MNIST-style preprocessing is worth, and what a stroke dilation would change, on a digit set.

    python benchmarks/preprocessing_ablation.py model.npy DIR     # DIR from make_font_digits.py

Every image in DIR (true digit at the end of its name, as make_font_digits.py writes it) is read with
bptrain.app.image_files.load_grayscale and classified after:

- ``bptrain``: bptrain.app.images.preprocess, as `bptrain predict` does;
- ``naive``: the whole picture resized to 28x28 (box filter) and inverted, as if the ink were dark;
- ``naive+polarity``: the same, inverted only when the paper is light;
- ``dilate R``: bptrain's preprocessing with the cropped ink thickened first by a disc whose radius is
  R of the crop's longer side (thin font strokes are thinner than MNIST's pen).

Prints the accuracy of each. Runs in-process; needs Pillow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bptrain.app import image_files, images  # noqa: E402
from bptrain.data.model_io import load_model  # noqa: E402


def naive(gray: np.ndarray, polarity: bool) -> np.ndarray:
    Image = image_files.require_pillow()
    small = Image.fromarray(np.round(gray * 255).astype(np.uint8)).resize((28, 28), Image.Resampling.BOX)
    small = np.asarray(small, np.float32) / 255
    light_paper = float(np.median(images.border_pixels(gray))) >= 0.5
    return (1 - small if light_paper or not polarity else small).ravel()


def dilated_crop(fraction: float):
    """A crop_to_ink that thickens the cropped ink by a disc (maximum over the disc's offsets)."""
    original = images.crop_to_ink

    def crop(ink: np.ndarray) -> np.ndarray:
        cropped = original(ink)
        radius = max(1, round(fraction * max(cropped.shape)))
        padded = np.pad(cropped, radius)
        out = cropped.copy()
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if dy * dy + dx * dx <= radius * radius:
                    top, left = radius + dy, radius + dx
                    np.maximum(out, padded[top:top + cropped.shape[0], left:left + cropped.shape[1]], out=out)
        return out

    return crop


def main() -> None:
    model, _ = load_model(sys.argv[1])
    files = sorted(p for p in Path(sys.argv[2]).iterdir() if p.is_file())
    labels = np.array([int(p.stem.rsplit("__d", 1)[1]) for p in files])
    grays = [image_files.load_grayscale(p) for p in files]

    def accuracy(transform) -> float:
        return float(np.mean(model.predict(np.stack([transform(g) for g in grays])) == labels))

    print(f"{len(files)} images")
    print(f"bptrain          {100 * accuracy(lambda g: images.preprocess(g).ravel()):.1f}%")
    print(f"naive            {100 * accuracy(lambda g: naive(g, polarity=False)):.1f}%")
    print(f"naive+polarity   {100 * accuracy(lambda g: naive(g, polarity=True)):.1f}%")
    original = images.crop_to_ink
    for fraction in (0.015, 0.025, 0.04):
        images.crop_to_ink = dilated_crop(fraction)
        try:
            print(f"dilate {fraction:<9} {100 * accuracy(lambda g: images.preprocess(g).ravel()):.1f}%")
        finally:
            images.crop_to_ink = original


if __name__ == "__main__":
    main()
