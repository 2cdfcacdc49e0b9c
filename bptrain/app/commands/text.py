"""How the terminal shows a digit and a number: shared by ``explain`` and its lesson."""

from __future__ import annotations

import math

import numpy as np

#: Shades of a pixel from paper (0) to ink (1), for a terminal that can show them, and for one that cannot.
SHADES = " ░▒▓█"
ASCII_SHADES = " .:o#"


def digit_picture(x, encoding: str | None = None) -> list[str] | None:
    """The input as a block of characters, two per pixel (a terminal cell is about twice as tall as wide),
    one line per row; None when it is not a square picture. Shaded blocks when ``encoding`` can write them,
    else ASCII."""
    values = np.asarray(x, np.float64).reshape(-1)
    side = math.isqrt(values.size)
    if side * side != values.size or side == 0:
        return None
    try:
        SHADES.encode(encoding or "ascii")
        shades = SHADES
    except (LookupError, UnicodeEncodeError):
        shades = ASCII_SHADES
    levels = np.clip(np.rint(np.nan_to_num(values) * (len(shades) - 1)), 0, len(shades) - 1).astype(int)
    rows = levels.reshape(side, side)
    return ["".join(2 * shades[v] for v in row).rstrip() for row in rows]


def number(value, digits: int = 4) -> str:
    """A number in a summary: 4 significant digits; nan/inf (None in the JSON) as 'nan'."""
    return "nan" if value is None else f"{value + 0.0:.{digits}g}"  # + 0.0: no "-0" for relu's zeros


def percent(value) -> str:
    return "nan" if value is None else f"{100 * value:.2f}%"
