"""Digits that were never MNIST: typed in fonts, photographed badly. For measuring `bptrain predict`.

    python benchmarks/make_font_digits.py OUT_DIR                 # writes the images (about 1,000)
    bptrain predict model.npy OUT_DIR --json > predictions.json
    python benchmarks/make_font_digits.py --score predictions.json  # accuracy per group

Every digit 0-9 in every font, both polarities (dark ink on light paper, light on dark) and three
sizes (the digit about 24, 80 and 300 px tall), at a random place on a canvas 1.5-4 times its size,
turned by up to 8 degrees. Each is written as one of three kinds, in turn:

- ``png``: a clean grey PNG;
- ``jpeg``: an RGB photo: tinted paper tone, uneven light (one side up to about half as bright as the
  other), Gaussian noise, JPEG quality 60-85;
- ``rgba``: the strokes alone on a transparent canvas (the colour under transparent pixels is black).

The file name carries the groups and the true digit: ``FONT__POLARITY__SIZE__KIND__dN.EXT``. Fonts
come from /usr/share/fonts (Debian's fonts-dejavu-core, fonts-humor-sans, fonts-liberation2); missing
ones are left out with a note. Deterministic (seeded). Needs Pillow and NumPy.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype")
#: name -> (file, kind of font)
FONTS = {
    "humor-sans": ("humor-sans/Humor-Sans.ttf", "handwriting-like"),
    "dejavu-sans": ("dejavu/DejaVuSans.ttf", "ordinary"),
    "dejavu-sans-bold": ("dejavu/DejaVuSans-Bold.ttf", "ordinary"),
    "dejavu-sans-oblique": ("dejavu/DejaVuSans-Oblique.ttf", "ordinary"),
    "dejavu-serif": ("dejavu/DejaVuSerif.ttf", "ordinary"),
    "dejavu-sans-mono": ("dejavu/DejaVuSansMono.ttf", "ordinary"),
    "liberation-sans": ("liberation2/LiberationSans-Regular.ttf", "ordinary"),
    "liberation-serif": ("liberation2/LiberationSerif-Regular.ttf", "ordinary"),
    "liberation-serif-italic": ("liberation2/LiberationSerif-Italic.ttf", "ordinary"),
    "liberation-mono": ("liberation2/LiberationMono-Regular.ttf", "ordinary"),
}
SIZES = {"small": 24, "medium": 80, "large": 300}  # digit height in pixels, about
POLARITIES = ("dark", "light")  # dark ink on light paper, light ink on dark paper
KINDS = ("png", "jpeg", "rgba")


def render_glyph(font_path: Path, digit: int, height: int) -> Image.Image:
    """The digit as white-on-black coverage (mode L), cropped to its ink, about ``height`` px tall."""
    font = ImageFont.truetype(str(font_path), size=int(height * 1.4))
    left, top, right, bottom = font.getbbox(str(digit))
    glyph = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(glyph).text((4 - left, 4 - top), str(digit), font=font, fill=255)
    return glyph.crop(glyph.getbbox())


def place(glyph: Image.Image, rng) -> Image.Image:
    """Turn the glyph a little and put it at a random place on a canvas 1.5-4 times its size."""
    glyph = glyph.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BICUBIC, expand=True)
    scale = rng.uniform(1.5, 4.0)
    width = max(glyph.width + 2, int(max(glyph.size) * scale * rng.uniform(0.9, 1.3)))
    height = max(glyph.height + 2, int(max(glyph.size) * scale))
    canvas = Image.new("L", (width, height), 0)
    at = (int(rng.integers(0, width - glyph.width + 1)), int(rng.integers(0, height - glyph.height + 1)))
    canvas.paste(glyph, at)
    return canvas


def as_png(coverage: np.ndarray, polarity: str, rng) -> Image.Image:
    """Clean grey: ink and paper two flat levels."""
    ink, paper = (rng.uniform(0, 60), rng.uniform(200, 255)) if polarity == "dark" else \
        (rng.uniform(200, 255), rng.uniform(0, 60))
    return Image.fromarray(np.round(paper + (ink - paper) * coverage).astype(np.uint8))


def as_photo(coverage: np.ndarray, polarity: str, rng) -> Image.Image:
    """A poor phone photo: tinted paper, light falling off across it (by up to half), sensor noise, JPEG."""
    height, width = coverage.shape
    if polarity == "dark":
        paper, ink = rng.uniform(0.7, 0.92), rng.uniform(0.05, 0.3)
    else:
        paper, ink = rng.uniform(0.08, 0.3), rng.uniform(0.7, 0.95)
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    lighting = 1 + 0.25 * (np.cos(rng.uniform(0, 2 * np.pi)) * xs + np.sin(rng.uniform(0, 2 * np.pi)) * ys - 0.5)
    gray = (paper + (ink - paper) * coverage) * lighting
    tint = np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.85, 1.0)])  # warm paper / light
    rgb = gray[..., None] * tint + rng.normal(0, 0.035, (height, width, 3))
    return Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")


def as_rgba(coverage: np.ndarray, polarity: str, rng) -> Image.Image:
    """Strokes on a transparent canvas, as a drawing program saves them; transparent pixels hold black."""
    colour = (rng.uniform(0, 80, 3) if polarity == "dark" else rng.uniform(200, 255, 3)).astype(np.uint8)
    alpha = np.round(coverage * 255).astype(np.uint8)
    rgba = np.zeros(coverage.shape + (4,), np.uint8)
    rgba[..., :3] = np.where(alpha[..., None] > 0, colour, 0)
    rgba[..., 3] = alpha
    return Image.fromarray(rgba, "RGBA")


def make(out_dir: Path, seed: int = 0) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = 0
    for font_name, (relative, _) in FONTS.items():
        font_path = FONT_DIR / relative
        if not font_path.is_file():
            print(f"note: {font_path} not installed, {font_name} left out", file=sys.stderr)
            continue
        for polarity in POLARITIES:
            for size_name, height in SIZES.items():
                for digit in range(10):
                    kind = KINDS[written % len(KINDS)]
                    coverage = np.asarray(place(render_glyph(font_path, digit, height), rng), np.float64) / 255
                    stem = f"{font_name}__{polarity}__{size_name}__{kind}__d{digit}"
                    if kind == "png":
                        as_png(coverage, polarity, rng).save(out_dir / f"{stem}.png")
                    elif kind == "jpeg":
                        as_photo(coverage, polarity, rng).save(out_dir / f"{stem}.jpg",
                                                               quality=int(rng.integers(60, 86)))
                    else:
                        as_rgba(coverage, polarity, rng).save(out_dir / f"{stem}.png")
                    written += 1
    return written


def score(predictions_json: Path) -> None:
    """Accuracy per font, font kind, polarity, size and file kind from `bptrain predict --json` output."""
    document = json.loads(predictions_json.read_text())
    groups: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for prediction in document["predictions"]:
        font, polarity, size, kind, digit = Path(prediction["file"]).stem.split("__")
        right = prediction["class"] == int(digit[1:])
        for group in (("all", "all"), ("font", font), ("font kind", FONTS[font][1]), ("polarity", polarity),
                      ("size", size), ("kind", kind), ("digit", digit[1:])):
            groups[group].append(right)
    order = ["all", "font kind", "polarity", "size", "kind", "font", "digit"]
    print("| group | value | images | correct |")
    print("| --- | --- | ---: | ---: |")
    for (group, value), results in sorted(groups.items(), key=lambda item: (order.index(item[0][0]), item[0][1])):
        print(f"| {group} | {value} | {len(results)} | {100 * np.mean(results):.1f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, help="where to write the images")
    parser.add_argument("--score", type=Path, metavar="JSON", help="score `bptrain predict --json` output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.score:
        score(args.score)
    elif args.out_dir:
        print(f"wrote {make(args.out_dir, args.seed)} images to {args.out_dir}")
    else:
        parser.error("give OUT_DIR or --score JSON")


if __name__ == "__main__":
    main()
