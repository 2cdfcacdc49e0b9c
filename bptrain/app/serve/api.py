"""The page's JSON, in and out: requests read into checked values, answers made safe for a browser.

Every problem with a request is a :class:`~bptrain.core.errors.BptrainError` of one line (naming the
field); :mod:`.http` answers it with a 400. Nothing here knows a status code or a socket.
"""

from __future__ import annotations

import json
import math
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from ...core.errors import BptrainError
from ...core.network import MLP
from ..explain import MAX_LR, MAX_STEPS
from ..images import INK_CHOICES
from ..lesson import MAX_EPSILON
from .digits import SPLITS

#: Most fields a query string may have: every route takes a few, and more are refused (400) before any is read.
MAX_QUERY_FIELDS = 10
#: Largest drawing accepted as a pixel array (per side): the page sends 140 x 140.
MAX_PIXEL_SIDE = 1024
#: The JSON fields of an explain request that name its input (the others: :data:`REQUEST_FIELDS`);
#: "ink" goes with a drawing, as in /api/predict, so the page can send the same body to both.
EXPLAIN_INPUT_FIELDS = ("pixels", "width", "height", "ink", "input", "test_index", "split", "index")


def json_safe(value):
    """``value`` with every non-finite float replaced by None: browsers' JSON has no NaN or Infinity."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def to_json(document) -> bytes:
    """An answer's bytes: compact JSON, non-finite floats as null."""
    return json.dumps(json_safe(document), separators=(",", ":")).encode("utf-8")


def parse_json(body: bytes):
    """A request's JSON, or an error that says what is wrong with it."""
    try:
        return json.loads(body)
    except RecursionError:  # e.g. a million nested brackets
        raise BptrainError("malformed JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # also an integer of more than 4,300 digits
        raise BptrainError(f"malformed JSON: {str(exc).splitlines()[0]}") from None


def json_object(body: bytes, expected: str) -> dict:
    """The request body as a JSON object, or an error saying what was ``expected``."""
    document = parse_json(body)
    if not isinstance(document, dict):
        raise BptrainError(f"expected a JSON object {expected}")
    return document


def ink_choice(value) -> str:
    """The request's ink choice (auto, dark or light)."""
    if value not in INK_CHOICES:
        raise BptrainError(f'"ink" must be one of {", ".join(INK_CHOICES)}')
    return value


def drawing(document: dict) -> tuple[np.ndarray, str]:
    """(gray picture, ink) of a JSON drawing: {"width": W, "height": H, "pixels": [H*W numbers], "ink": ...}.

    Pixels are brightness from 0 (black) to 255 (white), row by row; the page sends its pad, dark ink
    on white paper, but light ink on dark works too (the preprocessing finds out, unless "ink" says).
    """
    ink = ink_choice(document.get("ink", "auto"))
    width, height, pixels = document.get("width"), document.get("height"), document.get("pixels")
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PIXEL_SIDE:
            raise BptrainError(f'"{name}" must be an integer from 1 to {MAX_PIXEL_SIDE}')
    if not isinstance(pixels, list) or len(pixels) != width * height:
        raise BptrainError(f'"pixels" must be a list of width x height = {width * height} numbers')
    try:
        values = np.array(pixels, dtype=np.float64)
    except (TypeError, ValueError):
        raise BptrainError('"pixels" must hold numbers only') from None
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise BptrainError('"pixels" must hold finite numbers only')
    if values.min() < 0 or values.max() > 255:
        raise BptrainError('"pixels" must lie between 0 (black) and 255 (white)')
    return (values / 255.0).astype(np.float32).reshape(height, width), ink


def explain_input(document: dict, predictor):
    """(x, source, true label) of an explain request's JSON: a drawing (as /api/predict takes it),
    "input" (the model's input, n_0 numbers in [0, 1]), or a digit of the data set: "index" with
    "split" (validation or test; test if not given), or "test_index" (the same as split test)."""
    given = [key for key in ("pixels", "input", "test_index", "index") if key in document]
    if len(given) != 1:
        raise BptrainError('give one input: "pixels" (with "width" and "height", a drawing), '
                           '"input" (the model\'s input), "index" (with "split") or "test_index"')
    if "split" in document and given != ["index"]:
        raise BptrainError('"split" goes with "index" (a digit of the data set)', field="split")
    if given == ["pixels"]:
        return predictor.input_from_drawing(*drawing(document)), {"kind": "drawing"}, None
    if given == ["input"]:
        return input_from_values(document["input"], predictor.model.sizes[0]), {"kind": "input"}, None
    name = given[0]
    split = document.get("split", "test") if name == "index" else "test"
    if split not in SPLITS:
        raise BptrainError(f'"split" must be one of {", ".join(SPLITS)}', field="split")
    dataset = predictor.dataset
    if dataset is None:
        raise BptrainError(f'"{name}" needs a data set, and this server has none; send a drawing, '
                           'an image or "input"', field=name)
    x, y = dataset.split(split)
    index = document[name]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(x):
        raise BptrainError(f'"{name}" must be an integer from 0 to {len(x) - 1}'
                           + (f" (the {split} split's digits)" if name == "index" else ""), field=name)
    return x[index], {"kind": "dataset", "split": split, "index": index}, [int(y[index])]


#: The fields of a POST /api/explain request besides its input.
REQUEST_FIELDS = ("label", "steps", "lr", "unit")


def request_options(fields: dict, model: MLP) -> dict:
    """Validated {"label", "steps", "lr", "unit"} from a request's fields (JSON values, or query
    strings for an uploaded image). Raises BptrainError with one line naming the field."""
    unknown = sorted(set(fields) - set(REQUEST_FIELDS))
    if unknown:
        raise BptrainError(f'unknown field "{unknown[0]}"; /api/explain takes an input and '
                           + ", ".join(f'"{name}"' for name in REQUEST_FIELDS))
    classes, L = model.sizes[-1], model.n_layers
    label = fields.get("label")
    if label is not None and not _is_int(label, 0, classes - 1):
        raise BptrainError(f'"label" must be a class, an integer from 0 to {classes - 1}, or null')
    steps = fields.get("steps", 0)
    if steps is None:
        steps = 0
    if not _is_int(steps, 0, MAX_STEPS):
        raise BptrainError(f'"steps" must be an integer from 0 to {MAX_STEPS}')
    lr = fields.get("lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr)
                           or not 0 < lr <= MAX_LR):
        raise BptrainError(f'"lr" must be a number above 0 and at most {MAX_LR:g}, or null')
    unit = fields.get("unit")
    if unit is not None:
        if not (isinstance(unit, list) and len(unit) == 2 and _is_int(unit[0], 1, L)
                and _is_int(unit[1], 0, model.sizes[unit[0]] - 1)):
            raise BptrainError(f'"unit" must be [layer, j] with layer 1..{L} and j a unit of that layer, or null')
        unit = (unit[0], unit[1])
    return {"label": label, "steps": steps, "lr": None if lr is None else float(lr), "unit": unit}


#: The fields of a POST /api/lesson request besides its input.
LESSON_FIELDS = ("label", "lr", "weight", "epsilon")


def lesson_options(fields: dict, model: MLP) -> dict:
    """Validated {"label", "lr", "weight", "epsilon"} of a lesson request (JSON values, or query strings for
    an uploaded image): the target class, the η of the update step, the weight [l, i, j] the gradient
    check nudges and its nudge ε (None: the defaults). Raises BptrainError with one line naming the field."""
    unknown = sorted(set(fields) - set(LESSON_FIELDS))
    if unknown:
        raise BptrainError(f'unknown field "{unknown[0][:40]}"; /api/lesson takes an input and '
                           + ", ".join(f'"{name}"' for name in LESSON_FIELDS), field=unknown[0][:40])
    classes, L = model.sizes[-1], model.n_layers
    label = fields.get("label")
    if label is not None and not _is_int(label, 0, classes - 1):
        raise BptrainError(f'"label" must be a class, an integer from 0 to {classes - 1}, or null', field="label")
    lr = fields.get("lr")
    if lr is not None and not _is_number(lr, MAX_LR):
        raise BptrainError(f'"lr" must be a number above 0 and at most {MAX_LR:g}, or null', field="lr")
    weight = fields.get("weight")
    if weight is not None:
        if not (isinstance(weight, list) and len(weight) == 3 and _is_int(weight[0], 1, L)
                and _is_int(weight[1], 0, model.sizes[weight[0] - 1] - 1)
                and _is_int(weight[2], 0, model.sizes[weight[0]] - 1)):
            raise BptrainError(f'"weight" must be [layer, i, j] with layer 1..{L}, i a unit of the layer before '
                               f"(or a pixel) and j a unit of that layer, or null", field="weight")
        weight = tuple(weight)
    epsilon = fields.get("epsilon")
    if epsilon is not None and not _is_number(epsilon, MAX_EPSILON):
        raise BptrainError(f'"epsilon" must be a number above 0 and at most {MAX_EPSILON:g}, or null',
                           field="epsilon")
    return {"label": label, "lr": None if lr is None else float(lr), "weight": weight,
            "epsilon": None if epsilon is None else float(epsilon)}


def query_pairs(query: str) -> list[tuple[str, str]]:
    """A query string's (name, value) pairs, blank values kept; more than ``MAX_QUERY_FIELDS`` are refused."""
    try:
        return parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:  # what parse_qsl raises for too many fields
        raise BptrainError(f"too many fields in the query string: at most {MAX_QUERY_FIELDS}") from None


def query_fields(path: str) -> dict:
    """The request fields of an image upload, from its query string: ?label=K&steps=S&lr=η&unit=L,J
    (a lesson's: ?label=K&lr=η&weight=L,I,J&epsilon=ε)
    (typed as JSON would type them, so :func:`request_options` checks both alike)."""
    fields = {}
    for name, text in query_pairs(urlsplit(path).query):
        if name in ("unit", "weight"):
            value = [_number(part) for part in text.split(",")]
        elif text in ("", "null"):
            value = None
        else:
            value = _number(text)
        fields[name] = value
    return fields


def input_from_values(values, width: int) -> np.ndarray:
    """A model input sent as numbers (e.g. the preprocessed picture an earlier answer returned)."""
    if not isinstance(values, list) or len(values) != width:
        raise BptrainError(f'"input" must be a list of {width} numbers (the model\'s input)')
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise BptrainError('"input" must hold numbers only')
    x = np.array(values, np.float64)
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise BptrainError('"input" must hold finite numbers from 0 to 1')
    return x


#: The query fields of the data-set digit routes (GET /api/digits/...), besides "snapshot".
DIGIT_FIELDS = {"cell": ("true", "read", "limit"), "random": ("split",), "confusion": (), "status": ()}


def digit_query(query: str, route: str) -> dict:
    """The fields of a GET /api/digits/``route`` query string ({name: text}), unknown ones refused."""
    fields = dict(query_pairs(query))
    unknown = sorted(set(fields) - set(DIGIT_FIELDS[route]) - {"snapshot"})
    if unknown:
        allowed = ", ".join(f'"{name}"' for name in DIGIT_FIELDS[route] + ("snapshot",))
        raise BptrainError(f'unknown field "{unknown[0][:40]}"; this route takes {allowed}')
    return fields


def _is_int(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value, high: float) -> bool:
    """A JSON number above 0 and at most ``high``."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 < value <= high)


def _number(text: str):
    """A query-string value as JSON would type it: an int, a float, or the text itself (then refused)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


